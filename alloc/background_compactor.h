// alloc/background_compactor.h — kcompactd's part: a thread that wakes every interval and runs a job when it is
// wanted.
//
// Types: BackgroundCompactor. The thread starts in the constructor; the destructor stops it and joins it,
// promptly (the wait is on the stop flag, with a timeout of one interval). `wanted` and `job` run on that thread,
// without any lock of this class held.
// Fork: a forked child has no such thread (only the forking thread is copied). So that the child never finds
// a lock that thread held, fork waits (pthread_atfork) until every background compactor is between jobs:
// the thread holds work_mu_ across `wanted` and `job`, and the prepare handler takes every work_mu_. In the
// child the destructor neither joins nor detaches the thread object — it leaks it, on purpose — and running()
// is false.
// Locks: g_compactors_mu (the live compactors; fork's prepare handler) → work_mu_ → whatever `job` takes;
// mu_ (the stop flag) is a leaf.
#ifndef MOVA_ALLOC_BACKGROUND_COMPACTOR_H_
#define MOVA_ALLOC_BACKGROUND_COMPACTOR_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/mutex.h"

namespace mova::alloc {

class BackgroundCompactor {
 public:
  BackgroundCompactor(absl::Duration interval, std::function<bool()> wanted, std::function<void()> job);
  ~BackgroundCompactor();
  BackgroundCompactor(const BackgroundCompactor&) = delete;
  BackgroundCompactor& operator=(const BackgroundCompactor&) = delete;

  bool running() const;                // the thread exists in this process
  std::uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }
  std::uint64_t runs() const { return runs_.load(std::memory_order_relaxed); }  // times `job` ran

 private:
  void Loop();
  friend struct ForkGate;


  const absl::Duration interval_;
  const std::function<bool()> wanted_;
  const std::function<void()> job_;
  Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when stop_ is set. Held by pointer: a forked child's copy may count the parent's thread as a
  // waiter, and glibc's pthread_cond_destroy would wait for it forever, so the child leaks it.
  std::unique_ptr<CondVar> wake_ = std::make_unique<CondVar>();
  Mutex work_mu_;  // held by the thread while it works; by fork's prepare handler until the fork is done
  std::atomic<std::uint64_t> wakeups_{0}, runs_{0};
  const pid_t pid_;  // the process the thread runs in
  std::unique_ptr<std::thread> thread_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_BACKGROUND_COMPACTOR_H_
