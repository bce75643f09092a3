// alloc/thread_cache.h — one thread's cache for one pool: free slots per class and free handle entries,
// so that the common allocate / free touches no lock.
//
// Types: ThreadCache, ClassSlots. Only the owning thread changes a cache; other threads read its counters
// (for stats) through relaxed atomics, which is why single-writer counters are atomics. A cache and each of
// its class arrays' headers sit on cache lines of their own: two threads' caches written on every operation
// must not share a line.
// Invariants: a cached slot's block owner value is kSlotReserved and counts in its block's in_use; a
// cached handle entry is free (even generation) and counts as in use in the handle table. `epoch` is the
// pool's flush epoch the cache last synchronised with; when the pool's moves on, the cache empties itself.
// `record` is held from the cache's making until it retires (handles/access_records.h).
#ifndef MOVA_ALLOC_THREAD_CACHE_H_
#define MOVA_ALLOC_THREAD_CACHE_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "alloc/block.h"
#include "alloc/size_class_map.h"
#include "handles/access_records.h"

namespace mova::alloc {

// Counter written by one thread, read by any.
class OwnedCounter {
 public:
  void Add(std::uint64_t v) { v_.store(v_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed); }
  std::uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Each on cache lines of its own (as is the ThreadCache), so that two threads' caches never share a line.
struct alignas(64) ClassSlots {
  std::unique_ptr<SlotRef[]> slots;  // allocated on first use
  std::uint32_t capacity = 0;
  std::atomic<std::uint32_t> count{0};  // written by the owner only

  // Makes the slot array on first use (most threads touch few classes).
  void EnsureArray(std::uint32_t slot_size) {
    if (slots != nullptr) return;
    capacity = CapacityFor(slot_size);
    slots = std::make_unique<SlotRef[]>(capacity);
  }

  // Cache at most ~16 KiB of slots per class, between 2 and 256 slots: a refill or flush moves half of it
  // under the class lock, so small classes take the lock once per 128 operations.
  static std::uint32_t CapacityFor(std::uint32_t slot_size) {
    return std::clamp<std::uint32_t>(16384 / slot_size, 2, 256);
  }
};

struct alignas(64) ThreadCache {
  static constexpr std::uint32_t kHandleCapacity = 256;  // refills and flushes move half: whole entry lines

  explicit ThreadCache(std::size_t num_classes) : classes(num_classes) {}

  std::vector<ClassSlots> classes;
  std::array<std::uint32_t, kHandleCapacity> handles{};
  std::atomic<std::uint32_t> handle_count{0};  // written by the owner only
  std::uint64_t epoch = 0;
  handles::AccessRecord* record = nullptr;  // this thread's access record in the pool (its pins and frees)

  OwnedCounter allocs, frees, alloc_bytes, free_bytes;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_THREAD_CACHE_H_
