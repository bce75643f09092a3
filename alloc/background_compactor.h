// alloc/background_compactor.h — kcompactd's part: a thread that wakes every interval, and when a pass is
// wanted runs it as bounded cycles paced to a share of one core.
//
// Types: BackgroundCompactor, BackgroundPacing, CycleHistogram. Each cycle is timed twice: on the wall clock
// (what a thread waiting on a lock the cycle holds may wait) and on the thread's CPU clock (the cycle's own
// work, without the time the scheduler gave its CPU to other threads), and counted as preempted when the
// thread was switched out involuntarily during it. The thread starts in the constructor; the
// destructor stops it and joins it, promptly (every wait — the interval, a rest between cycles — is on the
// stop flag). `wanted` and `cycle` run on that thread, without any lock of this class held but work_mu_.
// Pacing: after a cycle that took t, the thread rests t·(100 − p)/p (p = cpu_percent), so a pass uses p% of
// one core, as Redis's active defragmentation does; a pass ends when `cycle` says it is complete.
// Fork: a forked child has no such thread (only the forking thread is copied). So that the child never finds
// a lock that thread held, fork waits (pthread_atfork) until every background compactor is between cycles:
// the thread holds work_mu_ across `wanted` and across each `cycle` (not across rests), and the prepare
// handler takes every work_mu_. In the child the destructor neither joins nor detaches the thread object —
// it leaks it, on purpose — and running() is false.
// Locks: g_compactors_mu (the live compactors; fork's prepare handler) → work_mu_ → whatever `cycle` takes;
// mu_ (the stop flag) is a leaf.
#ifndef MOVA_ALLOC_BACKGROUND_COMPACTOR_H_
#define MOVA_ALLOC_BACKGROUND_COMPACTOR_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "mova/stats.h"

namespace mova::alloc {

// Cycle times, counted per bucket: bucket i holds cycles up to kBoundsUs[i] µs, the last one longer cycles.
class CycleHistogram {
 public:
  static constexpr const auto& kBoundsUs = PoolStats::kBackgroundCycleBoundsUs;
  static constexpr std::size_t kBuckets = kBoundsUs.size() + 1;

  void Record(absl::Duration t);
  std::array<std::uint64_t, kBuckets> counts() const;
  std::uint64_t longest_us() const { return longest_us_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> longest_us_{0};
};

struct BackgroundPacing {
  absl::Duration interval;   // between checks while no pass runs
  double cpu_percent = 25;   // (0, 100]: the share of one core a pass takes
};

class BackgroundCompactor {
 public:
  // `wanted`: whether to start a pass now. `cycle`: one bounded step of the pass; true when the pass is
  // complete.
  BackgroundCompactor(BackgroundPacing pacing, std::function<bool()> wanted, std::function<bool()> cycle);
  ~BackgroundCompactor();
  BackgroundCompactor(const BackgroundCompactor&) = delete;
  BackgroundCompactor& operator=(const BackgroundCompactor&) = delete;

  bool running() const;                // the thread exists in this process
  std::uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }
  std::uint64_t runs() const { return runs_.load(std::memory_order_relaxed); }      // passes started
  std::uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }  // ... and ended
  std::uint64_t cycles() const { return cycles_.load(std::memory_order_relaxed); }  // cycles run
  const CycleHistogram& cycle_times() const { return cycle_times_; }          // wall clock
  const CycleHistogram& cycle_cpu_times() const { return cycle_cpu_times_; }  // the thread's CPU clock
  std::uint64_t cycles_preempted() const { return cycles_preempted_.load(std::memory_order_relaxed); }

 private:
  void Loop();
  // Waits `d`, or until the destructor asks the thread to stop: false then.
  bool Rest(absl::Duration d);
  friend struct ForkGate;

  const BackgroundPacing pacing_;
  const std::function<bool()> wanted_;
  const std::function<bool()> cycle_;
  Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when stop_ is set. Held by pointer: a forked child's copy may count the parent's thread as a
  // waiter, and glibc's pthread_cond_destroy would wait for it forever, so the child leaks it.
  std::unique_ptr<CondVar> wake_ = std::make_unique<CondVar>();
  Mutex work_mu_;  // held by the thread while it works; by fork's prepare handler until the fork is done
  std::atomic<std::uint64_t> wakeups_{0}, runs_{0}, completed_{0}, cycles_{0};
  CycleHistogram cycle_times_, cycle_cpu_times_;
  std::atomic<std::uint64_t> cycles_preempted_{0};
  const pid_t pid_;  // the process the thread runs in
  std::unique_ptr<std::thread> thread_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_BACKGROUND_COMPACTOR_H_
