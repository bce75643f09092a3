// Arena defragmentation: the pool as a driver of the movable-block framework moves whole blocks down into
// room in lower regions. Contents survive, handles stay valid, pinned and thread-cached blocks stay put,
// high regions empty out, and moves add no mappings.
#include <gtest/gtest.h>

#include <algorithm>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "alloc/arena.h"
#include "bench/rss.h"
#include "mova/pool.h"
#include "tests/class_stats.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::FreeEveryOther;
using testing::Intact;
using testing::Obj;
using testing::ScatteredDenseBlocks;

// Mappings over one of the pool's ranges (sanitizers and malloc map memory of their own elsewhere).
std::size_t MappingsOverlapping(const Pool::AddressRange& range) { return bench::MappingsIn(range.start, range.size).value(); }

TEST(PoolDefrag, HighRegionsEmptyOutAndEverythingSurvives) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 1);
  const PoolStats before = pool->stats();
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::uint64_t resident_before = bench::ResidentBytesIn(arena.start, arena.size).value();

  const DefragResult r = pool->defragment();
  const PoolStats after = pool->stats();
  const std::uint64_t resident_after = bench::ResidentBytesIn(arena.start, arena.size).value();
  std::printf("defragment: %lu regions scanned, %lu blocks migrated, %lu isolate refusals, %lu failed, "
              "%lu regions freed in %.1f ms; regions in use %lu -> %lu; arena resident %.2f -> %.2f MiB\n",
              (unsigned long)r.regions_scanned, (unsigned long)r.blocks_migrated, (unsigned long)r.isolate_failed,
              (unsigned long)r.blocks_failed, (unsigned long)r.regions_freed, r.seconds * 1e3,
              (unsigned long)before.regions_in_use, (unsigned long)after.regions_in_use,
              resident_before / 1048576.0, resident_after / 1048576.0);

  EXPECT_GT(r.blocks_migrated, 0u);
  EXPECT_GE(r.pages_moved, r.blocks_migrated);  // every block is at least a page
  // Each block moved one way, counted: by memcpy, as every block is shorter than the default zero_copy_min
  // (PoolMoves tests the zero-copy ways for blocks); the copied-from pages go back by the end.
  EXPECT_EQ(r.moves_copy, r.blocks_migrated);
  EXPECT_EQ(r.moves_uffd + r.moves_mremap, 0u);
  EXPECT_GT(r.regions_freed, 0u);
  EXPECT_LT(after.regions_in_use, before.regions_in_use);
  // First fit packs the blocks: at most two regions more than their pages need.
  const std::uint64_t needed = (after.block_bytes / kPageSize + alloc::kPagesPerRegion - 1) / alloc::kPagesPerRegion;
  EXPECT_LE(after.regions_in_use, needed + 2);
  EXPECT_LE(resident_after, resident_before);
  EXPECT_EQ(after.block_bytes, before.block_bytes);  // blocks moved, none lost or duplicated
  EXPECT_EQ(after.live_objects, before.live_objects);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.blocks_migrated, r.blocks_migrated);
  EXPECT_EQ(after.regions_freed, r.regions_freed);
  for (const ClassStats& c : after.classes) {
    std::uint64_t listed = 0;
    for (std::uint64_t g : c.fullness) listed += g;
    EXPECT_EQ(listed, c.blocks);  // every block is back on a list
  }
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  // The pool keeps working on moved blocks: free half, allocate again, compact, defragment again.
  for (std::size_t i = 0; i < kept.size(); i += 2) ASSERT_TRUE(pool->free(kept[i].h).ok());
  for (std::size_t i = 0; i < kept.size(); i += 2) kept[i] = {AllocFilled(*pool, 333, i), 333, i};
  pool->compact();
  pool->defragment();
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// Compaction finds the blocks migration moved (a migrated block is listed afresh at its new place, in the lane
// of its new first page): after a defragment() and a second thin-out, compact() leaves every class as dense as
// it leaves a class whose blocks never moved.
TEST(PoolDefrag, CompactionAfterMigrationReachesEveryMovedBlock) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 3);
  const DefragResult r = pool->defragment();
  ASSERT_GT(r.blocks_migrated, 0u);
  bool freed = false;
  const std::vector<Obj> survivors = FreeEveryOther(*pool, kept, &freed);
  ASSERT_TRUE(freed);
  const CompactResult c = pool->compact();
  EXPECT_GT(c.blocks_released, 0u);
  for (const ClassStats& cls : pool->stats().classes) {
    if (cls.blocks == 0) continue;
    const std::uint64_t needed = (cls.objects_in_use + cls.objects_per_block - 1) / cls.objects_per_block;
    EXPECT_LE(cls.blocks, needed + 1) << "class of " << cls.slot_size << " B: " << cls.objects_in_use
                                      << " objects in " << cls.blocks << " blocks";
  }
  for (const Obj& o : survivors) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolDefrag, BlocksWithPinnedObjectsStayPut) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 2);
  std::vector<Pinned> pins;
  std::vector<const std::byte*> where;
  for (std::size_t i = 0; i < kept.size(); i += 97) {
    pins.push_back(pool->pin(kept[i].h, Access::kRead).value());
    where.push_back(pins.back().data());
  }
  const DefragResult r = pool->defragment();
  EXPECT_GT(r.isolate_failed, 0u);  // the pinned objects' blocks were refused
  EXPECT_GT(r.blocks_migrated, 0u); // the others moved
  for (std::size_t k = 0; k < pins.size(); ++k) {
    Pinned again = pool->pin(kept[k * 97].h, Access::kRead).value();
    EXPECT_EQ(again.data(), where[k]);
    EXPECT_TRUE(testing::Matches(pins[k].bytes(), kept[k * 97].seed));
  }
  pins.clear();
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolDefrag, SlotsHeldByAnotherThreadsCacheAreNotMovedFromUnderIt) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 3);
  // Another thread fills its cache with slots (frees land there), then waits while the pool defragments;
  // its cached slots must still be valid places to allocate afterwards.
  std::atomic<int> phase{0};
  std::vector<Obj> theirs;
  std::thread other([&] {
    std::vector<Handle> tmp;
    for (int i = 0; i < 200; ++i) tmp.push_back(pool->allocate(200).value());
    for (Handle h : tmp) ASSERT_TRUE(pool->free(h).ok());
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
    for (int i = 0; i < 200; ++i) theirs.push_back({AllocFilled(*pool, 200, 5000 + i), 200, 5000u + i});
    for (const Obj& o : theirs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  });
  while (phase.load() != 1) std::this_thread::yield();
  const DefragResult r = pool->defragment();
  EXPECT_GT(r.blocks_migrated, 0u);
  phase = 2;
  other.join();
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  for (const Obj& o : theirs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolDefrag, MovesAddNoMappings) {
  auto pool = Pool::Create().value();
  std::mt19937_64 rng(9);
  std::vector<Obj> live;
  live.reserve(1 << 20);
  std::uint64_t total_migrated = 0;
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::size_t maps_before = MappingsOverlapping(arena);
  EXPECT_LE(maps_before, 2u);  // one reservation (merged with a neighbour, perhaps)
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 20000; ++i) {
      const std::size_t s = 16 + rng() % 1500;
      live.push_back({AllocFilled(*pool, s, rng()), s, 0});
      live.back().seed = 0;  // contents are checked by the other tests; here only the mappings count
    }
    for (std::size_t i = 0; i < live.size();) {
      if (rng() % 3 != 0) {
        ASSERT_TRUE(pool->free(live[i].h).ok());
        live[i] = live.back();
        live.pop_back();
      } else {
        ++i;
      }
    }
    pool->compact();
    total_migrated += pool->defragment().blocks_migrated;
  }
  EXPECT_GT(total_migrated, 1000u);
  EXPECT_EQ(MappingsOverlapping(arena), maps_before);  // thousands of moves, not one mapping more
}

}  // namespace
}  // namespace mova

namespace mova {
namespace {

// A budget of a microsecond: each call stops after its first batch of moves (compact) or its first region
// (defragment), says it is not complete, and the next call goes on; the calls end where one unbudgeted call
// would have, and every object survives.
// Calls `step` (one budgeted call) until a call is complete. Every call that stops must have
// `made_progress(its result, the dirty bytes before it)`, and a pass must end within 100,000 calls. Returns the
// calls made and the sum of `counted` over them.
template <typename Result>
std::pair<int, std::uint64_t> RunBudgetedPass(Pool& pool, const std::function<Result()>& step,
                                              std::uint64_t Result::*counted,
                                              const std::function<bool(const Result&, std::uint64_t)>& made_progress) {
  int calls = 0;
  std::uint64_t total = 0;
  for (Result r; !r.complete || calls == 0;) {
    const std::uint64_t dirty = pool.stats().dirty_bytes;
    r = step();
    ++calls;
    total += r.*counted;
    if (calls >= 100000) {
      ADD_FAILURE() << "a budgeted pass that never ends";
      break;
    }
    if (!r.complete && !made_progress(r, dirty)) {
      ADD_FAILURE() << "call " << calls << " stopped without progress";
      break;
    }
  }
  return {calls, total};
}

TEST(PoolBudget, BudgetedPassesStopAndGoOnToTheSameEnd) {
  auto pool = Pool::Create().value();
  std::mt19937_64 rng(5);
  std::vector<Obj> kept;
  {
    std::vector<Obj> all;
    for (std::size_t i = 0; i < 200000; ++i) {
      const std::size_t size = 16 + rng() % 497;
      all.push_back({AllocFilled(*pool, size, i * 31), size, i * 31});
    }
    for (const Obj& o : all) {
      if (rng() % 10 == 0) {
        kept.push_back(o);
      } else {
        ASSERT_TRUE(pool->free(o.h).ok());
      }
    }
  }
  const PassBudget tiny{std::chrono::microseconds(1)};
  // A call that stops has moved something, or discarded pages a call before it emptied (half of each budget
  // goes to discarding: Arena::DeferDiscards). The pass ends with every emptied page given back.
  auto [calls, moved] = RunBudgetedPass<CompactResult>(
      *pool, [&] { return pool->compact(tiny); }, &CompactResult::objects_moved,
      [&](const CompactResult& r, std::uint64_t dirty) {
        return r.objects_moved > 0 || pool->stats().dirty_bytes < dirty;
      });
  EXPECT_GT(calls, 3);
  EXPECT_GT(moved, 0u);
  EXPECT_EQ(pool->stats().dirty_bytes, 0u);
  EXPECT_EQ(pool->compact().objects_moved, 0u);  // the budgeted calls left nothing for a full pass
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));

  // One step of a region (16 pages, and the rest of a block that begins in them), then the budget was spent;
  // or no region, discarding what earlier calls gave back.
  std::uint64_t migrated = 0, most_pages = 0;
  std::tie(calls, migrated) = RunBudgetedPass<DefragResult>(
      *pool,
      [&] {
        const DefragResult r = pool->defragment(tiny);
        most_pages = std::max(most_pages, r.pages_moved);
        return r;
      },
      &DefragResult::blocks_migrated,
      [&](const DefragResult& r, std::uint64_t dirty) {
        return r.regions_scanned == 1 || (r.regions_scanned == 0 && pool->stats().dirty_bytes < dirty);
      });
  EXPECT_GT(calls, 1);
  EXPECT_GT(migrated, 0u);
  EXPECT_GT(most_pages, 0u);
  EXPECT_LE(most_pages, 16u + 15u);  // a budgeted call's step: 16 pages, and the rest of a block begun in them
  EXPECT_EQ(pool->stats().dirty_bytes, 0u);
  EXPECT_EQ(pool->defragment().blocks_migrated, 0u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A whole compact() or defragment() after budgeted calls that stopped mid-pass (the background compactor's)
// recalls the thread caches as a first call does: a slot this thread's cache took from its frees since then
// would otherwise hold its block, and the whole call would pass over it.
TEST(PoolBudget, AWholeCallAfterAStoppedPassRecallsTheThreadCaches) {
  PoolOptions options;
  options.direct_compaction = std::chrono::microseconds(0);  // no compaction but the calls below
  auto pool = Pool::Create(options).value();
  std::mt19937_64 rng(23);
  std::vector<Obj> kept;
  std::vector<Handle> later;  // freed after the budgeted call, into this thread's cache
  for (std::uint64_t i = 0; i < 60000; ++i) {
    const std::size_t size = i % 2 == 0 ? 32 : 64;
    const Obj o{AllocFilled(*pool, size, i), size, i};
    const std::uint64_t pick = rng() % 10;
    if (pick == 0) {
      kept.push_back(o);
    } else if (pick == 1 && size == 64) {
      later.push_back(o.h);
    } else {
      ASSERT_TRUE(pool->free(o.h).ok());
    }
  }
  const CompactResult stopped = pool->compact(PassBudget{std::chrono::microseconds(1)});
  ASSERT_FALSE(stopped.complete);  // stopped in its first class with something to move
  for (Handle h : later) ASSERT_TRUE(pool->free(h).ok());
  ASSERT_GT(testing::StatsOf(pool->stats(), 64).objects_cached, 0u);

  const CompactResult whole = pool->compact();
  EXPECT_TRUE(whole.complete);
  const ClassStats c = testing::StatsOf(pool->stats(), 64);
  EXPECT_EQ(c.objects_cached, 0u);
  EXPECT_LE(c.blocks, c.objects_in_use / c.objects_per_block + 2);  // packed: the cached slots held no block
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));

  // defragment() likewise, on blocks scattered over the regions.
  auto scattered = Pool::Create(options).value();
  const std::vector<Obj> dense = ScatteredDenseBlocks(*scattered, 3, 8u << 20);
  const DefragResult step = scattered->defragment(PassBudget{std::chrono::microseconds(1)});
  ASSERT_FALSE(step.complete);
  std::vector<Handle> fresh;
  for (int i = 0; i < 64; ++i) fresh.push_back(scattered->allocate(48).value());
  for (Handle h : fresh) ASSERT_TRUE(scattered->free(h).ok());
  ASSERT_GT(testing::StatsOf(scattered->stats(), 48).objects_cached, 0u);
  EXPECT_TRUE(scattered->defragment().complete);
  EXPECT_EQ(testing::StatsOf(scattered->stats(), 48).objects_cached, 0u);
  for (const Obj& o : dense) ASSERT_TRUE(Intact(*scattered, o.h, o.size, o.seed));
}

// A class with more partly filled blocks than a budgeted call's view (SizeClass::kCompactView, 512): budgeted
// calls work on views of its emptiest and fullest blocks and end where one unbudgeted call ends on the same heap.
TEST(PoolBudget, BudgetedCallsOnViewsOfAClassEndWhereAWholeCallEnds) {
  std::unique_ptr<Pool> whole = Pool::Create().value(), viewed = Pool::Create().value();
  std::vector<Obj> kept_whole, kept_viewed;
  for (auto [pool, kept] : {std::pair{whole.get(), &kept_whole}, std::pair{viewed.get(), &kept_viewed}}) {
    std::mt19937_64 rng(11);
    std::vector<Obj> all;
    for (std::size_t i = 0; i < 120000; ++i) all.push_back({AllocFilled(*pool, 48, i * 7), 48, i * 7});
    for (const Obj& o : all) {
      if (rng() % 10 == 0) {
        kept->push_back(o);
      } else {
        ASSERT_TRUE(pool->free(o.h).ok());
      }
    }
    pool->flush_thread_cache();
  }
  const PoolStats before = viewed->stats();
  const ClassStats* cls = nullptr;
  for (const ClassStats& c : before.classes) {
    if (c.slot_size == 48) cls = &c;
  }
  ASSERT_NE(cls, nullptr);
  ASSERT_GT(cls->blocks, 1000u) << "the heap should give the class more partly filled blocks than a view holds";
  const CompactResult all_at_once = whole->compact();
  auto [calls, moved] = RunBudgetedPass<CompactResult>(
      *viewed, [&] { return viewed->compact(PassBudget{std::chrono::microseconds(1)}); },
      &CompactResult::objects_moved, [&](const CompactResult& r, std::uint64_t dirty) {
        return r.objects_moved > 0 || viewed->stats().dirty_bytes < dirty;
      });
  EXPECT_GT(calls, 10);
  EXPECT_GT(moved, 0u);
  EXPECT_EQ(viewed->compact().objects_moved, 0u);  // nothing left for a whole call
  EXPECT_EQ(viewed->stats().block_bytes, whole->stats().block_bytes) << all_at_once.objects_moved << " " << moved;
  for (const Obj& o : kept_viewed) ASSERT_TRUE(Intact(*viewed, o.h, o.size, o.seed));
  for (const Obj& o : kept_whole) ASSERT_TRUE(Intact(*whole, o.h, o.size, o.seed));
}

// A region that cannot be emptied (a pinned object keeps its block there) is passed over: budgeted calls go on
// below it instead of scanning it again, and the sequence ends.
TEST(PoolBudget, ARegionThatCannotBeEmptiedDoesNotStallBudgetedCalls) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 3);
  // The object highest in the arena, pinned for the whole defragmentation.
  const Obj* top = &kept.front();
  const std::byte* top_at = nullptr;
  for (const Obj& o : kept) {
    const std::byte* at = pool->pin(o.h, Access::kRead).value().data();
    if (at > top_at) {
      top_at = at;
      top = &o;
    }
  }
  Pinned held = pool->pin(top->h, Access::kRead).value();
  const PassBudget tiny{std::chrono::microseconds(1)};
  int calls = 0;
  std::uint64_t migrated = 0;
  for (DefragResult r; !r.complete || calls == 0;) {
    r = pool->defragment(tiny);
    ++calls;
    migrated += r.blocks_migrated;
    ASSERT_LT(calls, 10000) << "budgeted calls that keep scanning the same region";
  }
  EXPECT_GT(migrated, 0u);
  EXPECT_EQ(held.data(), top_at);  // the pinned object stayed put
  held.reset();
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

}  // namespace
}  // namespace mova
