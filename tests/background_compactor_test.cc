// The background compactor: its thread runs the job only when wanted, stops promptly, and a pool with one
// compacts a thinned heap by itself while other threads keep using the pool.
#include "alloc/background_compactor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "mova/pool.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;
using testing::Obj;

// Polls `done` for up to `seconds`.
template <typename F>
bool Eventually(F done, double seconds = 20) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(BackgroundCompactor, RunsTheJobOnlyWhenWanted) {
  std::atomic<bool> want{false};
  std::atomic<int> jobs{0};
  alloc::BackgroundCompactor c(absl::Milliseconds(1), [&] { return want.load(); }, [&] { ++jobs; });
  EXPECT_TRUE(c.running());
  ASSERT_TRUE(Eventually([&] { return c.wakeups() >= 5; }));
  EXPECT_EQ(jobs.load(), 0);
  EXPECT_EQ(c.runs(), 0u);
  want = true;
  ASSERT_TRUE(Eventually([&] { return jobs.load() >= 3; }));
  EXPECT_GE(c.runs(), 3u);
}

TEST(BackgroundCompactor, StopsPromptlyWhateverTheInterval) {
  const auto start = std::chrono::steady_clock::now();
  {
    alloc::BackgroundCompactor c(absl::Hours(1), [] { return true; }, [] {});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(BackgroundCompactor, APoolCompactsAThinnedHeapByItself) {
  PoolOptions options;
  options.background_interval = std::chrono::milliseconds(5);
  auto pool = Pool::Create(options).value();
  std::mt19937_64 rng(3);
  std::vector<Obj> kept;
  std::size_t bytes = 0;
  for (std::size_t i = 0; bytes < (8u << 20); ++i) {
    const std::size_t s = 16 + rng() % 500;
    const Obj o{AllocFilled(*pool, s, i), s, i};
    bytes += s;
    if (rng() % 10 == 0) {
      kept.push_back(o);
    } else {
      ASSERT_TRUE(pool->free(o.h).ok());
    }
  }
  pool->flush_thread_cache();
  // Nobody calls compact(): the pool's own thread does, and the blocks end up mostly live slots. A compaction
  // counts its moves when it ends, so the blocks can look dense while its moves are not counted yet: wait for
  // both.
  ASSERT_TRUE(Eventually([&] {
    const PoolStats s = pool->stats();
    return s.background_runs > 0 && s.objects_moved > 0 && s.block_bytes - s.slot_bytes <= 0.25 * s.block_bytes;
  })) << FormatStatsText(pool->stats());
  const PoolStats s = pool->stats();
  EXPECT_TRUE(s.background_running);
  EXPECT_GT(s.compactions, 0u);
  EXPECT_GT(s.objects_moved, 0u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(BackgroundCompactor, WorkersKeepUsingThePoolWhileItCompacts) {
  PoolOptions options;
  options.background_interval = std::chrono::milliseconds(1);
  options.background_threshold = 0.05;  // compact nearly every wakeup
  auto pool = Pool::Create(options).value();
  std::atomic<int> bad{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(50 + t);
      std::vector<Obj> mine;
      for (int op = 0; op < 20000; ++op) {
        if (mine.empty() || rng() % 3 != 0) {
          const std::size_t s = 16 + rng() % 700;
          const std::uint64_t seed = rng();
          mine.push_back({AllocFilled(*pool, s, seed), s, seed});
        } else {
          const std::size_t i = rng() % mine.size();
          if (!Intact(*pool, mine[i].h, mine[i].size, mine[i].seed)) ++bad;
          if (!pool->free(mine[i].h).ok()) ++bad;
          mine[i] = mine.back();
          mine.pop_back();
        }
      }
      for (const Obj& o : mine) {
        if (!Intact(*pool, o.h, o.size, o.seed)) ++bad;
      }
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(bad.load(), 0);
  const PoolStats s = pool->stats();
  std::printf("background: %lu wakeups, %lu compactions while the workers ran\n", (unsigned long)s.background_wakeups,
              (unsigned long)s.background_runs);
  EXPECT_GT(s.background_runs, 0u);
}

}  // namespace
}  // namespace mova
