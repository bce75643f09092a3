// alloc/thread_cache.h — one thread's cache for one pool: free slots per class and free handle entries,
// so that the common allocate / free touches no lock.
//
// Types: ThreadCache, CachedList, ClassSlots, CacheSize. Only the owning thread changes a cache; other threads
// read its counters (for stats) through relaxed atomics, which is why single-writer counters are atomics. A cache and
// each of its class arrays' headers sit on cache lines of their own: two threads' caches written on every
// operation must not share a line.
// Sizes adapt (tcmalloc's growing free lists): each list starts at its base capacity; a refill that follows a
// flush, or a flush that follows a refill, says the thread's working set swings wider than the list, and the
// list doubles instead (up to its maximum, and only while the thread's growth stays within kMaxGrownBytes of
// slots) — so a thread that allocates and frees batches of a thousand objects stops taking the class and
// table locks once its lists have grown. A Flush (the pool's recall before compaction, thread exit) gives
// every list's array back; the next use makes it again at the base capacity.
// Invariants: a cached slot's block owner value is kSlotReserved and counts in its block's in_use; a
// cached handle entry (in `handles` or `returning`) is free (even generation) and counts as in use in the
// handle table; free_to is &handles or &returning; count <= size.capacity
// <= size.max for every list (the handle list grows to kMaxHandleCapacity, outside the byte budget: 8 KiB of
// entries, made only when grown); grown_bytes == Σ (size.capacity - size.base) × slot size over the class lists.
// `epoch` is the pool's flush epoch the cache last synchronised with; when the pool's moves on, the cache
// empties itself, or a stealer empties it for an owner that is not in a call (Pool::Impl::RecallThreadCaches):
// the owner announces every call that uses its lists (`in_fast`, `in_slow`, and free's fast path the retire
// it announces in its access record: plain stores to lines of its own, then a compiler barrier) before it
// reads the epoch, and the stealer moves the pool's epoch on, makes the movers' barrier (membarrier) and then
// reads the announcements — so either it sees the call and leaves the cache alone, or the call sees the new
// epoch and waits on `steal_mu` for the stealer to finish. A stealer
// stores the epoch last, with release, and a call reads the epoch (acquire) before anything of its lists, so a
// call that finds it current finds the lists emptied.
// `record` is held from the cache's making until it retires (handles/access_records.h).
#ifndef MOVA_ALLOC_THREAD_CACHE_H_
#define MOVA_ALLOC_THREAD_CACHE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "alloc/block.h"
#include "alloc/cache_affinities.h"
#include "alloc/size_class_map.h"
#include "base/mutex.h"
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

// A list's size and the way it grows: the last trip to the shared structure behind it (refill or flush) and
// the list's base and maximum capacities.
struct CacheSize {
  enum class Trip : std::uint8_t { kNone, kRefill, kFlush };
  std::uint32_t capacity = 0;
  std::uint32_t base = 0;
  std::uint32_t max = 0;
  Trip last = Trip::kNone;

  void Init(std::uint32_t base_capacity, std::uint32_t max_capacity) {
    capacity = base = base_capacity;
    max = max_capacity;
    last = Trip::kNone;
  }
  // Records a trip; true when it follows the opposite trip and the list may double (the caller checks the
  // thread's budget and calls Grow). A list that grows forgets the trip, so each doubling needs a new swing.
  bool Swings(Trip trip) {
    const bool swing = last != Trip::kNone && last != trip && capacity < max;
    last = trip;
    return swing;
  }
  // The capacity added by a doubling (0 at the maximum).
  std::uint32_t Growth() const { return std::min(capacity, max - capacity); }
  void Grow() {
    capacity += Growth();
    last = Trip::kNone;
  }
};

// A list of free things (slots of a class, handle entries) a thread keeps: an array made on first use,
// remade when the list grows, given back when the list is flushed. capacity == 0 until the array is made, so
// "full" and "no array yet" are one test on the fast paths.
template <typename T>
struct CachedList {
  std::unique_ptr<T[]> items;            // size.capacity of them
  CacheSize size;
  std::atomic<std::uint32_t> count{0};  // written by the owner only

  // Makes the array on first use (most threads touch few classes).
  void EnsureArray(std::uint32_t base, std::uint32_t max) {
    if (items != nullptr) return;
    size.Init(base, max);
    items = std::make_unique<T[]>(size.capacity);
  }
  // Doubles the list, keeping its items.
  void Grow() {
    size.Grow();
    auto fresh = std::make_unique<T[]>(size.capacity);
    std::copy_n(items.get(), count.load(std::memory_order_relaxed), fresh.get());
    items = std::move(fresh);
  }
  // Gives the array back; the list is empty. The next use makes it afresh at the base capacity (a flush
  // comes with compaction, after which a thread may not use the class again soon: the arrays of the 32
  // classes a thin-out had used were 24 KiB of heap kept resident).
  void Release() {
    items.reset();
    size = CacheSize{};
  }
};

// Two to a cache line, both of one thread's cache: a thread's array of them is its own allocation (and the
// ThreadCache is on lines of its own), so two threads' lists share a line only where malloc put another
// thread's memory next to an end of the array. 32 B, not a line each: a cache holds one per size class, used
// or not (196 of them: 6 KiB per thread and pool instead of 12).
struct alignas(32) ClassSlots : CachedList<SlotRef> {
  void EnsureArray(std::uint32_t slot_size) {
    CachedList::EnsureArray(CapacityFor(slot_size), MaxCapacityFor(slot_size));
  }

  // Cache at most ~16 KiB of slots per class at first, between 2 and 256 slots: a refill or flush moves half
  // of it under the class lock, so small classes take the lock once per 128 operations.
  static std::uint32_t CapacityFor(std::uint32_t slot_size) {
    return std::clamp<std::uint32_t>(16384 / slot_size, 2, 256);
  }
  // Grown, at most 128 KiB of slots and 2048 of them (a batch of a thousand 64-byte objects fits).
  static std::uint32_t MaxCapacityFor(std::uint32_t slot_size) {
    return std::clamp<std::uint32_t>((128 * 1024) / slot_size, CapacityFor(slot_size), 2048);
  }
};
static_assert(sizeof(ClassSlots) == 32);

struct alignas(64) ThreadCache {
  static constexpr std::uint32_t kHandleCapacity = 256;      // base; refills and flushes move half: whole lines
  static constexpr std::uint32_t kMaxHandleCapacity = 2048;  // grown
  static constexpr std::uint64_t kMaxGrownBytes = 1 << 20;   // slots the class lists may add in all, per thread

  explicit ThreadCache(std::size_t num_classes) : classes(num_classes) {}
  void EnsureHandleArray() { handles.EnsureArray(kHandleCapacity, kMaxHandleCapacity); }

  // Doubles `cs` (of `slot_size` slots) if the thread's budget allows.
  bool TryGrow(ClassSlots& cs, std::uint32_t slot_size) {
    const std::uint64_t added = std::uint64_t{cs.size.Growth()} * slot_size;
    if (added == 0 || grown_bytes + added > kMaxGrownBytes) return false;
    cs.Grow();
    grown_bytes += added;
    return true;
  }
  // A fast path's announcement (see the top of this file): the fence is a compiler barrier, since caches are
  // stolen only where the stealer's barrier is a membarrier.
  void EnterFast() {
    in_fast.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  void LeaveFast() { in_fast.store(0, std::memory_order_release); }
  void EnterSlow() {
    in_slow.store(in_slow.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  void LeaveSlow() { in_slow.store(in_slow.load(std::memory_order_relaxed) - 1, std::memory_order_release); }
  // True when the owner has no call under way (for a stealer, after its barrier): free's fast path announces
  // itself through the record's `freeing` (its retire's announcement, made first), the others here.
  bool Idle() const {
    return in_fast.load(std::memory_order_acquire) == 0 && in_slow.load(std::memory_order_acquire) == 0 &&
           record->freeing.load(std::memory_order_acquire) == 0;
  }

  // Every list's array given back (the caller has emptied them).
  void ReleaseLists() {
    for (ClassSlots& cs : classes) cs.Release();
    handles.Release();
    returning.Release();
    grown_bytes = 0;
  }

  std::vector<ClassSlots> classes;
  CachedList<std::uint32_t> handles;  // free handle entries: items[0, count)
  // Entries freed while the handle table was sparse (HandleTable::Sparse), on their way back to it: this
  // thread's next allocations do not reuse them (they take entries of the table's densest pages, through the
  // handle list's refills), so the sparse pages empty. kReturningCapacity of them once made.
  static constexpr std::uint32_t kReturningCapacity = 64;
  CachedList<std::uint32_t> returning;
  // Where free's fast path puts the entry it retired: &handles, or &returning while the table is sparse, as
  // the slow paths last saw it. One pointer, so that the fast path stays one list's push.
  CachedList<std::uint32_t>* free_to = &handles;
  std::uint64_t grown_bytes = 0;
  std::atomic<std::uint64_t> epoch{0};
  // The owner's calls under way: allocate's fast path (0 or 1: fast paths do not nest; free's announces
  // itself in the record, Idle) and the slow paths' (they nest). Written by the owner only; a stealer flushes
  // the cache only while the owner is in none.
  std::atomic<std::uint32_t> in_fast{0};
  std::atomic<std::uint32_t> in_slow{0};
  // Held by a stealer while it flushes the cache, and by the owner when it finds its epoch behind.
  Mutex steal_mu;
  std::uint16_t affinity = CacheAffinities::kNone;  // names it on the blocks it takes slots from (cache_affinities.h)
  handles::AccessRecord* record = nullptr;  // this thread's access record in the pool (its pins and frees)

  OwnedCounter allocs, frees, alloc_bytes, free_bytes;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_THREAD_CACHE_H_
