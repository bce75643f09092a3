// alloc/background_compactor.cc — see background_compactor.h.
#include "alloc/background_compactor.h"

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "absl/time/clock.h"

namespace mova::alloc {

// Every live compactor, for fork's handlers: prepare waits until each is between jobs and keeps it there;
// parent and child let them go again.
ABSL_CONST_INIT Mutex g_compactors_mu(absl::kConstInit);
std::vector<BackgroundCompactor*>& LiveCompactors() {
  static auto* live = new std::vector<BackgroundCompactor*>();  // never destroyed: threads may outlive statics
  return *live;
}

struct ForkGate {
  static void Prepare() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    g_compactors_mu.Lock();
    for (BackgroundCompactor* c : LiveCompactors()) c->work_mu_.Lock();
  }
  static void After() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (BackgroundCompactor* c : LiveCompactors()) c->work_mu_.Unlock();
    g_compactors_mu.Unlock();
  }
};

namespace {

// What the calling thread has used of a CPU, and how often the scheduler switched it out while it could run.
struct ThreadClock {
  absl::Duration cpu;
  long involuntary_switches = 0;

  static ThreadClock Read() {
    ThreadClock c;
    timespec ts{};
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) c.cpu = absl::DurationFromTimespec(ts);
    rusage ru{};
    if (getrusage(RUSAGE_THREAD, &ru) == 0) c.involuntary_switches = ru.ru_nivcsw;
    return c;
  }
};

}  // namespace

void CycleHistogram::Record(absl::Duration t) {
  const std::uint64_t us = static_cast<std::uint64_t>(std::max<std::int64_t>(0, absl::ToInt64Microseconds(t)));
  std::size_t i = 0;
  while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  std::uint64_t longest = longest_us_.load(std::memory_order_relaxed);
  while (us > longest && !longest_us_.compare_exchange_weak(longest, us, std::memory_order_relaxed)) {
  }
}

std::array<std::uint64_t, CycleHistogram::kBuckets> CycleHistogram::counts() const {
  std::array<std::uint64_t, kBuckets> out{};
  for (std::size_t i = 0; i < kBuckets; ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

BackgroundCompactor::BackgroundCompactor(BackgroundPacing pacing, std::function<bool()> wanted,
                                         std::function<bool()> cycle)
    : pacing_(pacing), wanted_(std::move(wanted)), cycle_(std::move(cycle)), pid_(getpid()) {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(&ForkGate::Prepare, &ForkGate::After, &ForkGate::After); });
  {
    MutexLock lock(&g_compactors_mu);
    LiveCompactors().push_back(this);
  }
  thread_ = std::make_unique<std::thread>([this] { Loop(); });
}

BackgroundCompactor::~BackgroundCompactor() {
  {
    MutexLock lock(&g_compactors_mu);
    std::erase(LiveCompactors(), this);
  }
  if (!running()) {
    (void)thread_.release();  // a forked child: the thread is the parent's; joining it would never return
    (void)wake_.release();    // ... and the condition variable may count it as a waiter (see the header)
    return;
  }
  {
    MutexLock lock(&mu_);
    stop_ = true;
    wake_->SignalAll();
  }
  thread_->join();
}

bool BackgroundCompactor::running() const { return getpid() == pid_; }

bool BackgroundCompactor::Rest(absl::Duration d) {
  MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + d;
  for (absl::Duration left = d; !stop_ && left > absl::ZeroDuration(); left = deadline - absl::Now()) {
    wake_->WaitWithTimeout(&mu_, left);
  }
  return !stop_;
}

void BackgroundCompactor::Loop() {
  const double p = pacing_.cpu_percent;
  while (Rest(pacing_.interval)) {
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    {
      MutexLock work(&work_mu_);
      if (!wanted_()) continue;
    }
    runs_.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
      const ThreadClock thread_start = ThreadClock::Read();
      const absl::Time start = absl::Now();
      bool complete;
      {
        MutexLock work(&work_mu_);
        complete = cycle_();
      }
      const absl::Duration took = absl::Now() - start;
      const ThreadClock thread_end = ThreadClock::Read();
      cycles_.fetch_add(1, std::memory_order_relaxed);
      cycle_times_.Record(took);
      cycle_cpu_times_.Record(thread_end.cpu - thread_start.cpu);
      if (thread_end.involuntary_switches != thread_start.involuntary_switches) {
        cycles_preempted_.fetch_add(1, std::memory_order_relaxed);
      }
      if (complete) {
        completed_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      if (!Rest(took * ((100 - p) / p))) return;
    }
  }
}

}  // namespace mova::alloc
