// alloc/block.h — a block: 1..16 contiguous arena pages cut into equal slots of one size class; and a huge
// object: one page run of its own.
//
// Types: Block (a class block's descriptor), HugeObject, SlotRef, the slot owner values, FullnessGroup.
//
// Layout of a class block (all offsets from the block's first byte):
//   [Block descriptor, 64 B][owner: u32 × objects][pad to 16][slots: objects × slot_size]
// The descriptor and the back-map live in the block's own pages, outside the slots. This is deliberate: a
// block's metadata is born and dies with its pages, so the pool keeps no second heap of descriptors that
// would fragment after churn the way the objects did (measured: out-of-line descriptors and back-maps in
// malloc left 2.6 MiB resident after a 90% thin-out of 64 MiB, against 0.5 MiB in-block), and a block moved
// whole carries its metadata with it. The geometry (size_class_map.h) counts these bytes as block overhead.
//
// Per slot: `owner` is the back-map used by compaction — the handle-table index of the object in the slot;
// while a thread cache holds the slot, kSlotReserved (taken from the block) or the index of the object that
// was freed from it (whose entry no longer points here, so compaction treats both alike: not movable now);
// kSlotFreeBit | next-free-slot while it is on the block's free list. (Requested sizes travel in the handles.)
// Invariants (under the owning SizeClass's mu): in_use == objects - length of the free list; the block is
//   listed in fullness group GroupOf(in_use, objects), or is isolated for migration (group kGroupIsolated,
//   on no list, never handed slots); a slot whose owner is a handle index i has entry(i)
//   live with location == this slot, or entry(i) is being published / retired by the thread that holds it.
//   Immutable after creation: magic, cls, first_page, slot_size, data_offset; pages and objects only shrink,
//   under the class lock, when compaction cuts a partly filled block's free tail (SizeClass::CutTail: the
//   slots past it are all free, and the page map no longer names its pages). Free and pin never read them
//   (they locate a slot from the page map and the class table).
// Owner words are read and written without the class lock by allocate and free (through std::atomic_ref).
// `movable` registers the block with the movable-block framework (compactor/): the pool is its driver
// (alloc/pool_block_driver.h); the block's pages go back to the arena when the framework's last reference
// to it is dropped, which is at once unless the block is isolated.
#ifndef MOVA_ALLOC_BLOCK_H_
#define MOVA_ALLOC_BLOCK_H_

#include <atomic>
#include <cstdint>

#include "alloc/arena.h"
#include "compactor/movable_block.h"
#include "mova/units.h"

namespace mova::alloc {

inline constexpr std::uint32_t kSlotReserved = 0xFFFFFFFFu;  // held by a thread cache or being set up
inline constexpr std::uint32_t kSlotFreeBit = 0x80000000u;   // on the free list; low bits: next free slot
inline constexpr std::uint32_t kNoSlot = 0xFFFF;
inline constexpr std::uint32_t kMaxHandleIndex = (1u << 28) - 1;  // Handle::kIndexBits; below kSlotFreeBit

// The free list's encoding in the owner words: a slot on it (kSlotReserved has the bit too, but is not), the
// word of a free slot whose next free slot is `next` (kNoSlot for the last), and that next slot.
constexpr bool OnFreeList(std::uint32_t owner) { return owner != kSlotReserved && (owner & kSlotFreeBit) != 0; }
constexpr std::uint32_t FreeLink(std::uint32_t next) { return kSlotFreeBit | next; }
constexpr std::uint32_t NextFree(std::uint32_t owner) { return owner & ~kSlotFreeBit; }
inline constexpr std::uint32_t kBlockMagic = 0x6D6F7661;            // "mova"

// Fullness groups in 10% bands, as zsmalloc's inuse ratios: 0 = empty, 1..10 = (0,10%] .. (90%,100%),
// kGroupFull = full.
inline constexpr int kGroupEmpty = 0;
inline constexpr int kGroupFull = 11;
inline constexpr int kNumGroups = 12;       // groups with lists
inline constexpr int kGroupIsolated = 12;   // not on a list: isolated for block migration
inline constexpr int kGroupMovedOut = 13;   // migrated away: the old place, until its pages go back
constexpr int GroupOf(std::uint32_t in_use, std::uint32_t objects) {
  if (in_use == 0) return kGroupEmpty;
  if (in_use == objects) return kGroupFull;
  return 1 + static_cast<int>((std::uint64_t{in_use} * 10 - 1) / objects);
}

// Bytes per slot of in-block metadata, and where the slots start for a block of `objects` slots.
inline constexpr std::size_t kBlockHeaderBytes = 64;
inline constexpr std::size_t kMetaBytesPerSlot = sizeof(std::uint32_t);
constexpr std::size_t DataOffset(std::size_t objects) {
  return (kBlockHeaderBytes + objects * kMetaBytesPerSlot + 15) & ~std::size_t{15};
}

struct Block {
  // Immutable.
  std::uint32_t magic = kBlockMagic;
  std::uint16_t cls = 0;           // size class
  std::uint8_t pages = 0;          // 1..16
  std::uint8_t group = kGroupEmpty;  // fullness group it is listed in (class lock)
  std::uint32_t first_page = 0;    // arena page index
  std::uint16_t slot_size = 0;     // bytes per slot
  std::uint16_t affinity = 0;      // class lock: the thread cache that last took slots from it (0: none)
  std::uint16_t objects = 0;       // slots
  std::uint16_t data_offset = 0;   // where slot 0 starts
  // Guarded by the class lock.
  std::uint16_t in_use = 0;        // slots not on the free list
  std::uint16_t free_head = kNoSlot;
  Block* prev = nullptr;           // fullness-group list
  Block* next = nullptr;
  compactor::MovableBlock movable;  // registration with the movable-block framework

  PageRun run() const { return PageRun{first_page, pages}; }
  std::uint64_t offset() const { return std::uint64_t{first_page} << kPageShift; }
  std::uint64_t SlotOffset(std::uint32_t slot) const { return offset() + data_offset + std::uint64_t{slot} * slot_size; }
  std::atomic_ref<std::uint32_t> Owner(std::uint32_t slot) {
    return std::atomic_ref<std::uint32_t>(reinterpret_cast<std::uint32_t*>(this + 1)[slot]);
  }
};
static_assert(sizeof(Block) == kBlockHeaderBytes, "the geometry counts the header's size");

// A huge object: a page run of its own, this descriptor at its start and the object's bytes after it.
// `movable` registers it with the movable-block framework (driver: alloc/pool_huge_driver.h); its run goes
// back to the arena when the framework's last reference is dropped.
struct HugeObject {
  static constexpr std::size_t kHeaderBytes = 64;  // keeps the object 64-byte aligned
  std::uint32_t magic = kBlockMagic;
  PageRun run;
  std::uint64_t size = 0;   // requested bytes
  std::uint32_t owner = 0;  // handle-table index of the object
  bool moved_out = false;   // migrated away: this is the old place, until its pages go back
  compactor::MovableBlock movable;
  std::uint64_t data_offset() const { return (std::uint64_t{run.first} << kPageShift) + kHeaderBytes; }
};
static_assert(sizeof(HugeObject) <= HugeObject::kHeaderBytes);

// A slot named by its block and index, packed in one word for thread caches: user-space pointers fit in
// 48 bits and a block has at most 4096 slots.
using SlotRef = std::uint64_t;
inline SlotRef PackSlot(Block* b, std::uint32_t slot) { return (reinterpret_cast<std::uint64_t>(b) << 16) | slot; }
inline Block* BlockOf(SlotRef r) { return reinterpret_cast<Block*>(r >> 16); }
inline std::uint32_t SlotIndexOf(SlotRef r) { return static_cast<std::uint32_t>(r & 0xFFFF); }

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_BLOCK_H_
