// alloc/stale_touch_watch.h — checked mode's migration entries: a thread that is told of every touch of an arena
// page no longer in use (given back, or left by a block that moved away) and stops the process with a report.
//
// Types: StaleTouchWatch. The arena (ArenaOptions::watch_missing_pages) registers its range for missing-page
// faults and populates every page it hands out, so the only faults left are touches of pages that are not in
// use: a stale pointer kept after a free or a move. The watch waits for them on the arena's userfaultfd; the
// touching thread waits in the kernel meanwhile, and the watch aborts the process with `describe(address)`.
// Nothing is ever served: a stale touch is a bug, and checked mode's rule is to stop at the first misuse.
// The thread polls its stop flag every kPoll. Fork: only the forking thread is copied, and the child's range is
// no longer registered (no UFFD_FEATURE_EVENT_FORK), so a child has no watch; its destructor leaks the
// parent's thread object instead of joining it.
#ifndef MOVA_ALLOC_STALE_TOUCH_WATCH_H_
#define MOVA_ALLOC_STALE_TOUCH_WATCH_H_

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "os/os.h"

namespace mova::alloc {

class StaleTouchWatch {
 public:
  static constexpr std::chrono::milliseconds kPoll{20};
  using Describe = std::function<std::string(std::uintptr_t address)>;

  StaleTouchWatch(os::Os& os, int uffd, Describe describe)
      : os_(os), uffd_(uffd), describe_(std::move(describe)), pid_(getpid()) {
    thread_ = std::make_unique<std::thread>([this] { Loop(); });
  }
  ~StaleTouchWatch() {
    if (getpid() != pid_) {
      (void)thread_.release();  // a forked child: the thread is the parent's
      return;
    }
    stop_.store(true, std::memory_order_relaxed);
    thread_->join();
  }
  StaleTouchWatch(const StaleTouchWatch&) = delete;
  StaleTouchWatch& operator=(const StaleTouchWatch&) = delete;

 private:
  void Loop();

  os::Os& os_;
  const int uffd_;
  const Describe describe_;
  const pid_t pid_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<std::thread> thread_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_STALE_TOUCH_WATCH_H_
