// alloc/vacated_log.h — the most recent places objects left (freed, or moved elsewhere), for checked mode's
// report of a stale touch (alloc/stale_touch_watch.h): which handle's object was where the stale pointer points.
//
// Types: VacatedLog, VacatedLog::Place. A ring of the last kPlaces places, newest first when searched. Written
// by checked mode's frees and by movers (when the pool set a log on them); read only when a stale touch is
// reported, just before the process aborts.
// Locks: mu_ is a leaf (nothing is touched under it but the ring).
#ifndef MOVA_ALLOC_VACATED_LOG_H_
#define MOVA_ALLOC_VACATED_LOG_H_

#include <array>
#include <cstdint>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"

namespace mova::alloc {

class VacatedLog {
 public:
  static constexpr std::size_t kPlaces = 1 << 14;

  struct Place {
    std::uint64_t offset = 0;  // arena offset of the object's first byte
    std::uint64_t bytes = 0;
    std::uint64_t handle = 0;  // the freed handle's bits (kFreed), or the moved entry's index (kMoved)
    std::uint64_t moved_to = 0;  // kMoved: the new arena offset
    enum class Kind : std::uint8_t { kFreed, kMoved } kind = Kind::kFreed;
  };

  void Freed(std::uint64_t offset, std::uint64_t bytes, std::uint64_t handle_bits) ABSL_LOCKS_EXCLUDED(mu_) {
    Add(Place{offset, bytes, handle_bits, 0, Place::Kind::kFreed});
  }
  void Moved(std::uint64_t offset, std::uint64_t bytes, std::uint32_t index, std::uint64_t to) ABSL_LOCKS_EXCLUDED(mu_) {
    Add(Place{offset, bytes, index, to, Place::Kind::kMoved});
  }
  // The newest place that covers `offset`.
  std::optional<Place> Find(std::uint64_t offset) const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    const std::size_t n = count_ < kPlaces ? count_ : kPlaces;
    for (std::size_t k = 1; k <= n; ++k) {
      const Place& p = ring_[(count_ - k) % kPlaces];
      if (offset >= p.offset && offset - p.offset < p.bytes) return p;
    }
    return std::nullopt;
  }

 private:
  void Add(const Place& p) {
    MutexLock lock(&mu_);
    ring_[count_++ % kPlaces] = p;
  }

  mutable Mutex mu_;
  std::array<Place, kPlaces> ring_ ABSL_GUARDED_BY(mu_){};
  std::uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_VACATED_LOG_H_
