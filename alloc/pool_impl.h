// alloc/pool_impl.h — Pool::Impl: the parts a pool is made of, and the operations on them that the entry
// points share. Private to the library (pool.cc, pool_compaction.cc, pool_stats.cc).
//
// Types: Pool::Impl (Located, ClassSlack, BackgroundPass, Reclaimed).
// The parts, each a component of its own with its own invariants: the arena (alloc/arena.h) and its page map,
// the handle table and the threads' access records (handles/), the size classes (alloc/size_classes.h), the
// huge objects (alloc/huge_objects.h), the old copies kept for read sections (alloc/old_copies.h), the
// movable-block drivers, the threads' caches (alloc/thread_cache.h) and, in checked mode, the watch for stale
// touches. Impl adds what joins them: the one validation routine (Resolve, Rejected, NotIssued, Locate,
// SizeFieldMatches), the caches' refills and flushes, the compaction passes and their triggers, and the counters
// stats() reports. The fast paths of free and pin open handles through one view made at creation (`fast`),
// empty in checked mode and without membarrier, so that they test neither mode.
// Where the entry points are: allocate, free, pin, read and the thread binding in pool.cc (the fast paths inline
// there); compact, compact_handles, defragment, relocate and release_free_memory in pool_compaction.cc; stats
// in pool_stats.cc.
// Lock order: g_registry_mu (pool.cc) → Impl::compact_mu → SizeClass::mu_ → Arena::mu_;
//   Impl::compact_mu → HugeObjects::mu_ → Arena::mu_; SizeClass::mu_ → OldCopies::mu_; Impl::caches_mu →
//   AccessRecords::mu_; Impl::compact_mu → Impl::caches_mu → ThreadCache::steal_mu → SizeClass::mu_,
//   HandleTable::mu_ (a steal's Flush; g_registry_mu → ThreadCache::steal_mu at thread exit);
//   Impl::detached_mu, HandleTable::mu_, OldCopies::mu_ and VacatedLog::mu_ are leaves.
// Read sections (ReadGuard): movers keep the places they moved objects from in alloc/old_copies.h once the
// pool has had a section, and ReclaimOldCopies gives back those no section can still read (after a barrier),
// holding no lock of its own but the old copies' leaf.
#ifndef MOVA_ALLOC_POOL_IMPL_H_
#define MOVA_ALLOC_POOL_IMPL_H_

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "alloc/arena.h"
#include "alloc/background_compactor.h"
#include "alloc/block.h"
#include "alloc/huge_objects.h"
#include "alloc/old_copies.h"
#include "alloc/owned_handle_count.h"
#include "alloc/page_map.h"
#include "alloc/pool_block_driver.h"
#include "alloc/pool_huge_driver.h"
#include "alloc/size_class_map.h"
#include "alloc/size_classes.h"
#include "alloc/stale_touch_watch.h"
#include "alloc/thread_cache.h"
#include "alloc/vacated_log.h"
#include "base/mutex.h"
#include "compactor/block_migrator.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"
#include "handles/inline_read.h"
#include "mova/handle_owner.h"
#include "mova/pool.h"
#include "os/os.h"

namespace mova {

struct Pool::Impl {
  using Block = alloc::Block;
  using SlotRef = alloc::SlotRef;
  using ThreadCache = alloc::ThreadCache;

  Impl(std::uint64_t pool_id, const PoolOptions& opts, os::Os& the_os) : id(pool_id), options(opts), os(the_os) {}
  ~Impl();

  const std::uint64_t id;
  const PoolOptions options;
  os::Os& os;
  std::unique_ptr<alloc::Arena> arena;
  std::unique_ptr<alloc::PageMap> page_map;
  std::unique_ptr<handles::HandleTable> table;
  std::unique_ptr<handles::AccessRecords> records;  // outlives the caches that hold its records
  std::unique_ptr<alloc::OldCopies> old_copies;     // places moved away from, kept for read sections
  // What ReadGuard::read inlines (handles/inline_read.h): the table's view and the arena's base. Sections of a
  // checked pool get the path that opens nothing, so every read of theirs takes the validating path.
  handles::ReadPath read_path;
  // What the fast paths of free and pin (and the inline pin_owned, pool.h) open handles against
  // (handles/inline_pin.h): empty in checked mode and without membarrier (FastPathOf), so that there no handle
  // opens on a fast path and every call takes the full one — the fast paths pay no test of either mode, and
  // their announce fences are compiler barriers.
  handles::PinPath fast;
  // Checked mode: the places objects left, and the watch that reports a touch of a page no longer in use.
  std::unique_ptr<alloc::VacatedLog> vacated;
  std::unique_ptr<alloc::StaleTouchWatch> watch;  // stopped in ~Impl before anything goes
  std::string DescribeStaleTouch(std::uintptr_t address) const {
    const std::uint64_t offset = address - reinterpret_cast<std::uintptr_t>(arena->base());
    std::string s = absl::StrFormat(
        "stale pointer: a touch of %#x (offset %#x of pool %u's objects) found its page not in use — given back "
        "after frees, or left by a block that moved",
        address, offset, id);
    const std::optional<alloc::VacatedLog::Place> p = vacated->Find(offset);
    if (!p.has_value()) {
      absl::StrAppendFormat(&s, "; no record of what it held (the last %u places objects left are kept)",
                            alloc::VacatedLog::kPlaces);
    } else if (p->kind == alloc::VacatedLog::Place::Kind::kFreed) {
      absl::StrAppendFormat(&s, "; it held the object of handle %#x, freed (offset %#x, %u bytes)", p->handle,
                            p->offset, p->bytes);
    } else {
      absl::StrAppendFormat(&s, "; it held the object of handle-table entry %u, moved to %p (offset %#x)", p->handle,
                            static_cast<const void*>(arena->base() + p->moved_to), p->moved_to);
    }
    return s;
  }
  alloc::SizeClassMap map;
  std::unique_ptr<alloc::SizeClasses> classes;  // each made at its first refill
  std::unique_ptr<alloc::PoolBlockDriver> block_driver;  // the pool as a movable-block driver
  std::unique_ptr<alloc::PoolHugeDriver> huge_driver;    // ... of its huge objects
  std::unique_ptr<alloc::HugeObjects> huge;              // objects larger than the largest class
  compactor::BlockMigrator migrator;                      // used by defragment(), under compact_mu
  std::atomic<std::uint64_t> defrag_runs{0}, regions_freed{0}, huge_migrated{0};
  std::atomic<std::uint64_t> flush_epoch{0};

  // Pins handed out by pin_detached and not yet dropped by unpin, by handle-table index.
  Mutex detached_mu;
  absl::flat_hash_map<std::uint32_t, std::uint32_t> detached ABSL_GUARDED_BY(detached_mu);

  Mutex caches_mu;
  std::vector<ThreadCache*> caches ABSL_GUARDED_BY(caches_mu);
  alloc::CacheAffinities affinities;  // of the caches alive (ThreadCache::affinity)
  std::uint64_t retired_allocs ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_frees ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_alloc_bytes ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_free_bytes ABSL_GUARDED_BY(caches_mu) = 0;


  Mutex compact_mu;
  std::size_t next_compact_class ABSL_GUARDED_BY(compact_mu) = 0;  // where a budgeted compact() goes on
  // A budgeted compact() moved everything but did not discard every page it freed: the next calls discard.
  bool compact_discards_pending ABSL_GUARDED_BY(compact_mu) = false;
  bool defrag_discards_pending ABSL_GUARDED_BY(compact_mu) = false;  // the same for defragment()
  std::size_t next_defrag_region ABSL_GUARDED_BY(compact_mu) = 0;  // a budgeted defragment() goes on below it
  std::uint64_t next_defrag_page ABSL_GUARDED_BY(compact_mu) = 0;   // in region next_defrag_region - 1, from here
  // Pages of a region defragment() scans and migrates in one step (then old copies are reclaimed, and a
  // budgeted call looks at its budget): a region (512 pages) took 1-3 ms, more than a 1 ms background cycle;
  // a budgeted call's steps of 64 pages took 0.5-2 ms in mova-pausebench (isolation 0.06-0.4 ms, migration
  // 0.25-1.7), 16 pages a quarter of that.
  static constexpr std::uint64_t kDefragStepPages = 64;
  static constexpr std::uint64_t kBudgetedDefragStepPages = 16;
  std::atomic<std::uint64_t> compactions{0}, objects_moved{0}, bytes_moved{0}, pages_compacted{0};
  std::atomic<std::uint64_t> relocations{0}, objects_relocated{0};

  // ---- handle owners (mova/handle_owner.h) ----
  std::vector<HandleOwner*> owners ABSL_GUARDED_BY(compact_mu);
  std::atomic<std::size_t> owner_count{0};  // owners.size(), for the background compactor's trigger
  // The table's state (TableState) after a compact_handles() that gave no page back: the trigger stays quiet
  // until the table changes, instead of starting a futile pass at every wakeup (entries pinned, owners
  // refusing, thread caches holding entries).
  std::atomic<std::uint64_t> futile_table_state{~0ull};
  static std::uint64_t TableState(const handles::HandleTable::Stats& t) {
    return (t.pages_resident << 32) ^ t.entries_in_use;
  }
  std::atomic<std::uint64_t> handle_compactions{0}, handles_owned{0}, handles_migrated{0},
      handles_freed_while_isolated{0}, handle_isolate_failed{0}, handles_put_back{0};
  alloc::OwnedHandleCount owned_count ABSL_GUARDED_BY(compact_mu);  // the next plan's, made across calls
  // compact_handles(): moves owned entries out of sparse table pages (HandleTable's evacuation).
  HandleCompactResult CompactHandles(PassBudget budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(compact_mu);
  // Points the back-reference of the live object at `offset` (its block's back-map slot, or its huge
  // object's header) at entry `index`. Under compact_mu, with the object's entry claimed.
  void Rebind(std::uint64_t offset, std::uint32_t index) {
    const Located at = Locate(offset);
    if (at.huge != nullptr) {
      at.huge->owner = index;
    } else {
      at.block->Owner(at.slot).store(index, std::memory_order_release);
    }
  }
  std::unique_ptr<alloc::BackgroundCompactor> background;  // stopped first thing in ~Impl

  // The class blocks' slack: their bytes not in slots that hold live objects or are cached by threads. It is
  // worth a compaction (the background trigger's and direct compaction's test) when it is more than
  // `background_threshold` of the blocks' bytes and more than a block per class that has blocks — the slack
  // compaction cannot remove (each class's last, partly filled block): a small heap would otherwise compact
  // at every look.
  struct ClassSlack {
    std::uint64_t bytes = 0;
    bool worth_compacting = false;
  };
  ClassSlack MeasureClassSlack() const {
    std::uint64_t block_bytes = 0, slot_bytes = 0, tail_bytes = 0;
    classes->ForEachMade([&](const alloc::SizeClass& cls) {
      const alloc::SizeClassInfo& info = cls.info();
      const alloc::ClassSnapshot snap = cls.Snapshot();
      block_bytes += ToBytes(Pages(snap.pages)).value();
      slot_bytes += snap.slots_in_use * info.slot_size;
      if (snap.blocks > 0) tail_bytes += info.block_bytes().value();
    });
    const std::uint64_t slack = block_bytes - slot_bytes;
    const double bound = options.background_threshold * static_cast<double>(block_bytes);
    return ClassSlack{slack, block_bytes > 0 && static_cast<double>(slack) > bound && slack > tail_bytes};
  }

  // ---- the background compactor's passes ----
  enum class BackgroundReason { kNone, kClasses, kRegions, kPressure, kHandles };
  struct BackgroundPass {
    BackgroundReason reason = BackgroundReason::kNone;
    bool compacted = false;     // compact()'s part is complete; defragment()'s goes on
    bool defragmented = false;  // defragment()'s too; compact_handles() ends the pass
  };
  // Passes started, by what started them.
  std::atomic<std::uint64_t> background_by_classes{0}, background_by_regions{0}, background_by_pressure{0},
      background_by_handles{0};

  // Why a background pass should run now, or kNone (see PoolOptions::background_interval). Counts the reason.
  BackgroundReason ReasonForAPass() {
    // Old copies kept for read sections go back at every wakeup once the sections have ended, whether or not a
    // pass is due (a barrier when there are any; nothing when there are none).
    ReclaimOldCopies(/*pressed=*/false);
    const double threshold = options.background_threshold;
    const ClassSlack slack = MeasureClassSlack();
    if (slack.worth_compacting) {
      background_by_classes.fetch_add(1, std::memory_order_relaxed);
      return BackgroundReason::kClasses;
    }
    const alloc::Arena::Stats a = arena->stats();
    const double spread_pages = static_cast<double>(a.regions_in_use * alloc::kPagesPerRegion);
    if (spread_pages > (1 + threshold) * static_cast<double>(a.used_pages) + alloc::kPagesPerRegion) {
      background_by_regions.fetch_add(1, std::memory_order_relaxed);
      return BackgroundReason::kRegions;
    }
    if (TableWantsAPass(threshold)) {
      background_by_handles.fetch_add(1, std::memory_order_relaxed);
      return BackgroundReason::kHandles;
    }
    const os::MemoryPressure m = os.ReadMemoryPressure();
    const bool pressed =
        m.some_avg10 >= kPressureAvg10 ||
        (m.cgroup_max > 0 &&
         static_cast<double>(m.cgroup_current) >= kPressureCgroupShare * static_cast<double>(m.cgroup_max));
    // Under pressure, any page to give back is worth a pass: dirty pages, slack in class blocks, or regions.
    if (pressed &&
        (a.dirty_pages > 0 || slack.bytes >= kPageSize || spread_pages > static_cast<double>(a.used_pages))) {
      background_by_pressure.fetch_add(1, std::memory_order_relaxed);
      return BackgroundReason::kPressure;
    }
    return BackgroundReason::kNone;
  }
  // A sparse handle table, when owners could make it dense: more resident than its entries in use need, by
  // the threshold, beyond the pages it keeps at hand (idle and populated ahead); not again after a futile
  // compaction until the table changed.
  bool TableWantsAPass(double threshold) const {
    if (owner_count.load(std::memory_order_relaxed) == 0) return false;
    const handles::HandleTable::Stats t = table->stats();
    if (TableState(t) == futile_table_state.load(std::memory_order_relaxed)) return false;
    const double needed = static_cast<double>(t.entries_in_use * sizeof(handles::Word));
    const double at_hand = 2.0 * handles::HandleTable::kIdlePages * kPageSize;
    return static_cast<double>(t.resident_bytes().value()) > (1 + threshold) * needed + at_hand;
  }
  // One cycle of a background pass (pool_compaction.cc). True when the pass is complete.
  static bool BackgroundCycle(Pool& pool, BackgroundPass& pass, PassBudget budget);
  static constexpr double kPressureAvg10 = 10;         // PSI memory "some" avg10, percent
  static constexpr double kPressureCgroupShare = 0.9;  // memory.current / memory.max

  // ---- thread caches ----
  ThreadCache* NewCache() {
    auto* c = new ThreadCache(map.num_classes());
    c->epoch.store(flush_epoch.load(std::memory_order_relaxed), std::memory_order_relaxed);
    c->record = records->Acquire();
    MutexLock lock(&caches_mu);
    c->affinity = affinities.Acquire();
    caches.push_back(c);
    return c;
  }

  // This thread's cache for this pool, found or made (not the common case, which CacheScope inlines). A
  // thread whose thread-locals are already destroyed (a later thread-local destructor calling into mova) gets
  // a temporary cache, handed back when its call ends.
  [[gnu::noinline]] ThreadCache* SlowCache(bool* temporary);

  // compact() and defragment(): every thread returns its cache on its next call (the flush epoch moves on);
  // the calling thread returns its own now, and the caches of threads not in a call are emptied for them
  // (stolen: thread_cache.h), so that a thread gone idle holds no slot in a block compaction would empty.
  void RecallThreadCaches();
  // Flushes `c` if its epoch is behind the pool's, under its steal_mu: the owner's side (unless a stealer
  // did it first) and a stealer's. True when it flushed.
  bool SyncCache(ThreadCache& c) ABSL_LOCKS_EXCLUDED(c.steal_mu) {
    MutexLock lock(&c.steal_mu);
    if (c.epoch.load(std::memory_order_relaxed) == flush_epoch.load(std::memory_order_relaxed)) return false;
    Flush(c);
    return true;
  }

  // ---- object compaction ----
  // Every class once, from where the last call that stopped early stopped, moving until `moves_deadline`
  // (InfiniteFuture: all); adds to `r` (complete = false when it stopped early). A call stops between
  // classes only once it has moved something: a call with nothing to move looks at every class (each only
  // under its lock for the look) and is complete.
  // `cursor` is where the next call starts (next_compact_class, or direct compaction's own).
  void CompactClasses(absl::Time moves_deadline, CompactResult& r, std::size_t& cursor)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(compact_mu) {
    const std::size_t n = classes->size();
    const std::size_t first = cursor % n;
    cursor = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t at = (first + k) % n;
      if (r.objects_moved > 0 && absl::Now() >= moves_deadline) {
        cursor = at;
        r.complete = false;
        return;
      }
      alloc::SizeClass* cls = classes->Find(ClassId(static_cast<std::uint32_t>(at)));
      if (cls == nullptr) continue;  // never made: nothing to move
      const alloc::ClassCompaction c = cls->Compact(moves_deadline);
      r.objects_moved += c.objects_moved;
      r.bytes_moved += c.bytes_moved;
      r.blocks_released += c.blocks_released;
      r.pages_released += c.pages_released;
      r.objects_skipped += c.objects_skipped;
      r.blocks_skipped += c.blocks_skipped;
      if (!c.complete) {
        cursor = at;
        r.complete = false;
        return;
      }
    }
  }

  // Direct compaction (PoolOptions::direct_compaction; the kernel's __alloc_pages_direct_compact), after a
  // refill that had to make a new block (a heap that grows; in a steady state no refill does, and nothing is
  // looked at): when the class blocks' slack passes the background trigger's bound, the allocating thread
  // recalls the thread caches and compacts for at most the budget — once kDirectSpacing budgets have passed
  // since the last, or kDirectRefillSpacing refills have made blocks since, whichever comes first (and looks at
  // the classes no more often), and not while another compaction runs — so that the next new blocks take the
  // pages compaction emptied instead of fresh ones. The clock alone let a fast shift outrun it (size-shift, 64
  // MiB: its refill of 1-4 KiB objects made ~64 MiB of blocks in 0.15 s, 30 compactions' worth, and peaked
  // 111-118 MB); counting refills as well keeps pace with the allocations, at most one budget per
  // kDirectRefillSpacing new blocks (about what populating their pages costs), and the peak no longer depends on
  // how fast the machine runs (bench/RESULTS.md). The recall (this thread's cache
  // now, the others' at their next call) is what lets the blocks of sizes no longer allocated go: a cache keeps
  // slots of them from its frees, one per block, and compaction skips a block with a cached slot (churn-ops
  // kept ~35 MiB of such blocks). It is called after the allocation has published its object, so the flush
  // takes nothing the call still uses. The emptied pages stay free for the coming blocks (the decay delay gives
  // back what is not reused). Its own class cursor: compact()'s passes go on where they stopped.
  static constexpr int kDirectSpacing = 10;                       // budgets between two compactions
  static constexpr std::uint64_t kDirectRefillSpacing = 32;       // or refills that made blocks between them
  static constexpr std::int64_t kDirectLookSpacing = 1'000'000;   // ns between two looks at the classes
  std::atomic<std::int64_t> next_direct_ns{0};  // absl::GetCurrentTimeNanos(): none before
  std::atomic<std::uint64_t> refills_since_direct{0};  // refills that made blocks since the last look
  std::atomic<std::uint64_t> direct_compactions{0};
  std::atomic<std::uint64_t> caches_stolen{0};  // thread caches emptied for owners not in a call
  std::size_t next_direct_class ABSL_GUARDED_BY(compact_mu) = 0;  // where the next direct compaction starts
  void MaybeCompactDirectly() {
    const std::int64_t budget_ns = std::chrono::nanoseconds(options.direct_compaction).count();
    if (budget_ns == 0) return;
    const std::int64_t now = absl::GetCurrentTimeNanos();
    const std::uint64_t refills = refills_since_direct.fetch_add(1, std::memory_order_relaxed) + 1;
    if (now < next_direct_ns.load(std::memory_order_relaxed) && refills < kDirectRefillSpacing) return;
    // The look below takes every class's lock once: not more often than kDirectLookSpacing, or than
    // kDirectRefillSpacing refills.
    refills_since_direct.store(0, std::memory_order_relaxed);
    next_direct_ns.store(now + kDirectLookSpacing, std::memory_order_relaxed);
    if (!MeasureClassSlack().worth_compacting || !compact_mu.TryLock()) return;
    RecallThreadCaches();
    CompactResult r;
    CompactClasses(absl::Now() + absl::Nanoseconds(budget_ns), r, next_direct_class);
    compact_mu.Unlock();
    ReclaimOldCopies(/*pressed=*/false);  // with read sections, the emptied blocks come back only through this
    next_direct_ns.store(absl::GetCurrentTimeNanos() + kDirectSpacing * budget_ns, std::memory_order_relaxed);
    direct_compactions.fetch_add(1, std::memory_order_relaxed);
    objects_moved.fetch_add(r.objects_moved, std::memory_order_relaxed);
    bytes_moved.fetch_add(r.bytes_moved, std::memory_order_relaxed);
  }

  // Hands every cached slot and handle entry back. The epoch is stored last, with release: a call that finds
  // it current finds the lists emptied (a stealer's Flush runs beside the owner's fast-path epoch loads).
  void Flush(ThreadCache& c) {
    const std::uint64_t epoch = flush_epoch.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k < c.classes.size(); ++k) {
      alloc::ClassSlots& cs = c.classes[k];
      const std::uint32_t n = cs.count.load(std::memory_order_relaxed);
      if (n == 0) continue;
      classes->Get(ClassId(static_cast<std::uint32_t>(k))).ReturnSlots(std::span<const SlotRef>(cs.items.get(), n));
      cs.count.store(0, std::memory_order_relaxed);
    }
    ReturnEntries(c.handles);
    ReturnEntries(c.returning);
    c.ReleaseLists();
    c.epoch.store(epoch, std::memory_order_release);
  }

  // The table's sparseness as the slow paths see it (ThreadCache::free_to): read afresh, and the entries on
  // their way back given back once it is no longer sparse.
  void RefreshTableSparse(ThreadCache& c) {
    const bool sparse = table->Sparse();
    c.free_to = sparse ? &c.returning : &c.handles;
    if (!sparse) ReturnEntries(c.returning);
  }
  // Gives every entry of a cache's list (the handle list, or the entries on their way back) to the table.
  void ReturnEntries(alloc::CachedList<std::uint32_t>& list) {
    const std::uint32_t n = list.count.load(std::memory_order_relaxed);
    if (n == 0) return;
    table->Return(std::span<const std::uint32_t>(list.items.get(), n));
    list.count.store(0, std::memory_order_relaxed);
  }
  // A freed entry (not in its last life) kept by the thread: in its handle list, or, while the table is
  // sparse, on its way back to the table.
  void KeepFreedHandle(ThreadCache& c, std::uint32_t index) {
    if (c.free_to == &c.handles) {
      PushHandle(c, index);
      return;
    }
    c.returning.EnsureArray(ThreadCache::kReturningCapacity, ThreadCache::kReturningCapacity);
    if (c.returning.count.load(std::memory_order_relaxed) == c.returning.size.capacity) ReturnEntries(c.returning);
    const std::uint32_t n = c.returning.count.load(std::memory_order_relaxed);
    c.returning.items[n] = index;
    c.returning.count.store(n + 1, std::memory_order_relaxed);
  }

  // Called at thread exit with g_registry_mu held, and for temporary caches.
  void RetireCache(ThreadCache* c) {
    {
      MutexLock steal_lock(&c->steal_mu);  // a stealer may be flushing it
      Flush(*c);
    }
    MutexLock lock(&caches_mu);
    retired_allocs += c->allocs.Get();
    retired_frees += c->frees.Get();
    retired_alloc_bytes += c->alloc_bytes.Get();
    retired_free_bytes += c->free_bytes.Get();
    std::erase(caches, c);
    records->Release(c->record);
    affinities.Release(c->affinity);
    delete c;
  }

  // Refills and flushes (the slow halves of taking a handle entry or a slot from the cache and of giving one
  // back; the fast halves are inline in allocate and free). A refill after a flush, or a flush after a
  // refill, doubles the list first, or instead (thread_cache.h).
  ABSL_ATTRIBUTE_NOINLINE absl::Status RefillHandles(ThreadCache& c) {
    c.EnsureHandleArray();
    if (c.handles.size.Swings(alloc::CacheSize::Trip::kRefill)) c.handles.Grow();
    absl::StatusOr<std::size_t> got =
        table->Acquire(std::span<std::uint32_t>(c.handles.items.get(), c.handles.size.capacity / 2));
    if (!got.ok()) return got.status();
    c.handles.count.store(static_cast<std::uint32_t>(*got), std::memory_order_relaxed);
    return absl::OkStatus();
  }

  void PushHandle(ThreadCache& c, std::uint32_t index) {
    c.EnsureHandleArray();
    std::uint32_t n = c.handles.count.load(std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(n == c.handles.size.capacity)) {
      if (c.handles.size.Swings(alloc::CacheSize::Trip::kFlush)) {
        c.handles.Grow();
      } else {
        const std::uint32_t keep = c.handles.size.capacity / 2;
        table->Return(std::span<const std::uint32_t>(c.handles.items.get() + keep, n - keep));
        n = keep;
      }
    }
    c.handles.items[n] = index;
    c.handles.count.store(n + 1, std::memory_order_relaxed);
  }

  // `*made_block` (when given) is set when the refill had to make a new block.
  ABSL_ATTRIBUTE_NOINLINE absl::Status RefillSlots(ThreadCache& c, ClassId cls, bool* made_block = nullptr) {
    alloc::ClassSlots& cs = c.classes[cls.value()];
    const std::uint32_t slot_size = map.info(cls).slot_size;
    cs.EnsureArray(slot_size);
    if (cs.size.Swings(alloc::CacheSize::Trip::kRefill)) c.TryGrow(cs, slot_size);
    absl::StatusOr<std::size_t> got = classes->GetOrMake(cls).TakeSlots(
        std::span<SlotRef>(cs.items.get(), std::max(1u, cs.size.capacity / 2)), c.affinity, affinities, made_block);
    if (!got.ok()) return got.status();
    cs.count.store(static_cast<std::uint32_t>(*got), std::memory_order_relaxed);
    return absl::OkStatus();
  }

  void PushSlot(ThreadCache& c, ClassId cls, SlotRef r) {
    alloc::ClassSlots& cs = c.classes[cls.value()];
    const std::uint32_t slot_size = map.info(cls).slot_size;
    cs.EnsureArray(slot_size);
    std::uint32_t n = cs.count.load(std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(n == cs.size.capacity) &&
        !(cs.size.Swings(alloc::CacheSize::Trip::kFlush) && c.TryGrow(cs, slot_size))) {
      const std::uint32_t keep = cs.size.capacity / 2;
      classes->Get(cls).ReturnSlots(std::span<const SlotRef>(cs.items.get() + keep, n - keep));
      n = keep;
    }
    cs.items[n] = r;
    cs.count.store(n + 1, std::memory_order_relaxed);
  }
  // The common half of every allocation of a class object, for allocate's fast path and AllocateSlow: pops
  // the top cached slot of `cls` (the cache holds one) for entry `index`, writing the slot's back-map, and
  // returns its arena offset.
  [[gnu::always_inline]] std::uint64_t PopSlot(ThreadCache& c, ClassId cls, std::uint32_t index) {
    alloc::ClassSlots& cs = c.classes[cls.value()];
    const std::uint32_t n = cs.count.load(std::memory_order_relaxed) - 1;
    cs.count.store(n, std::memory_order_relaxed);
    const SlotRef r = cs.items[n];
    Block* b = alloc::BlockOf(r);
    const std::uint32_t slot = alloc::SlotIndexOf(r);
    b->Owner(slot).store(index, std::memory_order_release);
    // From the class geometry, not the descriptor: the class lock's holder may be writing the descriptor's
    // line for another thread's refill.
    return map.info(cls).SlotOffset(
        static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(b) - read_path.objects), slot);
  }

  // The last half of every allocation: makes entry `index` (taken off the cache) live at `offset`, counts an
  // allocation of `size` and returns the handle.
  [[gnu::always_inline]] Handle PublishNew(ThreadCache& c, std::uint32_t index, std::uint64_t offset,
                                           std::size_t size) {
    // Through read_path's copy of the table's view: one load fewer than through the table.
    const std::uint16_t gen = handles::Publish(read_path.table.entries[index], offset);
    c.allocs.Add(1);
    c.alloc_bytes.Add(size);
    const std::uint16_t size_field =
        size > alloc::kMaxClassSize ? Handle::kHugeSize : static_cast<std::uint16_t>(size - 1);
    return handles::HandleTable::MakeHandleIn(read_path.table, index, gen, size_field);
  }


  // ---- handles ----
  // A call made through a HandleCell (`via`) whose handle was refused while the cell moved on to another
  // (the compactor moved its entry, or the owner stored another): the call starts again with the cell's new
  // handle. Never returned to a caller.
  static absl::Status MovedOn() { return absl::AbortedError("mova: the cell's handle moved"); }
  static bool IsMovedOn(const absl::Status& s) { return s.code() == absl::StatusCode::kAborted; }
  static bool CellMovedOn(const HandleCell* via, Handle h) { return via != nullptr && via->load() != h; }
  // Every call through a cell: `call(handle, &cell)` with the cell's handle, again with its new one while
  // the answer is MovedOn. One named result, returned from one place: it is built where the caller wants it
  // (no StatusOr moves). The callers' lambdas are always_inline: left to the compiler, the calls through a
  // cell cost ~1 ns more (PinOwnedCellUnpin 6.2 against 5.3 ns, AllocFreeCell/64 17.2 against 15.9 ns).
  template <typename Call>
  [[gnu::always_inline]] static auto ThroughCell(const HandleCell& cell, Call call) {
    auto r = call(cell.load(), &cell);
    while (ABSL_PREDICT_FALSE(!r.ok() && IsMovedOn(StatusOf(r)))) r = call(cell.load(), &cell);
    return r;
  }
  static const absl::Status& StatusOf(const absl::Status& s) { return s; }
  template <typename T>
  static const absl::Status& StatusOf(const absl::StatusOr<T>& s) { return s.status(); }

  absl::Status Misuse(absl::Status s) const {
    if (options.checked) {
      std::fprintf(stderr, "mova: checked mode: %s\n", std::string(s.message()).c_str());
      std::abort();
    }
    return s;
  }

  // The one validation routine's first half, for every entry point that takes a handle: the entry the
  // handle names and the generation it claims (loads only); entry == nullptr: answer NotIssued(op, h).
  handles::HandleRef Resolve(Handle h) const { return table->Open(h); }
  // Its second half: an entry operation found another generation than the handle's. Slow path.
  [[gnu::noinline]] absl::Status Rejected(const char* op, Handle h, const HandleCell* via = nullptr) const {
    if (CellMovedOn(via, h)) return MovedOn();
    if (table->Classify(h) == handles::HandleVerdict::kStale) return Stale(op, h);
    return NotIssued(op, h);
  }

  [[gnu::noinline]] absl::Status NotIssued(const char* op, Handle h, const HandleCell* via = nullptr) const {
    if (CellMovedOn(via, h)) return MovedOn();
    return Misuse(absl::InvalidArgumentError(absl::StrFormat(
        "%s: handle %#x was not issued by this pool (null, forged, corrupted or another pool's)", op, h.raw)));
  }
  [[gnu::noinline]] absl::Status Stale(const char* op, Handle h) const {
    return Misuse(absl::NotFoundError(
        absl::StrFormat("%s: handle %#x is stale: its object was freed (double free or use after free)", op, h.raw)));
  }


  // Where a live object's offset lies, from the page map and the class table (no block header is read).
  struct Located {
    alloc::HugeObject* huge = nullptr;  // set for a huge object
    Block* block = nullptr;             // else the class block,
    std::uint32_t slot = 0;             // the slot
    ClassId cls;                        // and the class
  };
  Located Locate(std::uint64_t offset) const {
    const std::uint64_t page = offset >> kPageShift;
    const alloc::PageOwner o = page_map->Get(page);
    Located at;
    if (ABSL_PREDICT_FALSE(!o.present())) return at;  // only for a forged handle's location
    if (ABSL_PREDICT_FALSE(o.huge())) {
      at.huge = reinterpret_cast<alloc::HugeObject*>(arena->PageAddress(static_cast<std::uint32_t>(page)));
      return at;
    }
    const std::uint64_t first = page - o.page_in_block();
    const alloc::SizeClassInfo& info = map.info(o.cls());
    at.block = reinterpret_cast<Block*>(arena->PageAddress(static_cast<std::uint32_t>(first)));
    at.slot = info.SlotIndex(static_cast<std::uint32_t>(offset - (first << kPageShift) - info.data_offset));
    at.cls = o.cls();
    return at;
  }

  // The slot of class `cls` at `offset`, for free's fast path (through `fast`, so only where it is not
  // empty): false, with `*ref` unset, unless the page map says a block of `cls` holds that page (one compare:
  // present, not huge, that class).
  [[gnu::always_inline]] bool LocateClassSlot(std::uint64_t offset, ClassId cls, alloc::SlotRef* ref) const {
    const std::uint64_t page = offset >> kPageShift;
    const std::uint32_t owner = fast.page_owners[page].load(std::memory_order_acquire);
    if (ABSL_PREDICT_FALSE(!alloc::PageOwner::IsBlockPageOf(owner, cls))) return false;
    const std::uint64_t first = page - (owner & alloc::PageOwner::kPageInBlockMask);
    const alloc::SizeClassInfo& info = map.info(cls);
    const std::uint32_t slot =
        info.SlotIndex(static_cast<std::uint32_t>(offset - (first << kPageShift) - info.data_offset));
    *ref = alloc::PackSlot(reinterpret_cast<Block*>(fast.objects + (first << kPageShift)), slot);
    return true;
  }

  // True when the object at `offset` is of the kind and class the handle's size field says: a handle whose
  // bits were altered (beyond the generation check) is refused instead of trusted.
  bool SizeFieldMatches(Handle h, std::uint64_t offset, const Located& at) const {
    if (h.size_field() == Handle::kHugeSize) {
      return at.huge != nullptr && (offset & (kPageSize - 1)) == alloc::HugeObject::kHeaderBytes;
    }
    return at.block != nullptr && SizeFieldNamesClass(h, at.cls);
  }

  // True when the class object's size field of `h` is one of class `cls`'s sizes. A size field past the
  // largest class (a forged one: huge objects' is kHugeSize) names none, and is not looked up.
  bool SizeFieldNamesClass(Handle h, ClassId cls) const {
    return h.size_field() < alloc::kMaxClassSize && map.ClassFor(std::size_t{h.size_field()} + 1) == cls;
  }

  // SizeFieldMatches for a class object's handle (size field not kHugeSize), from the page map alone (one
  // compare: present, not huge, the size field's class), for the pin fast paths, which need neither block nor
  // slot: through `fast`, so only where it is not empty.
  [[gnu::always_inline]] bool InClassOfSizeField(Handle h, std::uint64_t offset) const {
    const std::uint32_t owner = fast.page_owners[offset >> kPageShift].load(std::memory_order_acquire);
    return h.size_field() < alloc::kMaxClassSize &&
           alloc::PageOwner::IsBlockPageOf(owner, map.ClassFor(std::size_t{h.size_field()} + 1));
  }

  // Checked mode only (it reads the block header, a cache miss of its own): the descriptor of the block or
  // huge object holding a live object must be intact, or something wrote over it (an overflow of a
  // neighbouring object, say) and the pool refuses to go on.
  absl::Status CheckDescriptor(const char* op, Handle h, const Located& at) const {
    const std::uint32_t magic = at.huge != nullptr ? at.huge->magic : at.block->magic;
    if (magic == alloc::kBlockMagic) return absl::OkStatus();
    return Misuse(absl::DataLossError(absl::StrFormat(
        "%s: handle %#x: the descriptor of its block is overwritten (magic %#x): memory next to an object was "
        "written out of bounds", op, h.raw, magic)));
  }

  // A pin counted in the handle entry (one CAS): for pin_detached, and for a thread whose record's pin slots
  // are all taken.
  absl::StatusOr<Pinned> PinCounted(Handle h, handles::HandleRef r, Access access,
                                    const HandleCell* via = nullptr) const {
    handles::Word w;
    switch (handles::PinCounted(*r.entry, r.gen, &w)) {
      case handles::EntryResult::kOk:
        break;
      case handles::EntryResult::kTooManyPins:
        return absl::ResourceExhaustedError(
            absl::StrFormat("pin: handle %#x is pinned %u times already", h.raw, handles::kMaxPins));
      default:
        return Rejected("pin", h, via);
    }
    const std::uint64_t offset = handles::OffsetOf(w);
    const Located at = Locate(offset);
    absl::Status s = SizeFieldMatches(h, offset, at) ? absl::OkStatus() : NotIssued("pin", h, via);
    if (s.ok() && options.checked) s = CheckDescriptor("pin", h, at);
    if (!s.ok()) {
      handles::UnpinCounted(*r.entry);
      return s;
    }
    return Pinned(nullptr, r.entry, arena->base() + offset, SizeOf(h, at), access);
  }

  // A Pinned (its constructor is the pool's), for the fast paths outside Impl.
  static Pinned MakePinned(std::atomic<std::uint32_t>* slot, std::atomic<std::uint64_t>* entry, std::byte* data,
                           std::size_t size, Access access) {
    return Pinned(slot, entry, data, size, access);
  }

  // pin_owned's slow path (pool.cc: it takes the thread's cache through CacheScope).
  [[gnu::noinline]] absl::StatusOr<Pinned> PinOwnedSlow(Handle h, Access access, const HandleCell* via);

  // The requested size of the live object `h` names, located at `at`.
  static std::size_t SizeOf(Handle h, const Located& at) {
    if (ABSL_PREDICT_TRUE(h.size_field() != Handle::kHugeSize)) return std::size_t{h.size_field()} + 1;
    return at.huge->size;
  }

  // ---- read sections (ReadGuard) and the old copies they keep ----
  std::atomic<std::uint64_t> old_copies_freed{0}, old_copy_bytes_freed{0}, old_copies_freed_under_pressure{0};
  // The pool's first read section: from now on movers keep old places (copying, never moving pages away)
  // until the sections that may read them end. Under compact_mu, so that no move under way when the section
  // begins was started without keeping them (every mover holds compact_mu).
  [[gnu::noinline]] void StartKeepingOldCopies() ABSL_LOCKS_EXCLUDED(compact_mu) {
    MutexLock lock(&compact_mu);
    if (old_copies->keeping()) return;
    arena->KeepMoveSources();
    old_copies->Keep();
  }
  // Gives back the old places no open read section can be reading (one barrier; nothing when none are kept),
  // releasing the class blocks they leave empty. `pressed`: memory is short (an allocation failed), counted.
  // Takes class locks and the arena's: call it with none of them held.
  struct Reclaimed {
    std::uint64_t places = 0;
    std::uint64_t blocks_released = 0;  // class blocks emptied by the slots given back
    std::uint64_t pages_released = 0;   // their pages
  };
  Reclaimed ReclaimOldCopies(bool pressed) {
    Reclaimed out;
    if (old_copies->empty()) return out;
    const std::uint64_t before = records->ReadEpoch();
    if (!records->Barrier().ok()) return out;  // no record can be trusted: keep everything
    alloc::OldCopies::Taken t = old_copies->Take(records->SafeReadEpoch(before));
    if (t.empty()) return out;
    out.places = t.slots.size() + t.runs.size();
    // By class, and by block within a class, so each block is regrouped once per run of its slots.
    std::sort(t.slots.begin(), t.slots.end());
    std::vector<SlotRef> run;
    for (std::size_t i = 0; i < t.slots.size();) {
      const std::uint32_t cls = t.slots[i].first;
      run.clear();
      for (; i < t.slots.size() && t.slots[i].first == cls; ++i) run.push_back(t.slots[i].second);
      const alloc::SizeClass::Released released = classes->Get(ClassId(cls)).ReturnOldCopies(run);
      out.blocks_released += released.blocks;
      out.pages_released += released.pages;
    }
    for (const alloc::PageRun r : t.runs) arena->Free(r);
    old_copies_freed.fetch_add(out.places, std::memory_order_relaxed);
    old_copy_bytes_freed.fetch_add(t.bytes.value(), std::memory_order_relaxed);
    if (pressed) old_copies_freed_under_pressure.fetch_add(out.places, std::memory_order_relaxed);
    return out;
  }
  // The whole read in a read section: huge objects, checked mode, errors, and an object that moved on between
  // the entry's load and the page map's (its old block's pages are unmapped only after its new place is
  // published, so a second look finds it).
  [[gnu::noinline]] absl::StatusOr<std::span<const std::byte>> ReadSlow(Handle h, const HandleCell* via) {
    const handles::HandleRef r = Resolve(h);
    if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return NotIssued("read", h, via);
    std::uint64_t last = ~std::uint64_t{0};
    for (;;) {
      handles::Word w;
      if (!handles::TryRead(*r.entry, r.gen, &w)) return Rejected("read", h, via);
      const std::uint64_t offset = handles::OffsetOf(w);
      const Located at = Locate(offset);
      if (SizeFieldMatches(h, offset, at)) {
        absl::Status s = options.checked ? CheckDescriptor("read", h, at) : absl::OkStatus();
        if (s.ok()) return std::span<const std::byte>(arena->base() + offset, SizeOf(h, at));
        if (offset == last) return s;
      } else if (offset == last) {
        return NotIssued("read", h, via);
      }
      last = offset;  // it may have moved on since the load: look once more
    }
  }

  // An allocation's retry after ResourceExhausted: true when old copies were given back (then try again).
  bool ReclaimForAllocation(const absl::Status& s) {
    return absl::IsResourceExhausted(s) && ReclaimOldCopies(/*pressed=*/true).places > 0;
  }
};

}  // namespace mova

#endif  // MOVA_ALLOC_POOL_IMPL_H_
