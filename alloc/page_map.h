// alloc/page_map.h — arena page → what owns it (a class block or a huge object), read without locks.
//
// Types: PageMap, PageOwner. One atomic 16-bit word per arena page in a reserved range of address space
// (2 B per 4 KiB page of arena, backed only where the arena is used).
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

// What owns a page, in 16 bits: bit 15 present, bit 14 huge object, bits 4..13 the size class, bits 0..3
// the page's index within its block. So free and pin find a slot's block and geometry from the map and the
// class table alone, without touching the block's header.
class PageOwner {
 public:
  static constexpr std::uint16_t kPresent = 0x8000, kHuge = 0x4000;
  static constexpr std::uint32_t kMaxClasses = 1024;
  // A class block's page, shifted right by kClassShift, is exactly kClassPageBase | its class (the inline pin's
  // test, handles/inline_pin.h); a huge object's page and an unmapped one never are.
  static constexpr std::uint32_t kClassShift = 4;
  static constexpr std::uint32_t kClassPageBase = kPresent >> kClassShift;
  PageOwner() = default;
  static PageOwner OfBlockPage(ClassId cls, std::uint32_t page_in_block) {
    return PageOwner(static_cast<std::uint16_t>(kPresent | (cls.value() << kClassShift) | page_in_block));
  }
  static PageOwner OfHuge() { return PageOwner(kPresent | kHuge); }
  bool present() const { return (v_ & kPresent) != 0; }
  bool huge() const { return (v_ & kHuge) != 0; }
  ClassId cls() const { return ClassId((v_ >> kClassShift) & (kMaxClasses - 1)); }
  static constexpr std::uint32_t kPageInBlockMask = 15;
  // True when the owner word `raw` is a page of a block of class `cls`: one compare (present, not huge, that
  // class).
  static bool IsBlockPageOf(std::uint32_t raw, ClassId cls) {
    return (raw >> kClassShift) == (kClassPageBase | cls.value());
  }
  std::uint32_t page_in_block() const { return v_ & kPageInBlockMask; }
  std::uint16_t raw() const { return v_; }

 private:
  explicit PageOwner(std::uint16_t v) : v_(v) {}
  friend class PageMap;
  std::uint16_t v_ = 0;
};

class PageMap {
 public:
  // `pages`: the arena's capacity in pages.
  static absl::StatusOr<std::unique_ptr<PageMap>> Create(os::Os& os, std::size_t pages) {
    absl::StatusOr<std::byte*> mem = os.Reserve(Bytes(pages * sizeof(Slot)), Bytes(kPageSize));
    if (!mem.ok()) return mem.status();
    return std::unique_ptr<PageMap>(new PageMap(os, reinterpret_cast<Slot*>(*mem), pages));
  }
  ~PageMap() { (void)os_.Unreserve(reinterpret_cast<std::byte*>(map_), reserved_bytes()); }
  PageMap(const PageMap&) = delete;
  PageMap& operator=(const PageMap&) = delete;

  const std::byte* base() const { return reinterpret_cast<const std::byte*>(map_); }
  // The owner words themselves, for the inline pin (handles/inline_pin.h), which reads them as Get does.
  const std::atomic<std::uint16_t>* owners() const { return map_; }
  // The map's memory, for the arena to give back where it describes only free regions (region_shadow.h):
  // `Bytes(n * kBytesPerPage)` describe n arena pages.
  static constexpr std::size_t kBytesPerPage = sizeof(std::uint16_t);
  std::byte* memory() const { return reinterpret_cast<std::byte*>(map_); }
  Bytes reserved_bytes() const { return Bytes(pages_ * sizeof(Slot)); }

  PageOwner Get(std::uint64_t page) const { return PageOwner(map_[page].load(std::memory_order_acquire)); }
  void MapBlock(PageRun run, ClassId cls) {
    for (std::uint32_t i = 0; i < run.count; ++i) {
      map_[run.first + i].store(PageOwner::OfBlockPage(cls, i).raw(), std::memory_order_release);
    }
  }
  void MapHuge(PageRun run) { map_[run.first].store(PageOwner::OfHuge().raw(), std::memory_order_release); }
  void Unmap(std::uint32_t first, std::uint32_t count) {
    for (std::uint32_t i = 0; i < count; ++i) map_[first + i].store(0, std::memory_order_release);
  }

 private:
  using Slot = std::atomic<std::uint16_t>;
  static_assert(sizeof(Slot) == kBytesPerPage);
  PageMap(os::Os& os, Slot* map, std::size_t pages) : os_(os), map_(map), pages_(pages) {}

  os::Os& os_;
  Slot* const map_;
  const std::size_t pages_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_PAGE_MAP_H_
