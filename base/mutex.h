// base/mutex.h — the lock every mova component uses: a pthread mutex with Abseil's thread-safety annotations.
//
// Types: Mutex (Lock, TryLock, Unlock, AssertHeld), MutexLock, CondVar (SignalAll, WaitWithTimeout).
// Why not absl::Mutex: Debian's Abseil is built with its deadlock detector on, which costs every lock/unlock
// pair ~30 ns here (43 ns against 13 ns with detection off) and cannot be turned off for mova's locks alone
// (absl::SetMutexDeadlockDetectionMode is process-wide: it would change the program's own locks). A pthread
// mutex costs the two atomic operations and nothing else, and ThreadSanitizer sees it natively (it
// intercepts pthread), so no annotations for it are needed either. Clang's -Wthread-safety still checks
// ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED against these types.
// The mutex is glibc's adaptive kind: a thread that finds it held spins a short while before it sleeps.
// mova's critical sections are short (a cache refill or flush), and in this VM a futex sleep and wake-up
// costs tens of microseconds (an IPI through the hypervisor): with two threads refilling from one class,
// sleeping at every collision cost more than the work (bench/RESULTS.md, "Locks").
#ifndef MOVA_BASE_MUTEX_H_
#define MOVA_BASE_MUTEX_H_

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace mova {

class ABSL_LOCKABLE Mutex {
 public:
  constexpr Mutex() = default;
  explicit constexpr Mutex(absl::ConstInitType) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  ~Mutex() { pthread_mutex_destroy(&mu_); }

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    pthread_mutex_lock(&mu_);
    owner_.store(pthread_self(), std::memory_order_relaxed);
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    if (pthread_mutex_trylock(&mu_) != 0) return false;
    owner_.store(pthread_self(), std::memory_order_relaxed);
    return true;
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    owner_.store(pthread_t{}, std::memory_order_relaxed);
    pthread_mutex_unlock(&mu_);
  }
  // Aborts unless the calling thread holds the lock (the owner is written under the lock, so a thread reads
  // its own id there only if it holds it).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {
    if (!pthread_equal(owner_.load(std::memory_order_relaxed), pthread_self())) {
      std::fprintf(stderr, "mova: Mutex::AssertHeld: the calling thread does not hold the lock\n");
      std::abort();
    }
  }

 private:
  friend class CondVar;
  pthread_mutex_t mu_ = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
  std::atomic<pthread_t> owner_{};
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class CondVar {
 public:
  CondVar() {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cv_, &attr);
    pthread_condattr_destroy(&attr);
  }
  ~CondVar() { pthread_cond_destroy(&cv_); }
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void SignalAll() { pthread_cond_broadcast(&cv_); }
  // Lets `mu` go until SignalAll, `timeout` or a spurious wakeup, then holds it again: callers loop on their
  // condition.
  void WaitWithTimeout(Mutex* mu, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline = absl::ToTimespec(absl::DurationFromTimespec(deadline) + timeout);
    mu->owner_.store(pthread_t{}, std::memory_order_relaxed);
    pthread_cond_timedwait(&cv_, &mu->mu_, &deadline);
    mu->owner_.store(pthread_self(), std::memory_order_relaxed);
  }

 private:
  pthread_cond_t cv_;
};

}  // namespace mova

#endif  // MOVA_BASE_MUTEX_H_
