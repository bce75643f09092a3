// alloc/huge_objects.h — the pool's huge objects: objects larger than the largest size class, each on a page
// run of its own (its HugeObject descriptor at the start, alloc/block.h), registered movable.
//
// Types: HugeObjects. Allocate places an object and names it in the page map; Free unnames it and lets its
// run go (at once, or when the defragmenter lets go of it: compactor/movable_block.h). Moving one is the
// driver's (alloc/pool_huge_driver.h).
// Invariants: count() and pages() are the objects allocated and not yet freed and their pages (relaxed
// counters, for stats); a huge object's first page is named huge in the page map from Allocate to Free, and
// its magic is kBlockMagic exactly as long.
// Locks: mu() is held by Free and by a defragmentation that validates and isolates a huge object, so its run
// cannot be released in between. Order: Pool::Impl::compact_mu → mu() → Arena::mu_.
#ifndef MOVA_ALLOC_HUGE_OBJECTS_H_
#define MOVA_ALLOC_HUGE_OBJECTS_H_

#include <atomic>
#include <cstdint>
#include <new>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/page_map.h"
#include "alloc/pool_huge_driver.h"
#include "base/mutex.h"
#include "mova/units.h"

namespace mova::alloc {

class HugeObjects {
 public:
  HugeObjects(Arena& arena, PageMap& page_map, PoolHugeDriver& driver)
      : arena_(arena), page_map_(page_map), driver_(driver) {}
  HugeObjects(const HugeObjects&) = delete;
  HugeObjects& operator=(const HugeObjects&) = delete;

  // A huge object of `size` bytes for handle-table index `index`: the arena offset of its first byte.
  absl::StatusOr<std::uint64_t> Allocate(std::size_t size, std::uint32_t index) {
    absl::StatusOr<PageRun> run = arena_.Allocate(PagesCeil(Bytes(size + HugeObject::kHeaderBytes)));
    if (!run.ok()) return run.status();
    auto* h = new (arena_.PageAddress(run->first)) HugeObject;
    h->run = *run;
    h->size = size;
    h->owner = index;
    h->movable.Register(&driver_, h);
    count_.fetch_add(1, std::memory_order_relaxed);
    pages_.fetch_add(run->count, std::memory_order_relaxed);
    page_map_.MapHuge(*run);
    return h->data_offset();
  }

  // Frees `h`, whose entry the caller retired.
  void Free(HugeObject* h) ABSL_LOCKS_EXCLUDED(mu_) {
    count_.fetch_sub(1, std::memory_order_relaxed);
    pages_.fetch_sub(h->run.count, std::memory_order_relaxed);
    MutexLock lock(&mu_);
    h->magic = 0;
    page_map_.Unmap(h->run.first, 1);
    h->movable.Unregister();  // the run goes back now, or when the defragmenter lets go of it
  }

  Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  PoolHugeDriver& driver() { return driver_; }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  Pages pages() const { return Pages(pages_.load(std::memory_order_relaxed)); }

 private:
  Arena& arena_;
  PageMap& page_map_;
  PoolHugeDriver& driver_;
  Mutex mu_;
  std::atomic<std::uint64_t> count_{0}, pages_{0};
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_HUGE_OBJECTS_H_
