// alloc/size_class_map.cc — see size_class_map.h. Everything here is constexpr: kSizeClassTable is built by
// the compiler, and the functions the tests call run the same code.
#include "alloc/size_class_map.h"

#include <algorithm>

namespace mova::alloc {
namespace {

struct Candidates {
  std::array<std::uint32_t, kMaxCandidateSizes> sizes{};
  std::size_t count = 0;
};

constexpr Candidates MakeCandidates() {
  Candidates c;
  for (std::uint32_t s = kMinSlotSize; s < kFineStepLimit; s += kSizeGranule) c.sizes[c.count++] = s;
  for (std::uint32_t s = kFineStepLimit; s <= kPageSize; s += kCoarseStep) c.sizes[c.count++] = s;
  for (std::uint32_t base = kPageSize; base < kMaxClassSize; base *= 2) {
    const std::uint32_t step = base / 16;
    for (std::uint32_t s = base + step; s <= base * 2; s += step) {
      const auto size = static_cast<std::uint32_t>(std::min<std::size_t>(s, kMaxClassSize));
      if (c.sizes[c.count - 1] != size) c.sizes[c.count++] = size;
    }
  }
  return c;
}

constexpr SizeClassInfo Geometry(std::uint32_t slot_size, std::uint32_t pages) {
  const std::size_t bytes = std::size_t{pages} * kPageSize;
  // The most slots whose metadata and data fit: DataOffset(n) + n * slot_size <= bytes.
  std::size_t n = bytes / (slot_size + kMetaBytesPerSlot);
  while (n > 0 && DataOffset(n) + n * slot_size > bytes) --n;
  const auto reciprocal = static_cast<std::uint32_t>(((std::uint64_t{1} << 32) + slot_size - 1) / slot_size);
  return SizeClassInfo{slot_size, pages, static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(DataOffset(n)),
                       reciprocal};
}

constexpr std::uint32_t Waste(const SizeClassInfo& g) {
  const std::size_t bytes = g.block_bytes().value();
  return static_cast<std::uint32_t>((bytes - std::size_t{g.objects_per_block} * g.slot_size) * 1000 / bytes);
}

constexpr SizeClassInfo Best(std::uint32_t slot_size) {
  std::uint32_t least = 1000;
  for (std::uint32_t pages = 1; pages <= kMaxPagesPerBlock; ++pages) {
    const SizeClassInfo g = Geometry(slot_size, pages);
    if (g.objects_per_block > 0) least = std::min(least, Waste(g));
  }
  for (std::uint32_t pages = 1; pages <= kMaxPagesPerBlock; ++pages) {
    const SizeClassInfo g = Geometry(slot_size, pages);
    if (g.objects_per_block > 0 && Waste(g) <= least + kWasteSlackPermille) return g;
  }
  return {};  // unreachable: 16 pages hold at least one slot of kMaxClassSize
}

constexpr SizeClassTable MakeTable() {
  const Candidates sizes = MakeCandidates();
  // Walk from the largest down; a candidate whose geometry equals the next kept class's is merged into it.
  std::array<SizeClassInfo, kMaxCandidateSizes> kept_desc{};
  std::size_t kept = 0;
  for (std::size_t i = sizes.count; i-- > 0;) {
    const SizeClassInfo g = Best(sizes.sizes[i]);
    if (kept > 0 && kept_desc[kept - 1].pages_per_block == g.pages_per_block &&
        kept_desc[kept - 1].objects_per_block == g.objects_per_block) {
      continue;
    }
    kept_desc[kept++] = g;
  }
  SizeClassTable t;
  t.num_classes = kept;
  for (std::size_t c = 0; c < kept; ++c) t.classes[c] = kept_desc[kept - 1 - c];
  std::size_t c = 0;
  for (std::size_t q = 0; q < t.lookup.size(); ++q) {
    const std::size_t size = q * kSizeGranule;
    while (t.classes[c].slot_size < size) ++c;
    t.lookup[q] = static_cast<std::uint16_t>(c);
  }
  return t;
}

}  // namespace

constinit const SizeClassTable kSizeClassTable = MakeTable();

std::vector<std::uint32_t> CandidateClassSizes() {
  const Candidates c = MakeCandidates();
  return std::vector<std::uint32_t>(c.sizes.begin(), c.sizes.begin() + static_cast<std::ptrdiff_t>(c.count));
}

SizeClassInfo GeometryFor(std::uint32_t slot_size, std::uint32_t pages) { return Geometry(slot_size, pages); }

std::uint32_t WastePermille(const SizeClassInfo& g) { return Waste(g); }

SizeClassInfo BestGeometry(std::uint32_t slot_size) { return Best(slot_size); }

}  // namespace mova::alloc
