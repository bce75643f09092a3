// Direct compaction (PoolOptions::direct_compaction): a refill that needs a new block while the class blocks
// are sparse recalls the thread caches and compacts, so a heap whose sizes shift grows into the pages the old
// sizes left instead of fresh ones, and a size no longer allocated gives its blocks back; it keeps pace with
// the new blocks however slow its clock spacing; with the option at zero it never runs; threads compacting
// directly beside each other (under ThreadSanitizer too) keep every object intact.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "mova/pool.h"
#include "tests/class_stats.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;
using testing::Obj;

struct ShiftOutcome {
  PoolStats stats;
  std::vector<Obj> objs;
};

// `bytes` of `from` B objects, nine in ten freed at random, then as many bytes of `to` B objects as were freed:
// the heap's live bytes never grow, its sizes shift. The survivors and the new objects go to `kept`; `seed`
// numbers the objects.
void Shift(Pool& pool, std::size_t from, std::size_t to, std::size_t bytes, std::mt19937_64& rng,
           std::uint64_t& seed, std::vector<Obj>& kept) {
  std::vector<Obj> small;
  for (std::size_t made = 0; made < bytes; made += from, ++seed) {
    small.push_back({AllocFilled(pool, from, seed), from, seed});
  }
  std::uint64_t freed = 0;
  for (const Obj& o : small) {
    if (rng() % 10 == 0) {
      kept.push_back(o);
    } else {
      EXPECT_TRUE(pool.free(o.h).ok());
      freed += o.size;
    }
  }
  for (std::uint64_t i = 0; i < freed / to; ++i, ++seed) kept.push_back({AllocFilled(pool, to, seed), to, seed});
}

// 24 MiB of 64 B objects shifted to 1 KiB.
ShiftOutcome ShiftSizes(Pool& pool) {
  std::mt19937_64 rng(5);
  std::uint64_t seed = 0;
  std::vector<Obj> kept;
  Shift(pool, 64, 1024, std::size_t{24} << 20, rng, seed, kept);
  return {pool.stats(), kept};
}

TEST(PoolDirectCompaction, ShiftingSizesGrowIntoThePagesTheOldSizesLeft) {
  PoolOptions off;
  off.direct_compaction = std::chrono::microseconds(0);
  auto plain = Pool::Create(off).value();
  const ShiftOutcome without = ShiftSizes(*plain);
  EXPECT_EQ(without.stats.direct_compactions, 0u);

  PoolOptions on;
  // One budget long enough for the whole heap (a few ms here), so the outcome does not depend on timing.
  on.direct_compaction = std::chrono::milliseconds(200);
  auto pool = Pool::Create(on).value();
  const ShiftOutcome with = ShiftSizes(*pool);
  EXPECT_GE(with.stats.direct_compactions, 1u);
  EXPECT_GT(with.stats.objects_moved, 0u);
  for (const Obj& o : with.objs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  // Without it the 64 B blocks stay nine-tenths empty beside the new 1 KiB ones; with it they were emptied
  // into each other and their pages reused.
  const double slack_without =
      static_cast<double>(without.stats.block_bytes) / static_cast<double>(without.stats.slot_bytes);
  const double slack_with = static_cast<double>(with.stats.block_bytes) / static_cast<double>(with.stats.slot_bytes);
  EXPECT_GT(slack_without, 1.6);
  EXPECT_LT(slack_with, 1.3);
  EXPECT_LT(with.stats.regions_touched, without.stats.regions_touched);
}

// A size the thread no longer allocates keeps slots in its cache, one here and one there, from its frees: before
// direct compaction recalled the caches, those slots held their blocks (compaction skips a block with a cached
// slot), and churn-ops kept ~35 MiB of such blocks in the classes its sizes had drifted past.
TEST(PoolDirectCompaction, ItRecallsTheThreadCachesSoASizeNoLongerAllocatedGivesItsBlocksBack) {
  PoolOptions options;
  options.direct_compaction = std::chrono::milliseconds(200);
  auto pool = Pool::Create(options).value();
  std::mt19937_64 rng(11);
  std::vector<Handle> small;
  for (int i = 0; i < 20000; ++i) small.push_back(pool->allocate(64).value());
  std::shuffle(small.begin(), small.end(), rng);
  for (Handle h : small) ASSERT_TRUE(pool->free(h).ok());
  const ClassStats before = testing::StatsOf(pool->stats(), 64);
  ASSERT_EQ(before.objects_in_use, 0u);
  ASSERT_GT(before.objects_cached, 20u);  // what the cache kept of the frees
  ASSERT_GT(before.blocks, 10u);          // on that many blocks, empty but for them
  ASSERT_EQ(pool->stats().direct_compactions, 0u);

  std::vector<Obj> large;
  for (std::uint64_t i = 0; i < 512 && pool->stats().direct_compactions == 0; ++i) {
    large.push_back({AllocFilled(*pool, 1024, i), 1024, i});
  }
  const PoolStats after = pool->stats();
  EXPECT_GE(after.direct_compactions, 1u);
  const ClassStats small_after = testing::StatsOf(after, 64);
  EXPECT_EQ(small_after.objects_cached, 0u);
  EXPECT_LE(small_after.blocks, 1u);  // the class's spare at most
  for (const Obj& o : large) {
    ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
    ASSERT_TRUE(pool->free(o.h).ok());
  }
}

// Three shifts one after the other (64 B -> 1 KiB, 96 B -> 1.5 KiB, 160 B -> 2 KiB), each leaving a class nine
// tenths empty: with a budget that ends every compaction's work (10 s) the clock allows one compaction in
// 100 s, so the ones after the first run because enough refills made blocks since (kDirectRefillSpacing). Each
// shift then ends with its old class emptied into itself, however fast the machine runs.
TEST(PoolDirectCompaction, ItKeepsPaceWithNewBlocksWhateverTheClockSays) {
  PoolOptions options;
  options.direct_compaction = std::chrono::seconds(10);
  auto pool = Pool::Create(options).value();
  std::mt19937_64 rng(17);
  std::vector<Obj> kept;
  const std::pair<std::size_t, std::size_t> shifts[] = {{64, 1024}, {96, 1536}, {160, 2048}};
  std::uint64_t seed = 0;
  for (const auto& [from, to] : shifts) {
    const std::uint64_t compactions_before = pool->stats().direct_compactions;
    Shift(*pool, from, to, std::size_t{6} << 20, rng, seed, kept);
    const PoolStats after = pool->stats();
    EXPECT_GT(after.direct_compactions, compactions_before) << from << " B -> " << to << " B";
    const ClassStats old_class = testing::StatsOf(after, from);
    // Emptied into itself: at most one block beyond what its survivors fill.
    EXPECT_LE(old_class.blocks, old_class.objects_in_use / old_class.objects_per_block + 2) << from << " B";
  }
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolDirectCompaction, AGrowingDenseHeapNeverRunsIt) {
  auto pool = Pool::Create().value();
  std::vector<Handle> hs;
  for (int i = 0; i < 300000; ++i) hs.push_back(pool->allocate(16 + i % 500).value());
  // Every class's blocks full but its last: new blocks all along, and nothing to compact.
  EXPECT_EQ(pool->stats().direct_compactions, 0u);
  for (Handle h : hs) ASSERT_TRUE(pool->free(h).ok());
}

// Two threads shift their own heaps' sizes at once, reading every object they keep: direct compactions run
// in either thread (one at a time, the other passing them by) beside the other's allocations, frees and pins.
TEST(PoolDirectCompaction, ThreadsCompactingDirectlyBesideEachOther) {
  PoolOptions options;
  options.direct_compaction = std::chrono::microseconds(200);
  auto pool = Pool::Create(options).value();
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<Obj> mine;
      for (int round = 0; round < 6; ++round) {
        const std::size_t size = 32u << round;  // 32 B to 1 KiB
        for (int i = 0; i < 4000; ++i) {
          const std::uint64_t seed = rng();
          mine.push_back({AllocFilled(*pool, size, seed), size, seed});
        }
        std::shuffle(mine.begin(), mine.end(), rng);
        while (mine.size() > 2000) {  // most of them go, at random
          if (!Intact(*pool, mine.back().h, mine.back().size, mine.back().seed)) ++bad;
          if (!pool->free(mine.back().h).ok()) ++bad;
          mine.pop_back();
        }
      }
      for (const Obj& o : mine) {
        absl::StatusOr<Pinned> p = t == 0 ? pool->pin_owned(o.h, Access::kRead) : pool->pin(o.h, Access::kRead);
        if (!p.ok() || !testing::Matches(p->bytes(), o.seed)) ++bad;
      }
      for (const Obj& o : mine) {
        if (!pool->free(o.h).ok()) ++bad;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(pool->stats().live_objects, 0u);
  std::printf("direct compactions: %lu\n", static_cast<unsigned long>(pool->stats().direct_compactions));
}

}  // namespace
}  // namespace mova
