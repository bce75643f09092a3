// alloc/region_shadow.h — memory that describes the arena region by region (the page map), and which of
// its pages may be given back because every region they describe is free.
//
// Types: RegionShadow. The shadow is `per_region` bytes for each 2 MiB region, from a page-aligned base
// (the page map: 2 B per arena page, 1 KiB per region). It is cut into units: a unit is one page describing
// kPageSize / per_region regions, or, where a region's part is a page or more, that part. The arena marks a
// unit resident when it hands out a run in one of the unit's regions, and gives the units whose regions are all
// free back with its own discards (Arena::DiscardFreeRuns: the same DiscardRanges call). Not thread-safe: the
// arena calls it under its lock.
// Why giving a unit back is safe: the shadow's owner writes a region's part only for runs it holds (mapped
// after Allocate, unmapped before Free), and readers of a free region's part read zeros before and after.
// A unit whose regions hold no run has no writer, and the next run in it is handed out (and marked) under
// the same lock that decided to give it back.
// Invariants: resident(u) is set iff some run was handed out in a region of u since u was last given back.
#ifndef MOVA_ALLOC_REGION_SHADOW_H_
#define MOVA_ALLOC_REGION_SHADOW_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "mova/units.h"
#include "os/os.h"

namespace mova::alloc {

class RegionShadow {
 public:
  RegionShadow() = default;
  // InvalidArgument unless `base` is page-aligned and `per_region` divides kPageSize or is a multiple of it.
  static absl::Status Check(const std::byte* base, Bytes per_region) {
    const std::size_t b = per_region.value();
    if (reinterpret_cast<std::uintptr_t>(base) % kPageSize != 0 || b == 0 ||
        (kPageSize % b != 0 && b % kPageSize != 0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("a region shadow needs a page-aligned base and a part per region that divides a page "
                          "or is whole pages, not %p and %u B",
                          static_cast<const void*>(base), b));
    }
    return absl::OkStatus();
  }
  // After Check.
  RegionShadow(std::byte* base, Bytes per_region, std::uint32_t regions)
      : base_(base),
        regions_per_unit_(per_region.value() >= kPageSize ? 1 : static_cast<std::uint32_t>(kPageSize / per_region.value())),
        unit_bytes_(per_region.value() >= kPageSize ? per_region.value() : kPageSize),
        resident_((regions + regions_per_unit_ - 1) / regions_per_unit_, false) {}

  bool attached() const { return base_ != nullptr; }
  // A run was handed out in regions [first, last].
  void MarkRegions(std::size_t first, std::size_t last) {
    if (!attached()) return;
    for (std::size_t u = first / regions_per_unit_; u <= last / regions_per_unit_; ++u) {
      if (!resident_[u]) {
        resident_[u] = true;
        ++resident_units_;
      }
    }
  }
  // Appends to `idle` the resident units among those describing regions [first, last] whose regions are all
  // free (`region_free(r)`), in address order, after the units already in it (callers go up the address space).
  template <typename RegionFree>
  void AddIdleUnits(std::size_t first, std::size_t last, RegionFree region_free, std::vector<std::uint32_t>& idle) const {
    if (resident_units_ == 0) return;
    for (std::size_t u = first / regions_per_unit_; u <= last / regions_per_unit_ && u < resident_.size(); ++u) {
      if (!resident_[u] || (!idle.empty() && idle.back() >= u)) continue;
      bool free = true;
      for (std::size_t r = u * regions_per_unit_; free && r < (u + 1) * regions_per_unit_; ++r) {
        free = region_free(static_cast<std::uint32_t>(r));
      }
      if (free) idle.push_back(static_cast<std::uint32_t>(u));
    }
  }
  os::PageSpan SpanOf(std::uint32_t unit) const { return os::PageSpan{base_ + std::size_t{unit} * unit_bytes_, Bytes(unit_bytes_)}; }
  // Unit `unit` was given back.
  void GivenBack(std::uint32_t unit) {
    if (resident_[unit]) {
      resident_[unit] = false;
      --resident_units_;
    }
  }
  // Bytes of the shadow in resident units (an upper bound: a unit's pages are resident once written).
  std::uint64_t resident_bytes() const { return resident_units_ * unit_bytes_; }

 private:
  std::byte* base_ = nullptr;
  std::uint32_t regions_per_unit_ = 1;
  std::size_t unit_bytes_ = 0;
  std::vector<bool> resident_;
  std::uint64_t resident_units_ = 0;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_REGION_SHADOW_H_
