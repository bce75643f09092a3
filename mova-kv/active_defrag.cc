// mova-kv/active_defrag.cc — see active_defrag.h.
#include "mova-kv/active_defrag.h"

#include "absl/time/clock.h"

namespace mova::kv {

ActiveDefrag::ActiveDefrag(ObjectStore& store) : store_(store), thread_([this] { Loop(); }) {}

ActiveDefrag::~ActiveDefrag() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

void ActiveDefrag::Trigger(int cpu_percent, std::chrono::microseconds cycle_budget) {
  MutexLock lock(&mu_);
  if (busy_ || cpu_percent <= 0) return;
  requested_percent_ = cpu_percent;
  cycle_budget_ = cycle_budget;
  cv_.SignalAll();
}

bool ActiveDefrag::running() const {
  MutexLock lock(&mu_);
  return busy_ || requested_percent_ > 0;
}

std::vector<DefragCycle> ActiveDefrag::TakeFinished() {
  MutexLock lock(&mu_);
  std::vector<DefragCycle> out;
  out.swap(finished_);
  return out;
}

std::uint64_t ActiveDefrag::cycles() const {
  MutexLock lock(&mu_);
  return cycles_;
}

void ActiveDefrag::Loop() {
  for (;;) {
    int percent;
    std::chrono::microseconds budget;
    {
      MutexLock lock(&mu_);
      while (!stop_ && requested_percent_ == 0) cv_.WaitWithTimeout(&mu_, absl::Seconds(1));
      if (stop_) return;
      percent = requested_percent_;
      budget = cycle_budget_;
      requested_percent_ = 0;
      busy_ = true;
    }
    // One pass: cycles of at most `budget` each, a rest after each, until the store says the pass is done.
    for (bool complete = false; !complete;) {
      const absl::Time start = absl::Now();
      const DefragPass step = store_.Defragment(budget);
      const absl::Duration took = absl::Now() - start;
      complete = step.complete;
      MutexLock lock(&mu_);
      finished_.push_back(DefragCycle{absl::ToUnixSeconds(absl::Now()), absl::ToDoubleMilliseconds(took), step});
      if (finished_.size() > 1024) finished_.erase(finished_.begin());  // nobody collects: keep the newest
      ++cycles_;
      // Rest so that the cycles stay within `percent` of one CPU; a stop ends the rest and the pass.
      const absl::Time rest_end = absl::Now() + took * (100 - percent) / percent;
      while (!stop_ && absl::Now() < rest_end) cv_.WaitWithTimeout(&mu_, rest_end - absl::Now());
      if (stop_) return;
      if (complete) busy_ = false;
    }
  }
}

}  // namespace mova::kv
