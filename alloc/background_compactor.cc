// alloc/background_compactor.cc — see background_compactor.h.
#include "alloc/background_compactor.h"

#include <pthread.h>
#include <unistd.h>

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

BackgroundCompactor::BackgroundCompactor(absl::Duration interval, std::function<bool()> wanted,
                                         std::function<void()> job)
    : interval_(interval), wanted_(std::move(wanted)), job_(std::move(job)), pid_(getpid()) {
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

void BackgroundCompactor::Loop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      const absl::Time deadline = absl::Now() + interval_;
      for (absl::Duration left = interval_; !stop_ && left > absl::ZeroDuration(); left = deadline - absl::Now()) {
        wake_->WaitWithTimeout(&mu_, left);
      }
      if (stop_) return;
    }
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    MutexLock work(&work_mu_);
    if (wanted_()) {
      job_();
      runs_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

}  // namespace mova::alloc
