// The pool: allocate / pin / free, huge objects, compaction (contents survive, pinned objects stay),
// and stats that add up.
#include "mova/pool.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "alloc/size_class_map.h"
#include "bench/rss.h"
#include "os/os.h"
#include "tests/class_stats.h"
#include "tests/sanitizers.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;
using testing::Obj;
using testing::StatsOf;

std::unique_ptr<Pool> NewPool(PoolOptions o = {}) { return Pool::Create(o).value(); }

TEST(Pool, AllocatePinFreeRoundTrip) {
  auto pool = NewPool();
  Handle h = AllocFilled(*pool, 100, 7);
  EXPECT_FALSE(h.is_null());
  EXPECT_TRUE(Intact(*pool, h, 100, 7));
  EXPECT_EQ(pool->size_of(h).value(), 100u);
  EXPECT_TRUE(pool->free(h).ok());
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

// A pool costs little before it holds objects, and a size class costs only once it is used: the ~200 classes
// were made up front (55 KiB of a new pool's 110 KiB of heap) and the access records' chunk pointers were a
// 32 KiB array. What the classes made and the thread's cache take is counted in metadata_bytes.
TEST(Pool, ANewPoolHoldsLittleHeapAndAClassCostsOnlyOnceUsed) {
  MOVA_SKIP_UNDER_SANITIZERS();  // their malloc keeps no glibc arena statistics
  const std::size_t before = mallinfo2().uordblks;
  auto pool = NewPool();
  const std::size_t created = mallinfo2().uordblks - before;
  // ~11 KiB here: the pool's structures; the size-class table is the program's read-only data, not the heap's.
  EXPECT_LE(created, std::size_t{16} << 10);
  const std::uint64_t meta0 = pool->stats().metadata_bytes;

  Handle h64 = AllocFilled(*pool, 64, 1);  // the thread's cache and the 64 B class are made
  const std::uint64_t meta1 = pool->stats().metadata_bytes;
  EXPECT_GT(meta1, meta0);
  Handle h64b = AllocFilled(*pool, 60, 2);  // the same class: nothing more is made
  EXPECT_EQ(pool->stats().metadata_bytes, meta1);
  Handle h1k = AllocFilled(*pool, 1000, 3);  // another class is made
  EXPECT_GT(pool->stats().metadata_bytes, meta1);

  // Every class can be made late and serves as one made up front.
  std::vector<Obj> objs;
  for (std::size_t size = 1; size <= alloc::kMaxClassSize; size += 37) {
    objs.push_back({AllocFilled(*pool, size, size), size, size});
  }
  pool->compact();
  for (const Obj& o : objs) EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed)) << o.size;
  EXPECT_TRUE(Intact(*pool, h64, 64, 1));
  EXPECT_TRUE(Intact(*pool, h64b, 60, 2));
  EXPECT_TRUE(Intact(*pool, h1k, 1000, 3));
  for (const Obj& o : objs) ASSERT_TRUE(pool->free(o.h).ok());
  for (Handle h : {h64, h64b, h1k}) ASSERT_TRUE(pool->free(h).ok());
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

TEST(Pool, EverySizeUpToAndPastTheClassesWorks) {
  auto pool = NewPool();
  std::vector<Obj> objs;
  std::uint64_t seed = 1;
  for (std::size_t size : {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{4095},
                           std::size_t{4096}, std::size_t{4097}, alloc::kMaxClassSize - 1, alloc::kMaxClassSize,
                           alloc::kMaxClassSize + 1, std::size_t{3} << 20}) {
    objs.push_back({AllocFilled(*pool, size, seed), size, seed});
    ++seed;
  }
  for (const Obj& o : objs) { EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed)) << o.size; }
  PoolStats s = pool->stats();
  EXPECT_EQ(s.huge_objects, 2u);
  EXPECT_GE(s.huge_bytes, (std::size_t{3} << 20) + alloc::kMaxClassSize + 1);
  for (const Obj& o : objs) { ASSERT_TRUE(pool->free(o.h).ok()); }
  s = pool->stats();
  EXPECT_EQ(s.huge_objects, 0u);
  EXPECT_EQ(s.huge_bytes, 0u);
  EXPECT_EQ(s.live_bytes, 0u);
}

// Classes are 8 B apart up to 512 B, so an object is 8 B aligned, and 16 B aligned when its size is a multiple
// of 16 — what any type that fits in it needs (a type of alignment 16 has a size that is a multiple of 16) —
// before and after compaction moves it.
TEST(Pool, ObjectsAreAlignedForEveryTypeThatFitsThem) {
  auto pool = NewPool();
  std::vector<Obj> objs;
  for (std::size_t size = 1; size <= 1100; ++size) {
    for (std::uint64_t k = 0; k < 3; ++k) objs.push_back({AllocFilled(*pool, size, size * 3 + k), size, size * 3 + k});
  }
  auto check = [&](const char* when) {
    for (const Obj& o : objs) {
      const auto at = reinterpret_cast<std::uintptr_t>(pool->pin(o.h, Access::kRead).value().data());
      ASSERT_EQ(at % 8, 0u) << when << " size " << o.size;
      if (o.size % 16 == 0) { ASSERT_EQ(at % 16, 0u) << when << " size " << o.size; }
    }
  };
  check("allocated");
  for (std::size_t i = 0; i < objs.size(); ++i) {  // free two of each three, so that compaction moves the rest
    if (i % 3 != 2) { ASSERT_TRUE(pool->free(objs[i].h).ok()); }
  }
  std::erase_if(objs, [&, i = std::size_t{0}](const Obj&) mutable { return i++ % 3 != 2; });
  EXPECT_GT(pool->compact().objects_moved, 0u);
  check("compacted");
  for (const Obj& o : objs) EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed)) << o.size;
  for (const Obj& o : objs) ASSERT_TRUE(pool->free(o.h).ok());
}

// A class whose last block goes (compaction releases its spare) gives its block lists back, and makes them
// again for its next block.
TEST(Pool, AClassWithNoBlockLeftGivesItsListsBack) {
  auto pool = NewPool();
  Handle keep = AllocFilled(*pool, 64, 1);  // the thread's cache and one class stay made
  pool->compact();
  const std::uint64_t meta0 = pool->stats().metadata_bytes;
  std::vector<Handle> hs;
  for (std::uint64_t k = 0; k < 100; ++k) hs.push_back(AllocFilled(*pool, 1000, k));
  const std::uint64_t meta1 = pool->stats().metadata_bytes;
  EXPECT_GT(meta1, meta0);
  for (Handle h : hs) ASSERT_TRUE(pool->free(h).ok());
  pool->compact();
  const PoolStats s = pool->stats();
  EXPECT_EQ(StatsOf(s, 1000).blocks, 0u);
  EXPECT_LE(s.metadata_bytes + sizeof(void*) * 8 * alloc::kNumGroups, meta1);  // the lists went
  Handle again = AllocFilled(*pool, 1000, 7);
  EXPECT_TRUE(Intact(*pool, again, 1000, 7));
  EXPECT_TRUE(Intact(*pool, keep, 64, 1));
  ASSERT_TRUE(pool->free(again).ok());
  ASSERT_TRUE(pool->free(keep).ok());
}

TEST(Pool, PinnedPointerIsStableAndReadOnlyPinsAreConst) {
  auto pool = NewPool();
  Handle h = AllocFilled(*pool, 64, 3);
  Pinned a = pool->pin(h, Access::kRead).value();
  Pinned b = pool->pin(h, Access::kReadWrite).value();
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(b.mutable_data(), b.data());
  b.reset();
  EXPECT_FALSE(b.valid());
  Pinned moved = std::move(a);
  EXPECT_TRUE(moved.valid());
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the moved-from pin is empty
}

// Fills `n` objects of random sizes in [lo, hi], then frees all but one in `keep_every`.
std::vector<Obj> ThinnedHeap(Pool& pool, std::size_t n, std::size_t lo, std::size_t hi, int keep_every,
                             std::uint32_t rng_seed) {
  std::mt19937_64 rng(rng_seed);
  std::uniform_int_distribution<std::size_t> size(lo, hi);
  std::vector<Obj> all;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t s = size(rng);
    all.push_back({AllocFilled(pool, s, i * 1000003), s, i * 1000003});
  }
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<Obj> kept;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i % keep_every == 0) {
      kept.push_back(all[i]);
    } else {
      EXPECT_TRUE(pool.free(all[i].h).ok());
    }
  }
  return kept;
}

TEST(Pool, ContentsSurviveRepeatedCompactions) {
  PoolOptions o;
  o.direct_compaction = std::chrono::microseconds(0);  // the moves counted below are compact()'s alone
  auto pool = NewPool(o);
  std::vector<Obj> kept = ThinnedHeap(*pool, 60000, 16, 512, 5, 11);
  std::mt19937_64 rng(5);
  std::uint64_t moved_total = 0;
  for (int round = 0; round < 6; ++round) {
    CompactResult r = pool->compact();
    moved_total += r.objects_moved;
    for (const Obj& o : kept) { ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed)) << "round " << round; }
    // Churn between rounds so each compaction has work: free a quarter, allocate as many again.
    std::shuffle(kept.begin(), kept.end(), rng);
    const std::size_t quarter = kept.size() / 4;
    for (std::size_t i = 0; i < quarter; ++i) { ASSERT_TRUE(pool->free(kept[i].h).ok()); }
    for (std::size_t i = 0; i < quarter; ++i) {
      const std::size_t s = 16 + rng() % 497;
      const std::uint64_t seed = rng();
      kept[i] = {AllocFilled(*pool, s, seed), s, seed};
    }
  }
  // 60000 objects thinned to 12000 spread over every block: compaction must have moved a good part of them.
  EXPECT_GT(moved_total, kept.size() / 2);
  EXPECT_EQ(pool->stats().objects_moved, moved_total);
}

TEST(Pool, CompactionEmptiesSparseBlocksIntoDenseOnes) {
  auto pool = NewPool();
  std::vector<Obj> kept = ThinnedHeap(*pool, 40000, 100, 100, 10, 3);  // one class
  pool->flush_thread_cache();  // so that every page compact() releases is one it emptied
  const PoolStats before = pool->stats();
  const CompactResult r = pool->compact();
  const PoolStats after = pool->stats();
  const ClassStats c = StatsOf(after, 100);
  // All but at most one block of the class is full.
  EXPECT_LE(c.blocks, (c.objects_in_use + c.objects_per_block - 1) / c.objects_per_block + 1);
  EXPECT_EQ(before.block_bytes - after.block_bytes, r.pages_released * kPageSize);
  EXPECT_EQ(r.bytes_moved, r.objects_moved * c.slot_size);  // whole slots are copied
  EXPECT_GT(r.blocks_released, 0u);
  EXPECT_EQ(after.pages_compacted, r.pages_released);
  for (const Obj& o : kept) { ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed)); }
  // A second compaction finds nothing to do.
  EXPECT_EQ(pool->compact().objects_moved, 0u);
}

// Whether this kernel discards many ranges in one call (Os::DiscardRanges through process_madvise).
bool KernelBatchesDiscards() {
  std::byte* r = os::SystemOs().Reserve(Bytes(4 * kPageSize), Bytes(kPageSize)).value();
  const os::PageSpan spans[] = {{r, Bytes(kPageSize)}, {r + 2 * kPageSize, Bytes(kPageSize)}};
  os::RangeProgress progress;
  EXPECT_TRUE(os::SystemOs().DiscardRanges(spans, &progress).ok());
  (void)os::SystemOs().Unreserve(r, Bytes(4 * kPageSize));
  return progress.calls == 1;
}

// compact() gives the blocks it empties back together at its end, in one call per 1024 runs where the kernel
// batches — with a decay delay of zero too, where a free gives its block back at once.
TEST(Pool, CompactionGivesEmptiedBlocksBackInBatchesWhateverTheDecay) {
  for (const std::chrono::milliseconds decay : {std::chrono::milliseconds(0), PoolOptions().decay}) {
    PoolOptions o;
    o.decay = decay;
    auto pool = NewPool(o);
    std::vector<Obj> kept = ThinnedHeap(*pool, 40000, 100, 100, 10, 5);
    pool->flush_thread_cache();
    pool->release_free_memory();
    const PoolStats before = pool->stats();
    const CompactResult r = pool->compact();
    const PoolStats after = pool->stats();
    const std::uint64_t calls = after.discard_calls - before.discard_calls;
    const std::uint64_t runs = after.discard_runs - before.discard_runs;
    EXPECT_GT(r.blocks_released, 10u);
    EXPECT_GE(runs, 2u);  // the emptied blocks lie between full ones
    EXPECT_LE(runs, r.blocks_released);
    if (KernelBatchesDiscards()) {
      EXPECT_LE(calls, (runs + 1023) / 1024) << "decay " << decay.count() << " ms";
    } else {
      EXPECT_EQ(calls, runs);
    }
    EXPECT_EQ(after.dirty_bytes, 0u);
    EXPECT_EQ(after.discard_failures, 0u);
    for (const Obj& o : kept) { ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed)); }
  }
}

// The page map of regions the pool no longer uses goes back with the discards of their pages (the arena's
// region shadow, alloc/region_shadow.h): a heap that shrinks keeps no map of the address space it left. The
// map of the region still in use keeps its entries: every survivor is still found.
TEST(Pool, ThePageMapOfRegionsNoLongerInUseGoesBack) {
  auto pool = NewPool();
  std::vector<Obj> all;
  for (std::uint64_t i = 0; i < 6000; ++i) all.push_back({AllocFilled(*pool, 4000, i), 4000, i});  // ~12 regions
  const auto ranges = pool->reserved_ranges();
  const auto map = std::find_if(ranges.begin(), ranges.end(),
                                [](const Pool::AddressRange& r) { return std::string(r.role) == "page map"; });
  ASSERT_NE(map, ranges.end());
  const std::uint64_t map_before = bench::ResidentBytesIn(map->start, map->size).value();
  EXPECT_GE(map_before, 3 * kPageSize);  // 1 KiB of map per region, a page per four regions
  const std::uint64_t metadata_before = pool->stats().metadata_bytes;
  std::vector<Obj> kept(all.begin(), all.begin() + 100);  // the first region's
  for (std::size_t i = 100; i < all.size(); ++i) ASSERT_TRUE(pool->free(all[i].h).ok());
  pool->flush_thread_cache();
  pool->compact();
  EXPECT_EQ(pool->stats().regions_in_use, 1u);
  EXPECT_EQ(bench::ResidentBytesIn(map->start, map->size).value(), kPageSize);
  EXPECT_LE(pool->stats().metadata_bytes + map_before - kPageSize, metadata_before);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  // The map comes back where the pool grows again.
  for (std::size_t i = 100; i < all.size(); ++i) all[i].h = AllocFilled(*pool, 4000, all[i].seed);
  for (const Obj& o : all) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A size of a class whose blocks span many pages and slots (the 1-4 KiB classes size-shift leaves partly filled).
alloc::SizeClassInfo WideClass(std::size_t* size) {
  const alloc::SizeClassMap map;
  for (*size = 1024; *size <= 4096; *size += 16) {
    const alloc::SizeClassInfo& i = map.info(map.ClassFor(*size));
    if (i.pages_per_block >= 8 && i.objects_per_block >= 8) return i;
  }
  ADD_FAILURE() << "no class of 8 pages and 8 slots";
  return {};
}

// A pool whose allocations never compact on their own (direct compaction is timed by the clock: whether it ran
// during a test's allocations, and cut a block's tail or moved an object, would depend on the machine's speed).
std::unique_ptr<Pool> NewPoolCompactingOnlyWhenAsked() {
  PoolOptions o;
  o.direct_compaction = std::chrono::microseconds(0);
  return NewPool(o);
}

// A block compaction leaves partly filled gives back the pages past its last slot in use: the arena holds
// only the pages the block still has, the stats count them, and the block takes new objects in the slots it
// kept before the class makes another.
TEST(Pool, CompactionCutsTheFreeTailOfABlockLeftPartlyFilled) {
  std::size_t size;
  const alloc::SizeClassInfo info = WideClass(&size);
  auto pool = NewPoolCompactingOnlyWhenAsked();
  std::vector<Obj> objs;
  for (std::uint64_t i = 0; i < info.objects_per_block / 2; ++i) objs.push_back({AllocFilled(*pool, size, i), size, i});
  pool->flush_thread_cache();
  ASSERT_EQ(StatsOf(pool->stats(), size).block_pages, info.pages_per_block);
  const CompactResult r = pool->compact();
  const PoolStats s = pool->stats();
  const ClassStats c = StatsOf(s, size);
  EXPECT_EQ(c.blocks, 1u);
  EXPECT_LT(c.block_pages, info.pages_per_block);
  EXPECT_GE(c.block_pages * kPageSize, info.data_offset + objs.size() * info.slot_size);  // the live slots stay
  EXPECT_EQ(r.pages_released, info.pages_per_block - c.block_pages);
  EXPECT_EQ(s.block_bytes, c.block_pages * kPageSize);
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  EXPECT_EQ(bench::ResidentBytesIn(arena.start, arena.size).value(), c.block_pages * kPageSize);
  for (const Obj& o : objs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  // More objects: the cut block's slots and new whole blocks take them (a slot past the cut would be on a page
  // the page map no longer names, and its object would not read back).
  for (std::uint64_t i = objs.size(); i < 3 * info.objects_per_block; ++i) objs.push_back({AllocFilled(*pool, size, i), size, i});
  pool->flush_thread_cache();
  const ClassStats grown = StatsOf(pool->stats(), size);
  EXPECT_EQ(grown.objects_in_use, objs.size());
  EXPECT_EQ(grown.block_pages, c.block_pages + (grown.blocks - 1) * info.pages_per_block);  // new ones whole
  for (const Obj& o : objs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  for (const Obj& o : objs) ASSERT_TRUE(pool->free(o.h).ok());
  pool->compact();
  EXPECT_EQ(StatsOf(pool->stats(), size).block_pages, 0u);
  EXPECT_EQ(bench::ResidentBytesIn(arena.start, arena.size).value(), 0u);
}

// The emptiest block that cannot be emptied gives its highest objects to the room the others have left, so
// that its tail empties and goes back: one block full, the other cut below its first slots.
TEST(Pool, TheEmptiestBlockLeftGivesItsHighestObjectsToTheRoomLeft) {
  std::size_t size;
  const alloc::SizeClassInfo info = WideClass(&size);
  auto pool = NewPoolCompactingOnlyWhenAsked();
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::size_t block_bytes = info.pages_per_block * kPageSize;
  std::vector<Obj> objs;
  for (std::uint64_t i = 0; i < info.objects_per_block + 3; ++i) objs.push_back({AllocFilled(*pool, size, i), size, i});
  pool->flush_thread_cache();
  auto block_of = [&](Handle h) {
    return static_cast<std::size_t>(pool->pin(h, Access::kRead).value().data() - arena.start) / block_bytes;
  };
  // One hole in the first block (a refill may have left it one already); the second holds the rest.
  auto in_block = [&](std::size_t b) {
    std::size_t n = 0;
    for (const Obj& o : objs) n += block_of(o.h) == b ? 1 : 0;
    return n;
  };
  if (in_block(0) == info.objects_per_block) {
    const auto hole = std::find_if(objs.begin(), objs.end(), [&](const Obj& o) { return block_of(o.h) == 0; });
    ASSERT_TRUE(pool->free(hole->h).ok());
    objs.erase(hole);
    pool->flush_thread_cache();
  }
  ASSERT_EQ(in_block(0), info.objects_per_block - 1);
  const std::size_t second = in_block(1);
  ASSERT_GE(second, 3u);  // more than the room: the second block cannot be emptied
  const CompactResult r = pool->compact();
  // One object goes to the first block's hole; the second's others may then be packed down in it.
  EXPECT_GE(r.objects_moved, 1u);
  EXPECT_LE(r.objects_moved, second - 1);
  const ClassStats c = StatsOf(pool->stats(), size);
  EXPECT_EQ(c.blocks, 2u);
  EXPECT_EQ(c.fullness[kFullnessGroups - 1], 1u);
  EXPECT_LT(c.block_pages, 2 * info.pages_per_block);
  EXPECT_EQ(r.pages_released, 2 * info.pages_per_block - c.block_pages);
  EXPECT_EQ(bench::ResidentBytesIn(arena.start, arena.size).value(), c.block_pages * kPageSize);
  EXPECT_EQ(in_block(1), second - 1);
  for (const Obj& o : objs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A block left partly filled whose objects are scattered over its slots (what random frees leave) packs them
// down into its lowest free slots before the cut, so that the cut gives back every page the packed objects do
// not need. A pinned object near the end stops the packing there: it never moves, and the tail past it stays.
struct ScatteredBlock {
  std::unique_ptr<Pool> pool;
  alloc::SizeClassInfo info;
  std::size_t size = 0;
  std::vector<Obj> kept;  // in the first block, a quarter of its slots, its last slot among them
  std::size_t SlotOf(Handle h) {
    const std::byte* arena = pool->reserved_ranges()[0].start;
    const std::size_t at = static_cast<std::size_t>(pool->pin(h, Access::kRead).value().data() - arena);
    return at / (info.pages_per_block * kPageSize) == 0 ? (at - info.data_offset) / info.slot_size : ~std::size_t{0};
  }
};
ScatteredBlock MakeScatteredBlock() {
  ScatteredBlock s;
  s.info = WideClass(&s.size);
  s.pool = NewPoolCompactingOnlyWhenAsked();
  std::vector<Obj> all;
  for (std::uint64_t i = 0; i < 2 * s.info.objects_per_block; ++i) {
    all.push_back({AllocFilled(*s.pool, s.size, i), s.size, i});
  }
  s.pool->flush_thread_cache();
  std::size_t last = 0;
  for (const Obj& o : all) {
    const std::size_t slot = s.SlotOf(o.h);
    if (slot != ~std::size_t{0}) last = std::max(last, slot);
  }
  for (const Obj& o : all) {
    const std::size_t slot = s.SlotOf(o.h);
    if (slot != ~std::size_t{0} && (slot % 4 == 1 || slot == last)) {
      s.kept.push_back(o);
    } else {
      EXPECT_TRUE(s.pool->free(o.h).ok());
    }
  }
  s.pool->flush_thread_cache();
  EXPECT_EQ(last, s.info.objects_per_block - 1);
  return s;
}

TEST(Pool, CompactionPacksAScatteredBlockDownBeforeCuttingItsTail) {
  ScatteredBlock s = MakeScatteredBlock();
  ASSERT_GE(s.kept.size(), 3u);
  const std::uint64_t pages_before = StatsOf(s.pool->stats(), s.size).block_pages;  // an emptied block's too
  const CompactResult r = s.pool->compact();
  const ClassStats c = StatsOf(s.pool->stats(), s.size);
  EXPECT_EQ(c.blocks, 1u);
  EXPECT_EQ(c.objects_in_use, s.kept.size());
  const std::size_t packed_end = s.info.data_offset + s.kept.size() * s.info.slot_size;
  EXPECT_EQ(c.block_pages, (packed_end + kPageSize - 1) / kPageSize);
  EXPECT_LT(c.block_pages, s.info.pages_per_block);
  EXPECT_EQ(r.pages_released, pages_before - c.block_pages);
  EXPECT_GT(r.objects_moved, 0u);
  const Pool::AddressRange arena = s.pool->reserved_ranges()[0];
  EXPECT_EQ(bench::ResidentBytesIn(arena.start, arena.size).value(), c.block_pages * kPageSize);
  for (const Obj& o : s.kept) {
    ASSERT_TRUE(Intact(*s.pool, o.h, o.size, o.seed));
    EXPECT_LT(s.SlotOf(o.h), s.kept.size());  // the lowest slots
  }
  // The free list was remade right: more objects go to the cut block's free slots (refills take the fullest
  // block first) and to new blocks, and every object reads back.
  const std::size_t packed = s.kept.size();
  const std::byte* arena_start = arena.start;
  for (std::uint64_t i = 0; i < 2 * s.info.objects_per_block; ++i) {
    s.kept.push_back({AllocFilled(*s.pool, s.size, 1000 + i), s.size, 1000 + i});
  }
  s.pool->flush_thread_cache();
  const ClassStats grown = StatsOf(s.pool->stats(), s.size);
  EXPECT_EQ(grown.objects_in_use, s.kept.size());
  std::size_t in_cut_block = 0;
  for (const Obj& o : s.kept) {
    ASSERT_TRUE(Intact(*s.pool, o.h, o.size, o.seed));
    const std::byte* at = s.pool->pin(o.h, Access::kRead).value().data();
    in_cut_block += at < arena_start + c.block_pages * kPageSize ? 1 : 0;
  }
  const std::size_t capacity = (c.block_pages * kPageSize - s.info.data_offset) / s.info.slot_size;
  if (capacity > packed) {
    EXPECT_GT(in_cut_block, packed);
  } else {
    EXPECT_EQ(in_cut_block, packed);
  }
}

TEST(Pool, APinnedObjectStopsThePackingOfABlockWhereItIs) {
  ScatteredBlock s = MakeScatteredBlock();
  const Pinned last = s.pool->pin(s.kept.back().h, Access::kRead).value();
  const std::byte* where = last.data();
  const CompactResult r = s.pool->compact();
  EXPECT_EQ(r.objects_moved, 0u);
  EXPECT_EQ(StatsOf(s.pool->stats(), s.size).block_pages, s.info.pages_per_block);
  EXPECT_EQ(s.pool->pin(s.kept.back().h, Access::kRead).value().data(), where);
  for (const Obj& o : s.kept) ASSERT_TRUE(Intact(*s.pool, o.h, o.size, o.seed));
}

TEST(Pool, PinnedObjectsAreNeverMoved) {
  auto pool = NewPool();
  std::vector<Obj> kept = ThinnedHeap(*pool, 20000, 48, 48, 8, 9);
  std::vector<Pinned> pins;
  std::vector<const std::byte*> where;
  for (std::size_t i = 0; i < kept.size(); i += 3) {
    pins.push_back(pool->pin(kept[i].h, Access::kRead).value());
    where.push_back(pins.back().data());
  }
  const CompactResult r = pool->compact();
  EXPECT_GT(r.objects_skipped, 0u);
  for (std::size_t k = 0; k < pins.size(); ++k) {
    Pinned again = pool->pin(kept[k * 3].h, Access::kRead).value();
    EXPECT_EQ(again.data(), where[k]) << k;       // not moved
    EXPECT_TRUE(testing::Matches(pins[k].bytes(), kept[k * 3].seed));  // and the old pointer still reads it
  }
  pins.clear();
  const CompactResult r2 = pool->compact();
  EXPECT_GT(r2.objects_moved, 0u);  // unpinned, they move
  for (const Obj& o : kept) { ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed)); }
}

TEST(Pool, StatsAddUp) {
  auto pool = NewPool();
  std::vector<Obj> kept = ThinnedHeap(*pool, 30000, 16, 2000, 3, 17);
  kept.push_back({AllocFilled(*pool, 200000, 1), 200000, 1});
  std::uint64_t live = 0;
  for (const Obj& o : kept) live += o.size;
  pool->flush_thread_cache();
  for (int pass = 0; pass < 2; ++pass) {
    const PoolStats s = pool->stats();
    EXPECT_EQ(s.live_bytes, live);
    EXPECT_EQ(s.live_objects, kept.size());
    std::uint64_t in_use = 0, slot_bytes = 0, block_bytes = 0;
    for (const ClassStats& c : s.classes) {
      in_use += c.objects_in_use;
      slot_bytes += c.objects_in_use * c.slot_size;
      block_bytes += c.block_pages * kPageSize;
      EXPECT_LE(c.block_pages, c.blocks * c.pages_per_block);
      std::uint64_t listed = 0;
      for (std::uint64_t g : c.fullness) listed += g;
      EXPECT_EQ(listed, c.blocks);
      EXPECT_LE(c.fullness[0], 1u);  // at most the class's spare; other empty blocks are released at once
    }
    EXPECT_EQ(in_use + s.huge_objects, kept.size());
    EXPECT_EQ(s.slot_bytes, slot_bytes);
    EXPECT_EQ(s.block_bytes, block_bytes);
    EXPECT_GE(s.slot_bytes, live - 200000);
    EXPECT_EQ(s.handles_in_use, kept.size());
    EXPECT_EQ(s.resident_bytes,
              s.block_bytes + s.huge_bytes + s.dirty_bytes + s.handle_table_bytes + s.metadata_bytes);
    pool->compact();
  }
}

// A thread's cached slots of each class, and their bytes in all classes.
std::uint64_t CachedOf(const PoolStats& s, std::uint32_t slot_size) {
  for (const ClassStats& c : s.classes) {
    if (c.slot_size == slot_size) return c.objects_cached;
  }
  return 0;
}

TEST(Pool, ThreadCachesGrowForBatchesWithinABudgetAndShrinkWhenFlushed) {
  PoolOptions o;
  o.direct_compaction = std::chrono::microseconds(0);
  auto pool = NewPool(o);
  const alloc::SizeClassMap map;
  const std::uint32_t slot64 = map.info(map.ClassFor(64)).slot_size;
  // Batches of 1000 objects: the 64-byte list starts at 256 slots and doubles each time refills and flushes
  // alternate, until a whole batch fits and the class lock is no longer taken.
  auto batch = [&](std::size_t size, int n) {
    std::vector<Handle> hs;
    for (int i = 0; i < n; ++i) hs.push_back(pool->allocate(size).value());
    for (Handle h : hs) ASSERT_TRUE(pool->free(h).ok());
  };
  batch(64, 1000);
  EXPECT_LE(CachedOf(pool->stats(), slot64), 512u);
  for (int round = 0; round < 4; ++round) batch(64, 1000);
  const std::uint64_t grown = CachedOf(pool->stats(), slot64);
  EXPECT_GE(grown, 1000u);
  EXPECT_LE(grown, 2048u);
  // A flush puts the list back to its base of 256: the next batch's one swing doubles it once.
  pool->flush_thread_cache();
  EXPECT_EQ(CachedOf(pool->stats(), slot64), 0u);
  batch(64, 1000);
  EXPECT_LE(CachedOf(pool->stats(), slot64), 512u);
  // Batches in many classes: the lists together grow by at most kMaxGrownBytes of slots.
  pool->flush_thread_cache();
  std::uint64_t base_bytes = 0;
  for (std::size_t size = 512; size <= 4096; size += 512) {
    for (int round = 0; round < 4; ++round) batch(size, 600);
    const std::uint32_t slot = map.info(map.ClassFor(size)).slot_size;
    base_bytes += std::uint64_t{std::clamp<std::uint32_t>(16384 / slot, 2, 256)} * slot;
  }
  const PoolStats s = pool->stats();
  std::uint64_t cached_bytes = 0;
  for (const ClassStats& c : s.classes) cached_bytes += c.objects_cached * c.slot_size;
  EXPECT_GT(cached_bytes, base_bytes);  // some lists grew
  EXPECT_LE(cached_bytes, base_bytes + (std::uint64_t{1} << 20));
  EXPECT_EQ(s.live_objects, 0u);
}

// After the live count fell (many small objects freed), the handle table is sparse: its pages each keep a few
// live entries. A thread that frees and allocates reuses the entries it freed, wherever they are, so the
// table would stay that way; while the table is sparse, freed entries go back to it instead and allocations
// take entries of its densest pages, so the sparse pages empty and go back, without any entry moving.
TEST(Pool, WhileTheTableIsSparseFreedEntriesGoBackAndItsSparsePagesEmpty) {
  PoolOptions o;
  o.direct_compaction = std::chrono::microseconds(0);
  auto pool = NewPool(o);
  std::mt19937_64 rng(5);
  std::vector<Obj> objs;
  for (std::uint64_t i = 0; i < 200000; ++i) objs.push_back({AllocFilled(*pool, 16, i), 16, i});
  std::vector<Obj> kept;
  for (const Obj& x : objs) {
    if (rng() % 10 == 0) {
      kept.push_back(x);
    } else {
      ASSERT_TRUE(pool->free(x.h).ok());
    }
  }
  pool->compact();
  const std::uint64_t sparse_bytes = pool->stats().handle_table_bytes;
  EXPECT_GE(sparse_bytes, 350u * kPageSize);  // ~20,000 live entries over the 391 pages of the fill
  // Replace each object eight times over, in random order.
  std::uint64_t seed = objs.size();
  for (std::size_t k = 0; k < 8 * kept.size(); ++k, ++seed) {
    Obj& x = kept[rng() % kept.size()];
    ASSERT_TRUE(pool->free(x.h).ok());
    x = {AllocFilled(*pool, 16, seed), 16, seed};
  }
  pool->flush_thread_cache();
  PoolStats s = pool->stats();
  EXPECT_EQ(s.handles_in_use, kept.size());  // the entries on their way back went back with the flush
  pool->compact();
  s = pool->stats();
  // 20,000 entries fit in 40 pages; reusing freed entries in place kept all 391 (checked).
  EXPECT_LE(s.handle_table_bytes, sparse_bytes / 3);
  for (const Obj& x : kept) ASSERT_TRUE(Intact(*pool, x.h, x.size, x.seed));
}

// A cycle histogram renders as one line, a bucket per bound and the longer ones last, as the text stats print it.
TEST(Pool, CycleCountsRenderOnOneLine) {
  PoolStats s;
  for (std::size_t i = 0; i < s.background_cycle_histogram.size(); ++i) s.background_cycle_histogram[i] = 10 + i;
  EXPECT_EQ(FormatCycleCounts(s.background_cycle_histogram),
            " <=50us 10 <=100us 11 <=250us 12 <=500us 13 <=1000us 14 <=2000us 15 <=5000us 16 <=10000us 17 longer 18");
  s.background_cycles = 1;
  s.background_running = true;
  EXPECT_NE(FormatStatsText(s).find("  cycles    " + FormatCycleCounts(s.background_cycle_histogram) + "\n"),
            std::string::npos)
      << FormatStatsText(s);
}

TEST(Pool, StatsRenderAsTextAndJson) {
  auto pool = NewPool();
  Handle h = AllocFilled(*pool, 100, 1);
  const PoolStats s = pool->stats();
  const std::string text = FormatStatsText(s);
  EXPECT_NE(text.find("live"), std::string::npos);
  EXPECT_NE(text.find("   104 "), std::string::npos);  // the 104 B class row
  const std::string json = FormatStatsJson(s);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_NE(json.find("\"live_bytes\":100,"), std::string::npos);
  const alloc::SizeClassMap map;
  const alloc::SizeClassInfo& c104 = map.info(map.ClassFor(100));
  EXPECT_EQ(c104.slot_size, 104u);
  // The blocks the thread cache's first refill took (one or two, by the class's geometry; the refill's new
  // block may have had its free tail cut by the direct compaction it triggered).
  std::uint64_t blocks = 0, block_pages = 0;
  for (const ClassStats& c : s.classes) {
    if (c.slot_size == 104) {
      blocks = c.blocks;
      block_pages = c.block_pages;
    }
  }
  EXPECT_GE(blocks, 1u);
  EXPECT_GE(block_pages, blocks);
  EXPECT_LE(block_pages, blocks * c104.pages_per_block);
  EXPECT_NE(json.find(absl::StrFormat("\"size\":104,\"pages_per_block\":%u,\"objects_per_block\":%u,\"blocks\":%u,"
                                      "\"block_pages\":%u,",
                                      c104.pages_per_block, c104.objects_per_block, blocks, block_pages)),
            std::string::npos);
  EXPECT_TRUE(pool->free(h).ok());
}

TEST(Pool, FreedBlocksLeaveAndDecayedOnesWait) {
  PoolOptions o;
  o.decay = std::chrono::hours(1);
  auto pool = NewPool(o);
  std::vector<Handle> hs;
  for (int i = 0; i < 5000; ++i) hs.push_back(pool->allocate(1000).value());
  for (Handle h : hs) { ASSERT_TRUE(pool->free(h).ok()); }
  pool->flush_thread_cache();
  EXPECT_GT(pool->stats().dirty_bytes, 4000000u);  // kept for the decay delay
  pool->release_free_memory();
  EXPECT_EQ(pool->stats().dirty_bytes, 0u);
  EXPECT_EQ(pool->stats().block_bytes, 0u);
}

TEST(Pool, HandlesFromTheSameEntryDiffer) {
  auto pool = NewPool();
  Handle a = pool->allocate(32).value();
  ASSERT_TRUE(pool->free(a).ok());
  Handle b = pool->allocate(32).value();
  EXPECT_EQ(a.index(), b.index());  // the thread cache hands the entry straight back
  EXPECT_NE(a.check(), b.check());
  EXPECT_EQ(pool->pin(a, Access::kRead).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(pool->pin(b, Access::kRead).ok());
}

}  // namespace
}  // namespace mova
