// Invariants of the size-class table.
#include "alloc/size_class_map.h"

#include <gtest/gtest.h>

namespace mova::alloc {
namespace {

TEST(SizeClassMap, ClassesIncreaseAndAreAligned) {
  SizeClassMap map;
  ASSERT_GT(map.num_classes(), 100u);
  for (std::size_t c = 0; c < map.num_classes(); ++c) {
    const SizeClassInfo& i = map.info(ClassId(c));
    EXPECT_EQ(i.slot_size % kSizeGranule, 0u) << c;
    if (i.slot_size >= kFineStepLimit) { EXPECT_EQ(i.slot_size % kCoarseStep, 0u) << c; }
    EXPECT_GE(i.slot_size, kMinSlotSize) << c;
    EXPECT_GE(i.pages_per_block, 1u);
    EXPECT_LE(i.pages_per_block, kMaxPagesPerBlock);
    EXPECT_GE(i.objects_per_block, 1u);
    EXPECT_EQ(i.data_offset % 16, 0u);
    // Header, back-map and slots fit in the block, and one more slot would not.
    EXPECT_LE(i.data_offset + i.objects_per_block * i.slot_size, i.pages_per_block * kPageSize) << c;
    EXPECT_GT(DataOffset(i.objects_per_block + 1) + (i.objects_per_block + 1) * i.slot_size,
              i.pages_per_block * kPageSize) << c;
    EXPECT_GE(i.data_offset, kBlockHeaderBytes + i.objects_per_block * kMetaBytesPerSlot);
    if (c > 0) { EXPECT_GT(i.slot_size, map.info(ClassId(c - 1)).slot_size); }
  }
  EXPECT_EQ(map.info(ClassId(map.num_classes() - 1)).slot_size, kMaxClassSize);
  EXPECT_EQ(kMaxClassSize, 65536u - 80);  // a 64 B header and one 4 B back-map word, rounded to 16
}

TEST(SizeClassMap, EverySizeMapsToTheSmallestClassThatHoldsIt) {
  SizeClassMap map;
  for (std::size_t size = 1; size <= kMaxClassSize; ++size) {
    const ClassId c = map.ClassFor(size);
    ASSERT_GE(map.info(c).slot_size, size) << size;
    if (c.value() > 0) { ASSERT_LT(map.info(ClassId(c.value() - 1)).slot_size, size) << size; }
  }
}

TEST(SizeClassMap, EightByteStepsForSmallSizesThenSixteen) {
  SizeClassMap map;
  for (std::size_t size = 1; size <= kMinSlotSize; ++size) { EXPECT_EQ(map.info(map.ClassFor(size)).slot_size, 16u); }
  for (std::size_t size = 16; size <= kFineStepLimit; size += 8) {
    EXPECT_EQ(map.info(map.ClassFor(size)).slot_size, size);
    EXPECT_EQ(map.info(map.ClassFor(size - 7)).slot_size, size) << "rounded up by less than 8 B";
  }
  for (std::size_t size = kFineStepLimit; size <= 768; size += kCoarseStep) {
    EXPECT_EQ(map.info(map.ClassFor(size)).slot_size, size);
  }
}

TEST(SizeClassMap, SlotIndexByReciprocalIsExact) {
  SizeClassMap map;
  for (std::size_t c = 0; c < map.num_classes(); ++c) {
    const SizeClassInfo& i = map.info(ClassId(c));
    for (std::uint32_t slot = 0; slot < i.objects_per_block; ++slot) {
      for (std::uint32_t d : {slot * i.slot_size, slot * i.slot_size + i.slot_size / 2, (slot + 1) * i.slot_size - 1}) {
        ASSERT_EQ(i.SlotIndex(d), d / i.slot_size) << "class " << c << " delta " << d;
      }
    }
  }
  // And for every class's worst delta, the whole 16-page range.
  const SizeClassInfo& last = map.info(ClassId(map.num_classes() - 1));
  for (std::uint32_t d = 0; d <= 65536; ++d) ASSERT_EQ(last.SlotIndex(d), d / last.slot_size) << d;
}

TEST(SizeClassMap, MergedClassesHaveDistinctGeometry) {
  SizeClassMap map;
  for (std::size_t c = 1; c < map.num_classes(); ++c) {
    const SizeClassInfo& a = map.info(ClassId(c - 1));
    const SizeClassInfo& b = map.info(ClassId(c));
    EXPECT_FALSE(a.pages_per_block == b.pages_per_block && a.objects_per_block == b.objects_per_block) << c;
  }
  // Merging did remove candidates (zsmalloc merges many large classes).
  EXPECT_LT(map.num_classes(), CandidateClassSizes().size());
}

TEST(SizeClassMap, GeometryIsTheSmallestBlockWithinTheWasteSlack) {
  for (std::uint32_t size : CandidateClassSizes()) {
    const SizeClassInfo g = BestGeometry(size);
    std::uint32_t least = 1000;
    for (std::uint32_t pages = 1; pages <= kMaxPagesPerBlock; ++pages) {
      const SizeClassInfo other = GeometryFor(size, pages);
      if (other.objects_per_block > 0) least = std::min(least, WastePermille(other));
    }
    EXPECT_LE(WastePermille(g), least + kWasteSlackPermille) << size;
    for (std::uint32_t pages = 1; pages < g.pages_per_block; ++pages) {  // no smaller block is within the slack
      const SizeClassInfo other = GeometryFor(size, pages);
      if (other.objects_per_block > 0) { EXPECT_GT(WastePermille(other), least + kWasteSlackPermille) << size; }
    }
  }
  // 512 B slots: one page holds 7 (12.5% waste: the metadata does not fit beside 8); the least waste is near
  // 1.1%, so the rule picks a bigger block, but not the 16-page one.
  const SizeClassInfo g512 = BestGeometry(512);
  EXPECT_EQ(GeometryFor(512, 1).objects_per_block, 7u);
  EXPECT_GT(g512.pages_per_block, 1u);
  EXPECT_LT(g512.pages_per_block, 16u);
}

}  // namespace
}  // namespace mova::alloc
