// The background compactor: its thread runs a pass only when wanted, as paced cycles, stops promptly; a pool
// with one compacts a thinned heap by itself while other threads keep using the pool, gathers blocks spread
// over too many regions, and gives pages back under memory pressure (injected through the OS seam).
#include "alloc/background_compactor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "mova/pool.h"
#include "os/fault_injecting_os.h"
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

alloc::BackgroundPacing Every(absl::Duration interval, double cpu_percent = 100) { return {interval, cpu_percent}; }

TEST(BackgroundCompactor, RunsAPassOnlyWhenWanted) {
  std::atomic<bool> want{false};
  std::atomic<int> cycles{0};
  alloc::BackgroundCompactor c(Every(absl::Milliseconds(1)), [&] { return want.load(); }, [&] {
    ++cycles;
    return true;  // each pass is one cycle
  });
  EXPECT_TRUE(c.running());
  ASSERT_TRUE(Eventually([&] { return c.wakeups() >= 5; }));
  EXPECT_EQ(cycles.load(), 0);
  EXPECT_EQ(c.runs(), 0u);
  want = true;
  ASSERT_TRUE(Eventually([&] { return cycles.load() >= 3; }));
  EXPECT_GE(c.runs(), 3u);
}

// A pass runs cycle after cycle until one says it is complete, resting t·(100 − p)/p after a cycle of t: at
// 50%, as long as it worked. Lower bounds only (a rest is never shorter; a loaded machine only adds time).
TEST(BackgroundCompactor, APassRunsPacedCyclesUntilComplete) {
  std::atomic<int> cycles{0}, passes{0};
  std::atomic<std::int64_t> first_start_ns{0}, last_end_ns{0};
  auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  constexpr int kCycles = 5;
  constexpr auto kWork = std::chrono::milliseconds(2);
  alloc::BackgroundCompactor c(
      Every(absl::Milliseconds(1), 50), [&] { return passes.fetch_add(1) == 0; },  // one pass only
      [&] {
        if (cycles.load() == 0) first_start_ns = now_ns();
        const auto until = std::chrono::steady_clock::now() + kWork;
        while (std::chrono::steady_clock::now() < until) {
        }
        last_end_ns = now_ns();
        return ++cycles == kCycles;
      });
  ASSERT_TRUE(Eventually([&] { return c.cycles() == kCycles && passes.load() >= 3; }));
  EXPECT_EQ(cycles.load(), kCycles);
  EXPECT_EQ(c.runs(), 1u);
  const std::chrono::nanoseconds pass(last_end_ns - first_start_ns);
  EXPECT_GE(pass, kCycles * kWork + (kCycles - 1) * kWork) << pass.count();  // the rests equal the work
  // Every cycle is in the histogram, in a bucket of at least 2 ms.
  const auto counts = c.cycle_times().counts();
  std::uint64_t total = 0, short_ones = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    total += counts[i];
    if (i < PoolStats::kBackgroundCycleBoundsUs.size() && PoolStats::kBackgroundCycleBoundsUs[i] < 2000) {
      short_ones += counts[i];
    }
  }
  EXPECT_EQ(total, static_cast<std::uint64_t>(kCycles));
  EXPECT_EQ(short_ones, 0u);
  EXPECT_GE(c.cycle_times().longest_us(), 2000u);
}

// A cycle is timed on the wall clock and on the thread's CPU clock: one that waits (sleeps 3 ms here; a cycle
// preempted by other threads alike) is long on the first only, and every cycle is counted in both histograms.
TEST(BackgroundCompactor, ACycleThatWaitsIsLongOnTheWallClockOnly) {
  constexpr int kCycles = 4;
  std::atomic<int> cycles{0}, passes{0};
  alloc::BackgroundCompactor c(Every(absl::Milliseconds(1)), [&] { return passes.fetch_add(1) == 0; }, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    return ++cycles == kCycles;
  });
  // Two more looks for a pass after the pass ended: its last cycle was recorded before them.
  ASSERT_TRUE(Eventually([&] { return c.cycles() == kCycles && passes.load() >= 3; }));
  const auto wall = c.cycle_times().counts(), cpu = c.cycle_cpu_times().counts();
  std::uint64_t wall_total = 0, cpu_total = 0, cpu_within_1ms = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    wall_total += wall[i];
    cpu_total += cpu[i];
    if (i < PoolStats::kBackgroundCycleBoundsUs.size() && PoolStats::kBackgroundCycleBoundsUs[i] <= 1000) {
      cpu_within_1ms += cpu[i];
    }
  }
  EXPECT_EQ(wall_total, static_cast<std::uint64_t>(kCycles));
  EXPECT_EQ(cpu_total, static_cast<std::uint64_t>(kCycles));
  EXPECT_EQ(cpu_within_1ms, static_cast<std::uint64_t>(kCycles));
  EXPECT_GE(c.cycle_times().longest_us(), 3000u);
  EXPECT_LT(c.cycle_cpu_times().longest_us(), 1000u);
  EXPECT_LE(c.cycles_preempted(), static_cast<std::uint64_t>(kCycles));
}

TEST(BackgroundCompactor, StopsPromptlyWhateverTheIntervalOrTheRest) {
  {
    const auto start = std::chrono::steady_clock::now();
    { alloc::BackgroundCompactor c(Every(absl::Hours(1)), [] { return true; }, [] { return true; }); }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  }
  // At 1% of a core, a 20 ms cycle is followed by a rest of about 2 s: the destructor does not wait it out.
  std::atomic<int> cycles{0};
  std::chrono::steady_clock::time_point start;
  {
    alloc::BackgroundCompactor c(Every(absl::Milliseconds(1), 1), [] { return true; }, [&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++cycles;
      return false;
    });
    ASSERT_TRUE(Eventually([&] { return cycles.load() >= 1; }));
    start = std::chrono::steady_clock::now();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(cycles.load(), 1);
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
  EXPECT_GT(s.background_cycles, 0u);
  EXPECT_LE(s.background_cycles_preempted, s.background_cycles);
  EXPECT_NE(FormatStatsText(s).find("cpu time"), std::string::npos) << FormatStatsText(s);
  EXPECT_NE(FormatStatsJson(s).find("\"background_cycle_cpu_histogram\":["), std::string::npos);
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
      // Then three in four go, at random: slack the trigger sees (a heap this short-lived can otherwise stay
      // under its bound of a block per class), and the worker goes on replacing objects one at a time until
      // the pool's thread has run a pass beside it (60 s at most).
      std::shuffle(mine.begin(), mine.end(), rng);
      const std::size_t had = mine.size();
      while (mine.size() * 4 > had) {
        if (!Intact(*pool, mine.back().h, mine.back().size, mine.back().seed)) ++bad;
        if (!pool->free(mine.back().h).ok()) ++bad;
        mine.pop_back();
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (int op = 0; op % 256 != 0 || (pool->stats().background_runs == 0 &&
                                         std::chrono::steady_clock::now() < deadline); ++op) {
        Obj& o = mine[rng() % mine.size()];
        if (!Intact(*pool, o.h, o.size, o.seed)) ++bad;
        if (!pool->free(o.h).ok()) ++bad;
        o.size = 16 + rng() % 700;
        o.seed = rng();
        o.h = AllocFilled(*pool, o.size, o.seed);
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

// Blocks dense but spread: 64 B objects interleaved with 3000 B ones, then every 3000 B object freed. The
// 64 B class has no slack (the class trigger stays quiet at threshold 0.5), but its blocks sit in every
// region: the pool's own thread gathers them, for region spread.
TEST(BackgroundCompactor, BlocksSpreadOverTooManyRegionsAreGathered) {
  PoolOptions options;
  options.background_interval = std::chrono::milliseconds(2);
  options.background_threshold = 0.5;
  auto pool = Pool::Create(options).value();
  std::vector<Obj> small, big;
  for (std::uint64_t i = 0; small.size() * 64 + big.size() * 3000 < (24u << 20); ++i) {
    small.push_back({AllocFilled(*pool, 64, i), 64, i});
    if (i % 16 == 15) big.push_back({AllocFilled(*pool, 3000, i), 3000, i});
  }
  const std::uint64_t regions_full = pool->stats().regions_in_use;
  for (const Obj& o : big) ASSERT_TRUE(pool->free(o.h).ok());
  pool->flush_thread_cache();
  ASSERT_TRUE(Eventually([&] {
    const PoolStats s = pool->stats();
    return s.background_by_regions > 0 && s.regions_freed > 0 && s.regions_in_use * 2 <= regions_full + 2;
  })) << FormatStatsText(pool->stats());
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.background_by_classes, 0u) << FormatStatsText(s);
  for (const Obj& o : small) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// Under memory pressure (PSI, injected through the OS seam) a pass runs even with nothing else wanting one,
// and ends by giving back the free pages that decay would have kept; without pressure, nothing runs. The
// heap stays inside one region and the threshold is 1, so neither class slack nor region spread ever asks.
TEST(BackgroundCompactor, MemoryPressureGivesFreePagesBack) {
  os::FaultInjectingOs fos;
  fos.SetMemoryPressure(os::MemoryPressure{.some_avg10 = 0});
  PoolOptions options;
  options.os = &fos;
  options.background_interval = std::chrono::milliseconds(2);
  options.background_threshold = 1;
  options.decay = std::chrono::hours(1);  // freed pages stay resident: only pressure gives them back
  auto pool = Pool::Create(options).value();
  std::vector<Handle> all;
  for (std::uint64_t i = 0; i < 5000; ++i) all.push_back(AllocFilled(*pool, 200, i));
  for (Handle h : all) ASSERT_TRUE(pool->free(h).ok());
  pool->flush_thread_cache();
  ASSERT_GT(pool->stats().dirty_bytes, 0u);
  ASSERT_LE(pool->stats().regions_touched, 1u);
  const std::uint64_t wakeups = pool->stats().background_wakeups;
  ASSERT_TRUE(Eventually([&] { return pool->stats().background_wakeups >= wakeups + 20; }));
  EXPECT_EQ(pool->stats().background_runs, 0u);
  EXPECT_GT(pool->stats().dirty_bytes, 0u);
  fos.SetMemoryPressure(os::MemoryPressure{.some_avg10 = 35.5});
  ASSERT_TRUE(Eventually([&] {
    const PoolStats s = pool->stats();
    return s.background_by_pressure > 0 && s.background_runs_complete == s.background_runs && s.dirty_bytes == 0;
  })) << FormatStatsText(pool->stats());
  // The same through the cgroup's limit: 95% of memory.max charged (and 89% is not pressure).
  fos.SetMemoryPressure(os::MemoryPressure{.some_avg10 = 0, .cgroup_current = 890, .cgroup_max = 1000});
  for (std::uint64_t i = 0; i < 5000; ++i) all[i] = AllocFilled(*pool, 200, i);
  for (Handle h : all) ASSERT_TRUE(pool->free(h).ok());
  pool->flush_thread_cache();
  const std::uint64_t before = pool->stats().background_by_pressure;
  const std::uint64_t wakeups2 = pool->stats().background_wakeups;
  ASSERT_TRUE(Eventually([&] { return pool->stats().background_wakeups >= wakeups2 + 20; }));
  EXPECT_EQ(pool->stats().background_by_pressure, before);
  EXPECT_GT(pool->stats().dirty_bytes, 0u);
  fos.SetMemoryPressure(os::MemoryPressure{.some_avg10 = 0, .cgroup_current = 950, .cgroup_max = 1000});
  ASSERT_TRUE(Eventually([&] {
    const PoolStats s = pool->stats();
    return s.background_by_pressure > before && s.background_runs_complete == s.background_runs &&
           s.dirty_bytes == 0;
  })) << FormatStatsText(pool->stats());
}

}  // namespace
}  // namespace mova
