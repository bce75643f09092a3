// bench/pause_bench.cc — mova-pausebench: what the background compactor costs the threads using the pool while
// it works, operation by operation.
//
// A heap of --heap_mib of 16–512 B objects is filled and thinned to --keep at random (one pool, its background
// compactor on). Then --threads workers, each on its own share of the survivors, run at --rate operations a
// second each until the compactor has finished its passes (and at least --min_seconds), in turn: a pin_owned()
// and a read of up to 64 B, a pin() and the same read, a read section with the same read (ReadGuard: never
// waits for a move, and makes the pool keep old copies), and a replacement (free one of its objects, allocate
// and fill another). Each operation is timed alone (its service time; a worker that falls behind its rate goes on at
// once, and the report says how far behind it fell). Printed: p50 / p99 / p99.9 / max per operation, the
// compactor's passes, cycles and longest cycle with their histograms (wall clock, the compactor thread's CPU
// time) and the cycles in which it was preempted, objects moved, and RSS before and after.
// Every surviving object's contents are checked at the end. First, for --floor_seconds, the workers run the
// same operations on the same objects before the thinning, while the heap is dense and the compactor has
// nothing to do: the floor this machine puts under every percentile, measured in the same run (the "idle"
// rows). On the 2-vCPU guest an empty operation timed the same way reads 30 ns at p99.9; these operations
// reach random objects of a 1 GiB heap (a TLB miss and a nested page walk each), and their p99.9 with the
// compactor idle is tens of microseconds.
// --cycle_us and --cpu_percent are PoolOptions::background_cycle and background_cpu_percent; a --cycle_us of
// 0 means whole passes (the background compactor before budgets: one cycle per pass, no rests).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "bench/rss.h"
#include "mova/pool.h"

ABSL_FLAG(int, heap_mib, 1024, "bytes allocated before thinning, MiB");
ABSL_FLAG(double, keep, 0.1, "share of the objects that survive the thinning");
ABSL_FLAG(int, threads, 1, "worker threads");
ABSL_FLAG(int, rate, 100000, "operations a second per worker");
ABSL_FLAG(int, cycle_us, 1000, "PoolOptions::background_cycle; 0: whole passes");
ABSL_FLAG(double, cpu_percent, 25, "PoolOptions::background_cpu_percent");
ABSL_FLAG(int, interval_ms, 10, "PoolOptions::background_interval");
ABSL_FLAG(double, min_seconds, 2, "run the workers at least this long");
ABSL_FLAG(double, max_seconds, 120, "and at most this long");
ABSL_FLAG(double, floor_seconds, 2, "first, run the operations this long before the thinning, the compactor idle "
          "(0: not)");
ABSL_FLAG(bool, read_sections, true, "the third operation reads in a read section (false: a pin_owned read, and the "
          "pool never keeps old copies)");

namespace {

using Clock = std::chrono::steady_clock;

struct Obj {
  mova::Handle h;
  std::uint32_t size;
  std::uint32_t seed;
};

void Fill(std::byte* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>(seed + i * 7);
}
bool Matches(const std::byte* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != static_cast<std::byte>(seed + i * 7)) return false;
  }
  return true;
}

Obj New(mova::Pool& pool, std::uint32_t size, std::uint32_t seed) {
  const mova::Handle h = pool.allocate(size).value();
  mova::Pinned p = pool.pin_owned(h, mova::Access::kWrite).value();
  Fill(p.mutable_data(), size, seed);
  return Obj{h, size, seed};
}

// Service times of one kind of operation, in nanoseconds.
struct Samples {
  std::vector<std::uint32_t> ns;
  void Add(Clock::duration d) {
    const auto n = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    ns.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(n, 0xFFFFFFFF)));
  }
};

void Report(const char* what, std::vector<std::uint32_t> ns) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<std::size_t>(q * ns.size()))] / 1000.0; };
  std::printf("%-20s %10zu ops  p50 %8.2f us  p99 %8.2f us  p99.9 %8.2f us  max %9.2f us\n", what, ns.size(), at(0.5),
              at(0.99), at(0.999), ns.back() / 1000.0);
}

struct Worker {
  std::vector<Obj> objs;
  Samples pin_owned, pin, section, replace;
  std::uint64_t behind_ns = 0;  // the most the worker fell behind its schedule
  bool intact = true;
};

// The samples of every worker together, and the most any fell behind.
Worker Merged(const std::vector<Worker>& workers) {
  Worker all;
  for (const Worker& w : workers) {
    all.pin_owned.ns.insert(all.pin_owned.ns.end(), w.pin_owned.ns.begin(), w.pin_owned.ns.end());
    all.pin.ns.insert(all.pin.ns.end(), w.pin.ns.begin(), w.pin.ns.end());
    all.section.ns.insert(all.section.ns.end(), w.section.ns.begin(), w.section.ns.end());
    all.replace.ns.insert(all.replace.ns.end(), w.replace.ns.begin(), w.replace.ns.end());
    all.behind_ns = std::max(all.behind_ns, w.behind_ns);
  }
  return all;
}

// Calls op(i) for i = 0, 1, ... at `rate` a second until `stop`, each at its turn in the schedule (spinning
// until then; a caller that falls behind goes on at once, and *behind_ns is the most it fell behind).
template <typename Op>
void Paced(int rate, const std::atomic<bool>& stop, std::uint64_t* behind_ns, Op op) {
  const Clock::duration period = std::chrono::nanoseconds(1'000'000'000 / rate);
  Clock::time_point next = Clock::now();
  for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
    next += period;
    const Clock::time_point now = Clock::now();
    if (now < next) {
      while (Clock::now() < next) {
      }
    } else {
      *behind_ns = std::max<std::uint64_t>(*behind_ns, std::chrono::nanoseconds(now - next).count());
    }
    op(i);
  }
}

void Work(mova::Pool& pool, Worker& w, int rate, const std::atomic<bool>& stop, std::uint64_t seed) {
  const bool read_sections = absl::GetFlag(FLAGS_read_sections);
  std::mt19937_64 rng(seed);
  volatile std::uint8_t sink = 0;
  Paced(rate, stop, &w.behind_ns, [&](std::uint64_t i) {
    Obj& o = w.objs[rng() % w.objs.size()];
    const Clock::time_point start = Clock::now();
    // A pin (either kind), a read of up to 64 B, the unpin.
    auto read = [&](absl::StatusOr<mova::Pinned> pinned, Samples& samples) {
      mova::Pinned p = std::move(pinned).value();
      for (std::size_t k = 0; k < std::min<std::size_t>(64, o.size); ++k) sink = sink + static_cast<std::uint8_t>(p.data()[k]);
      p.reset();
      samples.Add(Clock::now() - start);
    };
    switch (i % 4) {
      case 0:
        read(pool.pin_owned(o.h, mova::Access::kRead), w.pin_owned);
        break;
      case 1:
        read(pool.pin(o.h, mova::Access::kRead), w.pin);
        break;
      case 2: {
        if (!read_sections) {
          read(pool.pin_owned(o.h, mova::Access::kRead), w.section);
          break;
        }
        mova::ReadGuard g = pool.read_section();
        const std::span<const std::byte> b = g.read(o.h).value();
        for (std::size_t k = 0; k < std::min<std::size_t>(64, b.size()); ++k) sink = sink + static_cast<std::uint8_t>(b[k]);
        g.reset();
        w.section.Add(Clock::now() - start);
        break;
      }
      default: {
        if (!pool.free(o.h).ok()) w.intact = false;
        o = New(pool, 16 + static_cast<std::uint32_t>(rng() % 497), static_cast<std::uint32_t>(rng()));
        w.replace.Add(Clock::now() - start);
        break;
      }
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::size_t heap = std::size_t(absl::GetFlag(FLAGS_heap_mib)) << 20;
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  mova::PoolOptions options;
  options.background_interval = std::chrono::milliseconds(absl::GetFlag(FLAGS_interval_ms));
  const int cycle_us = absl::GetFlag(FLAGS_cycle_us);
  // Whole passes: a budget no pass reaches, and no rests.
  options.background_cycle = std::chrono::microseconds(cycle_us > 0 ? cycle_us : 1'000'000'000);
  options.background_cpu_percent = cycle_us > 0 ? absl::GetFlag(FLAGS_cpu_percent) : 100;
  auto pool = mova::Pool::Create(options).value();

  std::mt19937_64 rng(7);
  std::vector<Worker> workers(threads);
  std::vector<Obj> filled;
  for (std::size_t bytes = 0; bytes < heap;) {
    const std::uint32_t size = 16 + static_cast<std::uint32_t>(rng() % 497);
    filled.push_back(New(*pool, size, static_cast<std::uint32_t>(filled.size())));
    bytes += size;
  }
  std::size_t kept = 0;
  std::vector<mova::Handle> thinned;
  for (const Obj& o : filled) {
    if (static_cast<double>(rng() % 1'000'000) < absl::GetFlag(FLAGS_keep) * 1e6) {
      workers[kept++ % threads].objs.push_back(o);
    } else {
      thinned.push_back(o.h);
    }
  }
  filled = {};
  // The floor: the same operations on the survivors while the heap is still dense (nothing to compact).
  std::vector<Worker> idle(threads);
  if (absl::GetFlag(FLAGS_floor_seconds) > 0) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back(Work, std::ref(*pool), std::ref(workers[t]), absl::GetFlag(FLAGS_rate), std::cref(stop),
                           50 + t);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_floor_seconds)));
    stop = true;
    for (std::thread& t : running) t.join();
    for (int t = 0; t < threads; ++t) {
      std::swap(idle[t].pin_owned, workers[t].pin_owned);
      std::swap(idle[t].pin, workers[t].pin);
      std::swap(idle[t].section, workers[t].section);
      std::swap(idle[t].replace, workers[t].replace);
    }
  }
  const mova::PoolStats at_floor_end = pool->stats();
  for (const mova::Handle h : thinned) (void)pool->free(h);
  thinned = {};
  pool->flush_thread_cache();
  const mova::PoolStats before = pool->stats();
  const double rss_before = mova::bench::ProcessRssBytes().value_or(0) / 1048576.0;

  std::atomic<bool> stop{false};
  std::vector<std::thread> running;
  const Clock::time_point start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    running.emplace_back(Work, std::ref(*pool), std::ref(workers[t]), absl::GetFlag(FLAGS_rate), std::cref(stop), 100 + t);
  }
  // Until the compactor has started a pass after the thinning and finished every pass it started.
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const mova::PoolStats s = pool->stats();
    const bool done = s.background_runs > before.background_runs && s.background_runs_complete == s.background_runs;
    if ((done && seconds() >= absl::GetFlag(FLAGS_min_seconds)) || seconds() >= absl::GetFlag(FLAGS_max_seconds)) break;
  }
  stop = true;
  for (std::thread& t : running) t.join();
  const double elapsed = seconds();
  const mova::PoolStats s = pool->stats();
  const double rss_after = mova::bench::ProcessRssBytes().value_or(0) / 1048576.0;

  bool intact = true;
  for (Worker& w : workers) {
    intact &= w.intact;
    for (const Obj& o : w.objs) {
      mova::Pinned p = pool->pin(o.h, mova::Access::kRead).value();
      intact &= Matches(p.data(), o.size, o.seed);
    }
  }
  std::printf("heap %zu MiB thinned to %.0f%%; %d worker(s) at %d ops/s; background cycle %s, %.0f%% of a core\n",
              heap >> 20, absl::GetFlag(FLAGS_keep) * 100, threads, absl::GetFlag(FLAGS_rate),
              cycle_us > 0 ? absl::StrFormat("%d us", cycle_us).c_str() : "whole passes", options.background_cpu_percent);
  const Worker all = Merged(workers);
  Report("pin_owned", all.pin_owned.ns);
  Report("pin", all.pin.ns);
  Report(absl::GetFlag(FLAGS_read_sections) ? "read section" : "pin_owned (2)", all.section.ns);
  Report("replace", all.replace.ns);
  if (absl::GetFlag(FLAGS_floor_seconds) > 0) {
    const Worker floor = Merged(idle);
    Report("pin_owned (idle)", floor.pin_owned.ns);
    Report("pin (idle)", floor.pin.ns);
    Report(absl::GetFlag(FLAGS_read_sections) ? "section (idle)" : "pin_owned (2) (idle)", floor.section.ns);
    Report("replace (idle)", floor.replace.ns);
    std::printf("idle: the same operations for %.1f s before the thinning; the compactor moved %llu objects meanwhile\n",
                absl::GetFlag(FLAGS_floor_seconds), (unsigned long long)at_floor_end.objects_moved);
  }
  std::printf("workers ran %.2f s, at most %.2f ms behind schedule\n", elapsed, all.behind_ns / 1e6);
  std::printf("compactor: %llu passes (%llu after the thinning), %llu cycles, longest cycle %.2f ms; %llu objects "
              "moved, %llu regions freed\n",
              (unsigned long long)s.background_runs, (unsigned long long)(s.background_runs - before.background_runs),
              (unsigned long long)s.background_cycles, s.background_cycle_longest_us / 1000.0,
              (unsigned long long)s.objects_moved, (unsigned long long)s.regions_freed);
  std::printf("cycles (wall clock):%s\n", mova::FormatCycleCounts(s.background_cycle_histogram).c_str());
  std::printf("cycles (the compactor thread's CPU time):%s\n",
              mova::FormatCycleCounts(s.background_cycle_cpu_histogram).c_str());
  std::printf("cycles in which the compactor thread was preempted: %llu; longest cycle in CPU time %.2f ms\n",
              (unsigned long long)s.background_cycles_preempted, s.background_cycle_longest_cpu_us / 1000.0);
  std::printf("old copies kept for read sections: %.2f MiB now; %llu given back (%.1f MiB), %llu under pressure\n",
              s.old_copy_bytes / 1048576.0, (unsigned long long)s.old_copies_freed, s.old_copy_bytes_freed / 1048576.0,
              (unsigned long long)s.old_copies_freed_under_pressure);
  std::printf("RSS %.0f MiB after the thinning, %.0f MiB at the end; live %.0f MiB; contents %s\n", rss_before,
              rss_after, s.live_bytes / 1048576.0, intact ? "intact" : "CORRUPTED");
  return intact ? 0 : 1;
}
