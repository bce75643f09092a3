// tests/size_classes_test.cc — SizeClasses: a class is made at its first use, once, whoever asks first; an
// unmade class is never handed out. SizeClass::TakeSlots: a refill keeps to its own cache's blocks and those of
// caches gone. Real parts: an arena, page map, handle table and access records on SystemOs, as a pool has them.
#include "alloc/size_classes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <span>
#include <thread>
#include <vector>

#include "alloc/arena.h"
#include "alloc/cache_affinities.h"
#include "alloc/old_copies.h"
#include "alloc/page_map.h"
#include "alloc/size_class_map.h"
#include "handles/access_records.h"
#include "handles/handle_table.h"
#include "os/os.h"

namespace mova::alloc {
namespace {

// What a pool gives its classes, and a SizeClasses over them whose factory counts its calls per class.
struct Parts {
  Parts()
      : arena(Arena::Create(os::SystemOs(), ArenaOptions{Bytes(4 * kRegionSize), Bytes(~std::size_t{0}), {}, {}})
                  .value()),
        page_map(PageMap::Create(os::SystemOs(), arena->capacity().value() >> kPageShift).value()),
        table(handles::HandleTable::Create(os::SystemOs(), 1 << 16, /*salt=*/7).value()),
        records(os::SystemOs()),
        old_copies(records, *arena),
        makes(map.num_classes()),
        classes(map.num_classes(), [this](ClassId id) {
          makes[id.value()].fetch_add(1, std::memory_order_relaxed);
          return std::make_unique<SizeClass>(id, map.info(id), *arena, *page_map, *table, records, old_copies,
                                             /*ops=*/nullptr);
        }) {}

  SizeClassMap map;
  std::unique_ptr<Arena> arena;
  std::unique_ptr<PageMap> page_map;
  std::unique_ptr<handles::HandleTable> table;
  handles::AccessRecords records;
  OldCopies old_copies;
  std::vector<std::atomic<int>> makes;
  SizeClasses classes;
  CacheAffinities caches;
};

// How many classes have been made.
std::size_t Made(const SizeClasses& classes) {
  std::size_t n = 0;
  classes.ForEachMade([&](SizeClass&) { ++n; });
  return n;
}

TEST(SizeClasses, NoClassIsMadeBeforeItsFirstUseAndAMadeClassServesSlots) {
  Parts p;
  ASSERT_GT(p.classes.size(), 100u);
  EXPECT_EQ(p.classes.size(), p.map.num_classes());
  EXPECT_EQ(Made(p.classes), 0u);
  for (std::size_t k = 0; k < p.classes.size(); ++k) EXPECT_EQ(p.classes.Find(ClassId(k)), nullptr) << k;
  int visited = 0;
  p.classes.ForEachMade([&](SizeClass&) { ++visited; });
  EXPECT_EQ(visited, 0);

  const ClassId c64 = p.map.ClassFor(64);
  SizeClass& made = p.classes.GetOrMake(c64);
  EXPECT_EQ(&made, p.classes.Find(c64));
  EXPECT_EQ(&made, &p.classes.Get(c64));
  EXPECT_EQ(&made, &p.classes.GetOrMake(c64));  // made once
  EXPECT_EQ(p.makes[c64.value()].load(), 1);
  EXPECT_EQ(Made(p.classes), 1u);
  EXPECT_EQ(made.info().slot_size, p.map.info(c64).slot_size);

  // The class made late works as one made up front: slots taken from a block it makes, and given back.
  std::array<SlotRef, 8> slots{};
  bool made_block = false;
  const absl::StatusOr<std::size_t> got = made.TakeSlots(slots, p.caches.Acquire(), p.caches, &made_block);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, slots.size());
  EXPECT_TRUE(made_block);
  EXPECT_EQ(made.Snapshot().slots_in_use, slots.size());
  made.ReturnSlots(std::span<const SlotRef>(slots.data(), *got));
  EXPECT_EQ(made.Snapshot().slots_in_use, 0u);

  // Only the made classes are visited, in class order.
  const ClassId c16 = p.map.ClassFor(16);
  const ClassId c1k = p.map.ClassFor(1024);
  p.classes.GetOrMake(c1k);
  p.classes.GetOrMake(c16);
  std::vector<std::uint32_t> sizes;
  p.classes.ForEachMade([&](SizeClass& c) { sizes.push_back(c.info().slot_size); });
  EXPECT_EQ(sizes, (std::vector<std::uint32_t>{p.map.info(c16).slot_size, p.map.info(c64).slot_size,
                                                p.map.info(c1k).slot_size}));
  EXPECT_EQ(Made(p.classes), 3u);
}

// The block of each slot taken.
std::vector<const Block*> BlocksOf(std::span<const SlotRef> slots) {
  std::vector<const Block*> out;
  for (SlotRef r : slots) out.push_back(BlockOf(r));
  return out;
}

TEST(SizeClasses, ARefillTakesNoSlotOfABlockAnotherLiveCacheTookFromAndAdoptsTheBlocksOfCachesGone) {
  Parts p;
  SizeClass& c = p.classes.GetOrMake(p.map.ClassFor(64));
  const std::uint32_t per_block = c.info().objects_per_block;
  const std::uint16_t a = p.caches.Acquire(), b = p.caches.Acquire();
  ASSERT_NE(a, b);

  // Cache a takes a third of a block: the block is a's, partly filled, the fullest with room.
  std::vector<SlotRef> of_a(per_block / 3);
  ASSERT_EQ(c.TakeSlots(of_a, a, p.caches).value(), of_a.size());
  const Block* block_a = BlockOf(of_a[0]);
  for (const Block* x : BlocksOf(of_a)) EXPECT_EQ(x, block_a);

  // Cache b, while a lives, gets a block of its own rather than a's free slots.
  std::vector<SlotRef> of_b(per_block / 3);
  bool made_block = false;
  ASSERT_EQ(c.TakeSlots(of_b, b, p.caches, &made_block).value(), of_b.size());
  EXPECT_TRUE(made_block);
  for (const Block* x : BlocksOf(of_b)) EXPECT_NE(x, block_a);
  const Block* block_b = BlockOf(of_b[0]);

  // a's next refill keeps to a's block, although b's is as full.
  std::vector<SlotRef> more_a(per_block / 3);
  ASSERT_EQ(c.TakeSlots(more_a, a, p.caches).value(), more_a.size());
  for (const Block* x : BlocksOf(more_a)) EXPECT_EQ(x, block_a);

  // Once a is gone, its block is anyone's: b takes from the fullest block, a's, before it fills its own
  // (b's refill ends in its own block once a's is full).
  p.caches.Release(a);
  std::vector<SlotRef> later_b(per_block);
  made_block = false;
  ASSERT_EQ(c.TakeSlots(later_b, b, p.caches, &made_block).value(), later_b.size());
  EXPECT_FALSE(made_block);
  const std::vector<const Block*> later = BlocksOf(later_b);
  EXPECT_EQ(later.front(), block_a);
  EXPECT_EQ(later.back(), block_b);
  EXPECT_EQ(std::count(later.begin(), later.end(), block_a), per_block - 2 * (per_block / 3));
  EXPECT_EQ(c.Snapshot().blocks, 2u);
}

TEST(SizeClasses, ThreadsRacingToAClassesFirstUseGetOneClassMadeOnce) {
  Parts p;
  constexpr int kThreads = 4;
  constexpr std::uint32_t kClasses = 32;
  std::vector<std::array<SizeClass*, kClasses>> seen(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
      }
      // Each thread walks the classes from a different end, so that first uses meet.
      for (std::uint32_t i = 0; i < kClasses; ++i) {
        const std::uint32_t k = t % 2 == 0 ? i : kClasses - 1 - i;
        SizeClass& c = p.classes.GetOrMake(ClassId(k));
        EXPECT_EQ(c.info().slot_size, p.map.info(ClassId(k)).slot_size);
        seen[t][k] = &c;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (std::uint32_t k = 0; k < kClasses; ++k) {
    EXPECT_EQ(p.makes[k].load(), 1) << k;
    for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t][k], seen[0][k]) << k;
  }
  EXPECT_EQ(Made(p.classes), kClasses);
}

TEST(SizeClassesDeathTest, AClassUsedBeforeItWasMadeAbortsWithAMessage) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "death tests are run in the other builds";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Parts p;
  EXPECT_DEATH(p.classes.Get(p.map.ClassFor(64)), "size class [0-9]+ used before it was made");
}

}  // namespace
}  // namespace mova::alloc
