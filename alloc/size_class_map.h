// alloc/size_class_map.h — the geometry of size classes, computed at compile time: which class serves a size,
// and how many pages and slots each class's blocks have.
//
// Types: SizeClassInfo, SizeClassTable, SizeClassMap. Spacing: 8 B steps from 16 B up to kFineStepLimit, 16 B
// steps up to 4 KiB (as zsmalloc), then 16 classes per doubling up to kMaxClassSize (64 KiB less the 80 B of
// metadata a one-slot block keeps in its own pages: 65456 B); larger objects are huge (own page runs, no class).
// The 8 B steps halve the rounding of the sizes most objects have (2.8% of the bytes of objects of 16-512 B in
// 16 B steps, 1.3% in 8 B steps); an object is therefore aligned to 16 B only when its slot size is a multiple of
// 16 (a slot of 24 B, for sizes 17-24, is 8 B aligned: no type of alignment 16 fits in 24 B, as for malloc's
// small sizes in mimalloc and tcmalloc).
// Each class picks its block size among 1..kMaxPagesPerBlock pages: the smallest whose waste (the bytes not in
// slots: in-block metadata and the tail) is within kWasteSlackPermille of the least any size achieves.
// Smaller blocks matter as much as little tail waste: after compaction every class keeps one partly filled
// block, so a class of 16-page blocks holds up to 64 KiB that no live object uses.
// Merging (zsmalloc's can_merge): a class whose blocks would hold the same number of slots in the same
// number of pages as the next larger class serves no purpose; its sizes go to that larger class.
// Invariants: classes are strictly increasing in size; every size in 1..kMaxClassSize maps to the smallest
// class with slot_size >= size; slot sizes are multiples of kSizeGranule (and of kCoarseStep from kFineStepLimit up);
// objects_per_block >= 1.
#ifndef MOVA_ALLOC_SIZE_CLASS_MAP_H_
#define MOVA_ALLOC_SIZE_CLASS_MAP_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "alloc/block.h"
#include "mova/units.h"

namespace mova::alloc {

inline constexpr std::size_t kMinSlotSize = 16;
// The step of the smallest classes and of the class lookup: sizes are looked up in granules of 8 B, and every
// slot, so every object, starts at a multiple of it (handles/entry_layout.h stores locations in these units).
inline constexpr std::size_t kSizeGranule = 8;
inline constexpr std::size_t kFineStepLimit = 512;
inline constexpr std::size_t kCoarseStep = 16;  // from kFineStepLimit up to a page
inline constexpr std::size_t kMaxPagesPerBlock = 16;
inline constexpr std::size_t kMaxClassSize = kMaxPagesPerBlock * kPageSize - DataOffset(1);
static_assert(kMaxClassSize <= UINT16_MAX, "a slot's size fits Block::slot_size");
inline constexpr std::uint32_t kWasteSlackPermille = 20;
// Candidate sizes before merging: 8 B steps up to kFineStepLimit, 16 B steps up to a page, then 16 per doubling
// up to kMaxClassSize.
inline constexpr std::size_t kMaxCandidateSizes =
    (kFineStepLimit - kMinSlotSize) / kSizeGranule + 1 + (kPageSize - kFineStepLimit) / kCoarseStep + 16 * 4;

struct SizeClassInfo {
  std::uint32_t slot_size = 0;          // bytes per slot
  std::uint32_t pages_per_block = 0;    // 1..kMaxPagesPerBlock
  std::uint32_t objects_per_block = 0;  // slots per block
  std::uint32_t data_offset = 0;        // where slot 0 starts in the block (after the in-block metadata)
  std::uint32_t slot_reciprocal = 0;    // ceil(2^32 / slot_size): SlotIndex divides by multiplying
  constexpr Bytes block_bytes() const { return ToBytes(Pages(pages_per_block)); }
  // Where slot `slot` of the block at `block_offset` starts (Block::SlotOffset, from the class geometry
  // instead of the block's descriptor).
  std::uint64_t SlotOffset(std::uint64_t block_offset, std::uint32_t slot) const {
    return block_offset + data_offset + std::uint64_t{slot} * slot_size;
  }
  // delta / slot_size for any byte offset delta within a block (< 2^16 + 1): exact, because the
  // reciprocal's error times delta stays below 2^-16 < 1 / slot_size.
  std::uint32_t SlotIndex(std::uint32_t delta) const {
    return static_cast<std::uint32_t>((std::uint64_t{delta} * slot_reciprocal) >> 32);
  }
};

// The table every map reads: computed by the compiler (size_class_map.cc), so it lives in the program's
// read-only data, one copy shared by every pool (and, mapped from the file, by every process), instead of
// 16 KiB of heap per pool.
struct SizeClassTable {
  std::array<SizeClassInfo, kMaxCandidateSizes> classes{};
  std::size_t num_classes = 0;
  std::array<std::uint16_t, kMaxClassSize / kSizeGranule + 1> lookup{};  // (size + 7) / 8 -> class
};
extern const SizeClassTable kSizeClassTable;

// A view of kSizeClassTable (holds nothing; kept as a type so that callers name what they read).
class SizeClassMap {
 public:
  std::size_t num_classes() const { return kSizeClassTable.num_classes; }
  const SizeClassInfo& info(ClassId c) const { return kSizeClassTable.classes[c.value()]; }
  // The class serving `size` (1..kMaxClassSize).
  ClassId ClassFor(std::size_t size) const {
    return ClassId(kSizeClassTable.lookup[(size + kSizeGranule - 1) / kSizeGranule]);
  }
};

// The raw candidate sizes before merging, exposed for tests.
std::vector<std::uint32_t> CandidateClassSizes();
// The geometry of a block of `pages` pages of `slot_size` slots, metadata included.
SizeClassInfo GeometryFor(std::uint32_t slot_size, std::uint32_t pages);
// Bytes of a block not in slots, per thousand.
std::uint32_t WastePermille(const SizeClassInfo& g);
// The geometry chosen for one slot size (see the rule above).
SizeClassInfo BestGeometry(std::uint32_t slot_size);

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_SIZE_CLASS_MAP_H_
