// base/mutex.h — the lock every mova component uses: absl::Mutex with thread annotations, made visible to
// ThreadSanitizer.
//
// Types: Mutex (Lock, Unlock, AwaitWithTimeout), MutexLock. Debian's Abseil is built without TSan instrumentation, so TSan cannot see the
// happens-before edges of absl::Mutex by itself; in TSan builds Lock/Unlock add the acquire/release
// annotations that TSan's interface provides. In other builds they compile to absl::Mutex calls.
#ifndef MOVA_BASE_MUTEX_H_
#define MOVA_BASE_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#if defined(__SANITIZE_THREAD__)
#define MOVA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOVA_TSAN 1
#endif
#endif

#ifdef MOVA_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mova {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  explicit constexpr Mutex(absl::ConstInitType) : mu_(absl::kConstInit) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.Lock();
#ifdef MOVA_TSAN
    __tsan_acquire(this);
#endif
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
#ifdef MOVA_TSAN
    __tsan_release(this);
#endif
    mu_.Unlock();
  }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() { mu_.AssertHeld(); }
  // Lets the lock go until `cond` holds or `timeout` has passed, then holds it again; true if `cond` holds.
  bool AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
#ifdef MOVA_TSAN
    __tsan_release(this);
#endif
    const bool met = mu_.AwaitWithTimeout(cond, timeout);
#ifdef MOVA_TSAN
    __tsan_acquire(this);
#endif
    return met;
  }

 private:
  absl::Mutex mu_;
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

}  // namespace mova

#endif  // MOVA_BASE_MUTEX_H_
