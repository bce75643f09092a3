// alloc/stale_touch_watch.cc — see stale_touch_watch.h.
#include "alloc/stale_touch_watch.h"

#include <cstdio>
#include <cstdlib>

namespace mova::alloc {

void StaleTouchWatch::Loop() {
  while (!stop_.load(std::memory_order_relaxed)) {
    absl::StatusOr<std::uintptr_t> touched = os_.WaitForFault(uffd_, kPoll);
    if (touched.ok()) {
      std::fprintf(stderr, "mova: checked mode: %s\n", describe_(*touched).c_str());
      std::abort();
    }
    if (!absl::IsDeadlineExceeded(touched.status())) {
      std::fprintf(stderr, "mova: checked mode: the stale-touch watch stops: %s\n",
                   std::string(touched.status().message()).c_str());
      return;
    }
  }
}

}  // namespace mova::alloc
