// alloc/page_map.h — arena page → what owns it (a class block or a huge object), read without locks.
//
// Types: PageMap, PageOwner. One atomic 32-bit word per arena page in a reserved range of address space
// (4 B per 4 KiB page of arena, backed only where the arena is used).
// Class blocks map every page; a huge object maps its first page (handles point only there).
// Invariants: Get(p) is non-empty exactly while p belongs to a live block or huge object; an owner is
// unmapped before it is destroyed, and only after no slot of it can be reached through a live handle or a
// thread cache.
#ifndef MOVA_ALLOC_PAGE_MAP_H_
#define MOVA_ALLOC_PAGE_MAP_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "alloc/block.h"
#include "os/os.h"

namespace mova::alloc {

// What owns a page, as the map stores it: 0 for nothing, else the first page of the owner + 1, with the top
// bit set for a huge object. Both kinds keep their descriptor at the start of their first page.
class PageOwner {
 public:
  static constexpr std::uint32_t kHugeBit = 0x80000000u;
  PageOwner() = default;
  static PageOwner OfBlock(std::uint32_t first_page) { return PageOwner(first_page + 1); }
  static PageOwner OfHuge(std::uint32_t first_page) { return PageOwner((first_page + 1) | kHugeBit); }
  bool empty() const { return v_ == 0; }
  bool huge() const { return (v_ & kHugeBit) != 0; }
  std::uint32_t first_page() const { return (v_ & ~kHugeBit) - 1; }
  std::uint32_t raw() const { return v_; }

 private:
  explicit PageOwner(std::uint32_t v) : v_(v) {}
  friend class PageMap;
  std::uint32_t v_ = 0;
};

class PageMap {
 public:
  // `arena_base` is where arena page 0 starts; `pages` the arena's capacity in pages (below 2^31).
  static absl::StatusOr<std::unique_ptr<PageMap>> Create(os::Os& os, std::byte* arena_base, std::size_t pages) {
    absl::StatusOr<std::byte*> mem = os.Reserve(Bytes(pages * sizeof(Slot)), Bytes(kPageSize));
    if (!mem.ok()) return mem.status();
    return std::unique_ptr<PageMap>(new PageMap(os, arena_base, reinterpret_cast<Slot*>(*mem), pages));
  }
  ~PageMap() { (void)os_.Unreserve(reinterpret_cast<std::byte*>(map_), reserved_bytes()); }
  PageMap(const PageMap&) = delete;
  PageMap& operator=(const PageMap&) = delete;

  const std::byte* base() const { return reinterpret_cast<const std::byte*>(map_); }
  Bytes reserved_bytes() const { return Bytes(pages_ * sizeof(Slot)); }

  PageOwner Get(std::uint64_t page) const { return PageOwner(map_[page].load(std::memory_order_acquire)); }
  Block* BlockOf(PageOwner o) const { return reinterpret_cast<Block*>(PageAddress(o.first_page())); }
  HugeObject* HugeOf(PageOwner o) const { return reinterpret_cast<HugeObject*>(PageAddress(o.first_page())); }
  // Maps (or, with an empty owner, unmaps) the pages [first, first + count).
  void Set(std::uint32_t first, std::uint32_t count, PageOwner owner) {
    for (std::uint32_t i = 0; i < count; ++i) map_[first + i].store(owner.raw(), std::memory_order_release);
  }

 private:
  using Slot = std::atomic<std::uint32_t>;
  PageMap(os::Os& os, std::byte* arena_base, Slot* map, std::size_t pages)
      : os_(os), arena_base_(arena_base), map_(map), pages_(pages) {}
  std::byte* PageAddress(std::uint32_t page) const { return arena_base_ + (std::size_t{page} << kPageShift); }

  os::Os& os_;
  std::byte* const arena_base_;
  Slot* const map_;
  const std::size_t pages_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_PAGE_MAP_H_
