// alloc/pool.cc — Pool: the handle table, the size classes, huge objects and per-thread caches put together.
//
// Types: Pool::Impl, ThreadCaches (one per thread: its caches for every pool it used).
// Fast paths (allocate / free with a warm cache, pin, unpin) take no lock and make no syscall: allocate pops
// a cached slot and a cached handle entry and publishes the entry; free announces the entry in the thread's
// access record, checks it, retires it with one CAS and pushes both back; pin counts the pin in the entry
// (one CAS; totally ordered with a free, so a pin racing a free of the same object has one outcome);
// pin_owned stores the entry's tag in a pin slot of the thread's record and loads the entry, and its unpin
// clears the slot: no shared write (handles/access_records.h; movers confirm their claims against the
// records, handles/move_claims.h). A thread whose record's pin slots are all taken counts the pin instead.
// Each fast path is inline in its public function and does the common case only; anything else (another
// pool used last, an empty or full cache, a flush due, a huge object, a pin, a mover, checked mode, an
// error) goes to its slow path (AllocateSlow, FreeSlow, PinSlow, Impl::PinOwnedSlow) before anything is
// changed, and the slow path does the whole call. One function doing both kept the error paths' state in
// registers and on the stack through the common case: allocate + free took ~370 instructions, now ~265.
// Validation: every entry point that takes a handle goes through Impl::Resolve (the handle table opens the
// handle's check to its entry and generation) and the entry operation's generation compare; a refusal is
// classified (stale or never issued) on the slow path. Pins taken by pin_detached are counted in a ledger,
// so unpin(h) can drop only those, never a Pinned's.
// Lock order: g_registry_mu → Impl::compact_mu → SizeClass::mu_ → Arena::mu_;
//   Impl::compact_mu → Impl::huge_mu → Arena::mu_; SizeClass::mu_ → OldCopies::mu_; Impl::caches_mu →
//   AccessRecords::mu_; Impl::detached_mu, HandleTable::mu_, OldCopies::mu_ and VacatedLog::mu_ are leaves.
// Read sections (ReadGuard): a read is Resolve and one load of the entry (handles/entry_word.h TryRead); the
// section's epoch lives in the thread's access record. Movers keep the places they moved objects from in
// alloc/old_copies.h once the pool has had a section, and ReclaimOldCopies gives back those no section can
// still read (after a barrier), holding no lock of its own but the old copies' leaf.
// Thread exit: a thread's caches go back to every pool still alive (under g_registry_mu, which Pool's
// destructor takes before it frees anything). Pool ids are never reused, so a cache pointer left in a dead
// thread-local slot is never matched again.
#include "mova/pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "base/mutex.h"
#include "absl/time/clock.h"
#include "alloc/arena.h"
#include "alloc/background_compactor.h"
#include "alloc/block.h"
#include "alloc/page_map.h"
#include "alloc/lower_region_targets.h"
#include "alloc/old_copies.h"
#include "alloc/owned_handle_count.h"
#include "alloc/pool_block_driver.h"
#include "alloc/pool_huge_driver.h"
#include "compactor/region_scan.h"
#include "alloc/size_classes.h"
#include "alloc/size_class_map.h"
#include "alloc/stale_touch_watch.h"
#include "alloc/thread_cache.h"
#include "alloc/vacated_log.h"
#include "handles/entry_migrator.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"
#include "mova/handle_owner.h"
#include "os/os.h"

namespace mova {

using alloc::Block;
using alloc::SlotRef;
using alloc::ThreadCache;

namespace {

std::atomic<std::uint64_t> g_next_pool_id{1};

// The salt of a pool's handle keys (handles/handle_seal.h): a per-process random seed, so that handles kept
// from another process (or another run) are refused, plus the pool id times an odd constant, so that pools of
// this process have different keys until 2^20 pools later.
std::uint64_t PoolSalt(std::uint64_t pool_id) {
  static const std::uint64_t seed = [] {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd();
  }();
  return seed + pool_id * handles::kPoolMul;
}
ABSL_CONST_INIT Mutex g_registry_mu(absl::kConstInit);
absl::flat_hash_map<std::uint64_t, Pool::Impl*>& LivePools() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_registry_mu) {
  static auto* pools = new absl::flat_hash_map<std::uint64_t, Pool::Impl*>();
  return *pools;
}

struct TlsLast {
  std::uint64_t pool_id = 0;
  ThreadCache* cache = nullptr;
};
// The fast path's TLS: initial-exec, so that libmova.so reaches it with one %fs-relative load instead of a
// __tls_get_addr call (24 bytes of the static TLS surplus glibc keeps for dlopen'ed libraries).
#define MOVA_FAST_TLS __attribute__((tls_model("initial-exec")))
MOVA_FAST_TLS thread_local TlsLast tls_last;        // trivially destructible: the fast path's only TLS access
MOVA_FAST_TLS thread_local bool tls_exited = false; // set once this thread's caches were handed back

struct ThreadCaches {
  absl::flat_hash_map<std::uint64_t, ThreadCache*> by_pool;
  ~ThreadCaches();
};
thread_local ThreadCaches tls_caches;

}  // namespace

struct Pool::Impl {
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
  Mutex huge_mu;  // a huge object is validated and isolated, or unregistered by FreeHuge, under it
  compactor::BlockMigrator migrator;                      // used by defragment(), under compact_mu
  std::atomic<std::uint64_t> defrag_runs{0}, regions_freed{0}, huge_migrated{0};
  std::atomic<std::uint64_t> flush_epoch{0};

  // Pins handed out by pin_detached and not yet dropped by unpin, by handle-table index.
  Mutex detached_mu;
  absl::flat_hash_map<std::uint32_t, std::uint32_t> detached ABSL_GUARDED_BY(detached_mu);

  Mutex caches_mu;
  std::vector<ThreadCache*> caches ABSL_GUARDED_BY(caches_mu);
  std::uint64_t retired_allocs ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_frees ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_alloc_bytes ABSL_GUARDED_BY(caches_mu) = 0;
  std::uint64_t retired_free_bytes ABSL_GUARDED_BY(caches_mu) = 0;


  std::atomic<std::uint64_t> huge_objects{0}, huge_pages{0};

  Mutex compact_mu;
  std::size_t next_compact_class ABSL_GUARDED_BY(compact_mu) = 0;  // where a budgeted compact() goes on
  // A budgeted compact() moved everything but did not discard every page it freed: the next calls discard.
  bool compact_discards_pending ABSL_GUARDED_BY(compact_mu) = false;
  bool defrag_discards_pending ABSL_GUARDED_BY(compact_mu) = false;  // the same for defragment()
  std::size_t next_defrag_region ABSL_GUARDED_BY(compact_mu) = 0;  // a budgeted defragment() goes on below it
  std::uint64_t next_defrag_page ABSL_GUARDED_BY(compact_mu) = 0;   // in region next_defrag_region - 1, from here
  // Pages of a region defragment() scans and migrates between two looks at its budget: a region (512 pages)
  // took 1-3 ms, more than a 1 ms background cycle.
  static constexpr std::uint64_t kDefragStepPages = 64;
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
    return ClassSlack{slack, block_bytes > 0 &&
                                 static_cast<double>(slack) > options.background_threshold * static_cast<double>(block_bytes) &&
                                 slack > tail_bytes};
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
    if (pressed && (a.dirty_pages > 0 || slack.bytes >= kPageSize || spread_pages > static_cast<double>(a.used_pages))) {
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
  static constexpr double kPressureAvg10 = 10;         // PSI memory "some" avg10, percent
  static constexpr double kPressureCgroupShare = 0.9;  // memory.current / memory.max

  // ---- thread caches ----
  ThreadCache* NewCache() {
    auto* c = new ThreadCache(map.num_classes());
    c->epoch = flush_epoch.load(std::memory_order_relaxed);
    c->record = records->Acquire();
    MutexLock lock(&caches_mu);
    caches.push_back(c);
    return c;
  }

  // This thread's cache for this pool, found or made (not the common case, which CacheScope inlines). A
  // thread whose thread-locals are already destroyed (a later thread-local destructor calling into mova) gets
  // a temporary cache, handed back when its call ends.
  [[gnu::noinline]] ThreadCache* SlowCache(bool* temporary) {
    if (tls_exited) {
      *temporary = true;
      return NewCache();
    }
    auto& by_pool = tls_caches.by_pool;
    if (by_pool.size() >= 64 && !by_pool.contains(id)) {
      // A thread that used many short-lived pools: forget the entries of pools that are gone.
      MutexLock lock(&g_registry_mu);
      for (auto it = by_pool.begin(); it != by_pool.end();) {
        if (LivePools().contains(it->first)) {
          ++it;
        } else {
          by_pool.erase(it++);
        }
      }
    }
    ThreadCache*& slot = by_pool[id];
    if (slot == nullptr) slot = NewCache();
    tls_last = TlsLast{id, slot};
    return slot;
  }

  // compact() and defragment(): every thread returns its cache on its next call (the flush epoch moves on);
  // the calling thread returns its own now.
  void RecallThreadCaches();

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
  // compacts for at most the budget — at most once per kDirectSpacing budgets (and looks at the classes at
  // most once a millisecond), and not while another compaction runs — so that the next new blocks take the
  // pages compaction emptied instead of fresh ones. No thread cache is recalled (the caller is inside an
  // allocation; blocks holding cached slots are skipped), and the emptied pages stay free for the coming
  // blocks (the decay delay gives back what is not reused). Its own class cursor: compact()'s passes go on
  // where they stopped.
  static constexpr int kDirectSpacing = 10;                       // budgets between two compactions
  static constexpr std::int64_t kDirectLookSpacing = 1'000'000;   // ns between two looks at the classes
  std::atomic<std::int64_t> next_direct_ns{0};  // absl::GetCurrentTimeNanos(): none before
  std::atomic<std::uint64_t> direct_compactions{0};
  std::size_t next_direct_class ABSL_GUARDED_BY(compact_mu) = 0;  // where the next direct compaction starts
  void MaybeCompactDirectly() {
    const std::int64_t budget_ns = std::chrono::nanoseconds(options.direct_compaction).count();
    if (budget_ns == 0) return;
    const std::int64_t now = absl::GetCurrentTimeNanos();
    if (now < next_direct_ns.load(std::memory_order_relaxed)) return;
    // The look below takes every class's lock once: not more often than kDirectLookSpacing.
    next_direct_ns.store(now + kDirectLookSpacing, std::memory_order_relaxed);
    if (!MeasureClassSlack().worth_compacting || !compact_mu.TryLock()) return;
    CompactResult r;
    CompactClasses(absl::Now() + absl::Nanoseconds(budget_ns), r, next_direct_class);
    compact_mu.Unlock();
    ReclaimOldCopies(/*pressed=*/false);  // with read sections, the emptied blocks come back only through this
    next_direct_ns.store(absl::GetCurrentTimeNanos() + kDirectSpacing * budget_ns, std::memory_order_relaxed);
    direct_compactions.fetch_add(1, std::memory_order_relaxed);
    objects_moved.fetch_add(r.objects_moved, std::memory_order_relaxed);
    bytes_moved.fetch_add(r.bytes_moved, std::memory_order_relaxed);
  }

  // Hands every cached slot and handle entry back.
  void Flush(ThreadCache& c) {
    c.epoch = flush_epoch.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k < c.classes.size(); ++k) {
      alloc::ClassSlots& cs = c.classes[k];
      const std::uint32_t n = cs.count.load(std::memory_order_relaxed);
      if (n == 0) continue;
      classes->Get(ClassId(static_cast<std::uint32_t>(k))).ReturnSlots(std::span<const SlotRef>(cs.items.get(), n));
      cs.count.store(0, std::memory_order_relaxed);
    }
    const std::uint32_t h = c.handles.count.load(std::memory_order_relaxed);
    if (h > 0) {
      table->Return(std::span<const std::uint32_t>(c.handles.items.get(), h));
      c.handles.count.store(0, std::memory_order_relaxed);
    }
    c.ReleaseLists();
  }

  // Called at thread exit with g_registry_mu held, and for temporary caches.
  void RetireCache(ThreadCache* c) {
    Flush(*c);
    MutexLock lock(&caches_mu);
    retired_allocs += c->allocs.Get();
    retired_frees += c->frees.Get();
    retired_alloc_bytes += c->alloc_bytes.Get();
    retired_free_bytes += c->free_bytes.Get();
    std::erase(caches, c);
    records->Release(c->record);
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
        std::span<SlotRef>(cs.items.get(), std::max(1u, cs.size.capacity / 2)), made_block);
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
    return map.info(cls).SlotOffset(static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(b) - arena->base()),
                                    slot);
  }

  // The last half of every allocation: makes entry `index` (taken off the cache) live at `offset`, counts an
  // allocation of `size` and returns the handle.
  [[gnu::always_inline]] Handle PublishNew(ThreadCache& c, std::uint32_t index, std::uint64_t offset,
                                           std::size_t size) {
    const std::uint16_t gen = handles::Publish(table->entry(index), offset);
    c.allocs.Add(1);
    c.alloc_bytes.Add(size);
    const std::uint16_t size_field =
        size > alloc::kMaxClassSize ? Handle::kHugeSize : static_cast<std::uint16_t>(size - 1);
    return table->MakeHandle(index, gen, size_field);
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

  // True when the object at `offset` is of the kind and class the handle's size field says: a handle whose
  // bits were altered (beyond the generation check) is refused instead of trusted.
  bool SizeFieldMatches(Handle h, std::uint64_t offset, const Located& at) const {
    if (h.size_field() == Handle::kHugeSize) {
      return at.huge != nullptr && (offset & (kPageSize - 1)) == alloc::HugeObject::kHeaderBytes;
    }
    return at.block != nullptr && map.ClassFor(std::size_t{h.size_field()} + 1) == at.cls;
  }

  // SizeFieldMatches for a class object's handle (size field not kHugeSize), from the page map alone: the
  // pin fast paths need neither block nor slot.
  bool InClassOfSizeField(Handle h, std::uint64_t offset) const {
    const alloc::PageOwner o = page_map->Get(offset >> kPageShift);
    return o.present() && !o.huge() && o.cls() == map.ClassFor(std::size_t{h.size_field()} + 1);
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

  // pin_owned's slow path (after CacheScope, below).
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

  // ---- huge objects ----
  // A huge object for handle-table index `index`, registered movable.
  absl::StatusOr<std::uint64_t> AllocateHuge(std::size_t size, std::uint32_t index) {
    absl::StatusOr<alloc::PageRun> run = arena->Allocate(PagesCeil(Bytes(size + alloc::HugeObject::kHeaderBytes)));
    if (!run.ok()) return run.status();
    auto* h = new (arena->PageAddress(run->first)) alloc::HugeObject;
    h->run = *run;
    h->size = size;
    h->owner = index;
    h->movable.Register(huge_driver.get(), h);
    huge_objects.fetch_add(1, std::memory_order_relaxed);
    huge_pages.fetch_add(run->count, std::memory_order_relaxed);
    page_map->MapHuge(*run);
    return h->data_offset();
  }

  void FreeHuge(alloc::HugeObject* h) {
    huge_objects.fetch_sub(1, std::memory_order_relaxed);
    huge_pages.fetch_sub(h->run.count, std::memory_order_relaxed);
    MutexLock lock(&huge_mu);
    h->magic = 0;
    page_map->Unmap(h->run.first, 1);
    h->movable.Unregister();  // the run goes back now, or when the defragmenter lets go of it
  }
};

namespace {

// The calling thread's cache for one pool for the length of one call, synchronised with the pool's flush
// epoch. The common case — this thread used this pool last — is a thread-local compare.
class CacheScope {
 public:
  explicit CacheScope(Pool::Impl& p) : p_(p) {
    if (ABSL_PREDICT_TRUE(tls_last.pool_id == p.id)) {
      c_ = tls_last.cache;
    } else {
      c_ = p.SlowCache(&temporary_);
    }
    if (ABSL_PREDICT_FALSE(c_->epoch != p.flush_epoch.load(std::memory_order_relaxed))) p.Flush(*c_);
  }
  ~CacheScope() {
    if (ABSL_PREDICT_FALSE(temporary_)) p_.RetireCache(c_);
  }
  CacheScope(const CacheScope&) = delete;
  CacheScope& operator=(const CacheScope&) = delete;
  ThreadCache& operator*() const { return *c_; }

 private:
  Pool::Impl& p_;
  ThreadCache* c_;
  bool temporary_ = false;
};

ThreadCaches::~ThreadCaches() {
  MutexLock lock(&g_registry_mu);
  for (auto& [id, cache] : by_pool) {
    auto it = LivePools().find(id);
    if (it != LivePools().end()) it->second->RetireCache(cache);
  }
  by_pool.clear();
  tls_last = TlsLast{};
  tls_exited = true;
}

}  // namespace

Pool::Impl::~Impl() {
  background.reset();  // its thread calls into the pool: stop it before anything goes
  watch.reset();
  {
    MutexLock lock(&g_registry_mu);
    LivePools().erase(id);
  }
  // No thread can retire a cache into this pool any more; the caches' slots die with the classes, and
  // huge objects (whose descriptors live in their own pages) with the arena.
  {
    MutexLock lock(&caches_mu);
    for (ThreadCache* c : caches) delete c;
    caches.clear();
  }
  classes.reset();
  table.reset();
  page_map.reset();
  arena.reset();
}

namespace {

// One cycle of a background pass: compact() with the cycle's budget until it is complete, then defragment()
// likewise, then compact_handles() likewise (its count of the owned cells and its moves are bounded by the
// budget; the owners' iteration over cells it has no time left for is not); a pass started for memory
// pressure ends by giving back every free page. True when the pass is complete.
bool BackgroundCycle(Pool& pool, Pool::Impl::BackgroundPass& pass, PassBudget budget) {
  if (!pass.compacted) {
    pass.compacted = pool.compact(budget).complete;
    return false;
  }
  if (!pass.defragmented) {
    pass.defragmented = pool.defragment(budget).complete;
    return false;
  }
  if (!pool.compact_handles(budget).complete) return false;
  if (pass.reason == Pool::Impl::BackgroundReason::kPressure) pool.release_free_memory();
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(const PoolOptions& options) {
  if (absl::Status env = EnvironmentOptionsStatus(); !env.ok()) return env;
  if (absl::Status s = ValidatePoolOptions(options); !s.ok()) return s;
  static_assert(alloc::kMaxHandleIndex == Handle::kIndexMask, "the back-map holds any handle index");
  os::Os& the_os = options.os != nullptr ? *options.os : os::SystemOs();
  auto impl = std::make_unique<Impl>(g_next_pool_id.fetch_add(1), options, the_os);
  if (impl->map.num_classes() > alloc::PageOwner::kMaxClasses) {
    return absl::InternalError("more size classes than the page map can name");
  }
  absl::StatusOr<std::unique_ptr<alloc::Arena>> arena = alloc::Arena::Create(
      the_os, alloc::ArenaOptions{options.arena_capacity, options.memory_limit, options.decay,
                                  // Checked mode watches the arena for stale touches (its own userfaultfd
                                  // registration: moves copy).
                                  compactor::MoveEngineOptions{
                                      .use_userfaultfd = options.move_by_userfaultfd && !options.checked,
                                      .use_remap = options.move_by_mremap && !options.checked,
                                      .zero_copy_min = options.zero_copy_min},
                                  /*watch_missing_pages=*/options.checked});
  if (!arena.ok()) return arena.status();
  impl->arena = std::move(*arena);
  absl::StatusOr<std::unique_ptr<alloc::PageMap>> page_map =
      alloc::PageMap::Create(the_os, impl->arena->capacity().value() >> kPageShift);
  if (!page_map.ok()) return page_map.status();
  impl->page_map = std::move(*page_map);
  // The map of regions the pool no longer uses goes back with the arena's discards.
  if (absl::Status s = impl->arena->AttachRegionShadow(impl->page_map->memory(),
                                                        Bytes(alloc::kPagesPerRegion * alloc::PageMap::kBytesPerPage));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::unique_ptr<handles::HandleTable>> table = handles::HandleTable::Create(the_os, options.max_handles, PoolSalt(impl->id));
  if (!table.ok()) return table.status();
  impl->table = std::move(*table);
  impl->records = std::make_unique<handles::AccessRecords>(the_os);
  impl->old_copies = std::make_unique<alloc::OldCopies>(*impl->records, *impl->arena);
  Impl* const made = impl.get();
  impl->classes = std::make_unique<alloc::SizeClasses>(impl->map.num_classes(), [made](ClassId cls) {
    auto c = std::make_unique<alloc::SizeClass>(cls, made->map.info(cls), *made->arena, *made->page_map,
                                                *made->table, *made->records, *made->old_copies,
                                                made->block_driver.get());
    c->set_vacated_log(made->vacated.get());  // null unless the arena is watched (made before any class)
    return c;
  });
  impl->block_driver = std::make_unique<alloc::PoolBlockDriver>(*impl->old_copies, *impl->classes);
  impl->huge_driver = std::make_unique<alloc::PoolHugeDriver>(*impl->arena, *impl->page_map, *impl->table,
                                                             *impl->records, *impl->old_copies);
  if (impl->arena->fault_uffd() >= 0) {
    impl->vacated = std::make_unique<alloc::VacatedLog>();
    impl->huge_driver->set_vacated_log(impl->vacated.get());
    Impl* self = impl.get();
    impl->watch = std::make_unique<alloc::StaleTouchWatch>(
        the_os, impl->arena->fault_uffd(), [self](std::uintptr_t a) { return self->DescribeStaleTouch(a); });
  }
  auto pool = std::unique_ptr<Pool>(new Pool(std::move(impl)));
  if (!options.include_in_core_dumps) {
    // Tens of GiB of reserved address space would otherwise be walked by every core dump.
    for (const AddressRange& r : pool->reserved_ranges()) {
      if (absl::Status s = the_os.ExcludeFromCoreDumps(const_cast<std::byte*>(r.start), Bytes(r.size)); !s.ok()) {
        return s;
      }
    }
  }
  {
    MutexLock lock(&g_registry_mu);
    LivePools()[pool->impl_->id] = pool->impl_.get();
  }
  if (options.background_interval.count() > 0) {
    Pool* self = pool.get();
    // The pass in progress: only the background thread reads or writes it.
    auto pass = std::make_shared<Impl::BackgroundPass>();
    self->impl_->background = std::make_unique<alloc::BackgroundCompactor>(
        alloc::BackgroundPacing{absl::FromChrono(options.background_interval), options.background_cpu_percent},
        [self, pass] {
          *pass = Impl::BackgroundPass{};
          pass->reason = self->impl_->ReasonForAPass();
          return pass->reason != Impl::BackgroundReason::kNone;
        },
        [self, pass, budget = PassBudget{options.background_cycle}] { return BackgroundCycle(*self, *pass, budget); });
  }
  return pool;
}

Pool::Pool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pool::~Pool() {
  // PoolOptions::show_stats (MOVA_SHOW_STATS): the pool's stats on stderr when it goes, as mimalloc's
  // MIMALLOC_SHOW_STATS does.
  if (impl_->options.show_stats != StatsOutput::kNone) {
    const PoolStats s = stats();
    const std::string text = impl_->options.show_stats == StatsOutput::kJson ? FormatStatsJson(s) : FormatStatsText(s);
    std::fprintf(stderr, "mova: stats of pool %llu at its destruction\n%s\n", static_cast<unsigned long long>(impl_->id),
                 text.c_str());
  }
}

namespace {

// The whole allocate: any size, refills, huge objects, errors.
[[gnu::noinline]] absl::StatusOr<Handle> AllocateSlow(Pool::Impl& p, std::size_t size) {
  if (ABSL_PREDICT_FALSE(size == 0)) return absl::InvalidArgumentError("allocate: size 0");
  if (ABSL_PREDICT_FALSE(size > Pool::kMaxObjectSize)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("allocate: size %u exceeds the maximum %u", size, Pool::kMaxObjectSize));
  }
  CacheScope scope(p);
  ThreadCache& c = *scope;
  if (ABSL_PREDICT_FALSE(c.handles.count.load(std::memory_order_relaxed) == 0)) {
    if (absl::Status s = p.RefillHandles(c); !s.ok()) return s;
  }
  const std::uint32_t index = c.handles.items[c.handles.count.load(std::memory_order_relaxed) - 1];
  std::uint64_t offset;
  if (ABSL_PREDICT_FALSE(size > alloc::kMaxClassSize)) {
    absl::StatusOr<std::uint64_t> off = p.AllocateHuge(size, index);
    if (!off.ok() && p.ReclaimForAllocation(off.status())) off = p.AllocateHuge(size, index);
    if (!off.ok()) return off.status();
    offset = *off;
  } else {
    const ClassId cls = p.map.ClassFor(size);
    if (ABSL_PREDICT_FALSE(c.classes[cls.value()].count.load(std::memory_order_relaxed) == 0)) {
      bool made_block = false;
      absl::Status s = p.RefillSlots(c, cls, &made_block);
      if (!s.ok() && p.ReclaimForAllocation(s)) s = p.RefillSlots(c, cls, &made_block);
      if (!s.ok()) return s;
      if (ABSL_PREDICT_FALSE(made_block)) p.MaybeCompactDirectly();
    }
    offset = p.PopSlot(c, cls, index);
  }
  c.handles.count.store(c.handles.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  return p.PublishNew(c, index, offset, size);
}

// The whole free: huge objects, pins, races with movers, flushes, last lives, checked mode, errors.
[[gnu::noinline]] absl::Status FreeSlow(Pool::Impl& p, Handle h, const HandleCell* via) {
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return p.NotIssued("free", h, via);
  CacheScope scope(p);
  ThreadCache& c = *scope;
  // Announced in this thread's record: from BeginRetire to EndRetire the object cannot move, so the size
  // field is checked against where the object is.
  Pool::Impl::Located at;
  for (;;) {
    handles::Word w;
    switch (handles::BeginRetire(*r.entry, r.gen, *c.record, handles::TagOf(h.index()), *p.records,
                                 /*all_records=*/p.options.checked, &w)) {
      case handles::EntryResult::kOk:
        break;
      case handles::EntryResult::kPinned:
        return p.Misuse(absl::FailedPreconditionError(
            absl::StrFormat("free: handle %#x: the object is pinned; unpin it before freeing", h.raw)));
      default:
        return p.Rejected("free", h, via);
    }
    const std::uint64_t offset = handles::OffsetOf(w);
    at = p.Locate(offset);
    if (ABSL_PREDICT_FALSE(!p.SizeFieldMatches(h, offset, at))) {
      handles::AbandonRetire(*c.record);
      return p.NotIssued("free", h, via);
    }
    if (ABSL_PREDICT_FALSE(p.options.checked)) {
      if (absl::Status s = p.CheckDescriptor("free", h, at); !s.ok()) {
        handles::AbandonRetire(*c.record);
        return s;
      }
    }
    if (handles::EndRetire(*r.entry, w, *c.record)) [[likely]] break;
  }
  const std::size_t size = Pool::Impl::SizeOf(h, at);
  if (ABSL_PREDICT_FALSE(p.vacated != nullptr)) {
    p.vacated->Freed(at.huge != nullptr ? at.huge->data_offset() : at.block->SlotOffset(at.slot),
                     at.huge != nullptr ? size : at.block->slot_size, h.raw);
  }
  if (ABSL_PREDICT_FALSE(at.huge != nullptr)) {
    p.FreeHuge(at.huge);
  } else {
    // The slot's owner word keeps the retired index until the slot is returned to its block: compaction
    // reads it as "not movable" (the entry no longer points here), exactly like kSlotReserved.
    p.PushSlot(c, at.cls, alloc::PackSlot(at.block, at.slot));
  }
  if (ABSL_PREDICT_FALSE(handles::IsLastLife(r.gen))) {
    const std::uint32_t index = h.index();
    p.table->Return(std::span<const std::uint32_t>(&index, 1));  // it rests there
  } else {
    p.PushHandle(c, h.index());
  }
  c.frees.Add(1);
  c.free_bytes.Add(size);
  return absl::OkStatus();
}

}  // namespace

// The common allocate, inline: this thread used this pool last, its cache holds a slot of the class and a
// handle entry, and no flush is due. Loads and plain stores to the thread's own lines, the slot's back-map
// and the entry; anything else goes to AllocateSlow before anything is changed.
absl::StatusOr<Handle> Pool::allocate(std::size_t size) {
  Impl& p = *impl_;
  if (ABSL_PREDICT_FALSE(size - 1 >= alloc::kMaxClassSize)) return AllocateSlow(p, size);  // 0, huge, too big
  if (ABSL_PREDICT_FALSE(tls_last.pool_id != p.id)) return AllocateSlow(p, size);
  ThreadCache& c = *tls_last.cache;
  const ClassId cls = p.map.ClassFor(size);
  alloc::ClassSlots& cs = c.classes[cls.value()];
  const std::uint32_t n = cs.count.load(std::memory_order_relaxed);
  const std::uint32_t hn = c.handles.count.load(std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE((n == 0) | (hn == 0) | (c.epoch != p.flush_epoch.load(std::memory_order_relaxed)))) {
    return AllocateSlow(p, size);
  }
  const std::uint32_t index = c.handles.items[hn - 1];
  c.handles.count.store(hn - 1, std::memory_order_relaxed);
  return p.PublishNew(c, index, p.PopSlot(c, cls, index), size);
}

namespace {

// The common free, inline: a class object of a handle that opens, freed by a thread whose cache for this
// pool is warm, has room for the slot and the entry, and owes no flush; the entry not pinned, not moving and
// not in its last life; not checked mode. Nothing is changed until the retiring CAS succeeds, so anything
// else (or a lost CAS) sends the call to FreeSlow from the start.
[[gnu::always_inline]] inline absl::Status FreeFast(Pool::Impl& p, Handle h, const HandleCell* via) {
  if (ABSL_PREDICT_FALSE(tls_last.pool_id != p.id)) return FreeSlow(p, h, via);
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return FreeSlow(p, h, via);
  ThreadCache& c = *tls_last.cache;
  const std::uint32_t hn = c.handles.count.load(std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE((hn == c.handles.size.capacity) | handles::IsLastLife(r.gen) |
                         (h.size_field() == Handle::kHugeSize) | p.options.checked |
                         (c.epoch != p.flush_epoch.load(std::memory_order_relaxed)))) {
    return FreeSlow(p, h, via);
  }
  const std::uint32_t index = h.index();
  handles::Word w;
  if (!handles::TryBeginRetire(*r.entry, r.gen, *c.record, handles::TagOf(index), *p.records, &w)) {
    return FreeSlow(p, h, via);
  }
  const Pool::Impl::Located at = p.Locate(handles::OffsetOf(w));
  alloc::ClassSlots* cs = nullptr;
  std::uint32_t n = 0;
  if (ABSL_PREDICT_TRUE(at.block != nullptr && p.map.ClassFor(std::size_t{h.size_field()} + 1) == at.cls)) {
    cs = &c.classes[at.cls.value()];
    n = cs->count.load(std::memory_order_relaxed);
  }
  // A class not yet cached by this thread has capacity 0, so a full cache and a missing array are one test.
  if (ABSL_PREDICT_FALSE(cs == nullptr || n == cs->size.capacity)) {
    handles::AbandonRetire(*c.record);
    return FreeSlow(p, h, via);
  }
  if (ABSL_PREDICT_FALSE(!handles::EndRetire(*r.entry, w, *c.record))) return FreeSlow(p, h, via);
  // The slot's owner word keeps the retired index until the slot is returned to its block: compaction
  // reads it as "not movable" (the entry no longer points here), exactly like kSlotReserved.
  cs->items[n] = alloc::PackSlot(at.block, at.slot);
  cs->count.store(n + 1, std::memory_order_relaxed);
  c.handles.items[hn] = index;
  c.handles.count.store(hn + 1, std::memory_order_relaxed);
  c.frees.Add(1);
  c.free_bytes.Add(std::size_t{h.size_field()} + 1);
  return absl::OkStatus();
}

// The whole pin: huge objects, waits for movers, saturation, checked mode, errors.
[[gnu::noinline]] absl::StatusOr<Pinned> PinSlow(Pool::Impl& p, Handle h, Access access, const HandleCell* via) {
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return p.NotIssued("pin", h, via);
  return p.PinCounted(h, r, access, via);
}

}  // namespace

absl::Status Pool::free(Handle h) { return FreeFast(*impl_, h, nullptr); }

// The whole pin_owned: as PinSlow, and a thread whose record has no free pin slot counts the pin instead.
absl::StatusOr<Pinned> Pool::Impl::PinOwnedSlow(Handle h, Access access, const HandleCell* via) {
  Impl& p = *this;
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return p.NotIssued("pin", h, via);
  CacheScope scope(p);
  handles::AccessRecord& rec = *(*scope).record;
  std::atomic<handles::Tag>* slot = rec.FreePinSlot();
  if (ABSL_PREDICT_FALSE(slot == nullptr)) return p.PinCounted(h, r, access, via);  // this thread holds many pins
  handles::Word w;
  if (handles::PinInRecord(*r.entry, r.gen, rec, *slot, handles::TagOf(h.index()), *p.records, &w) !=
      handles::EntryResult::kOk) {
    return p.Rejected("pin", h, via);
  }
  const std::uint64_t offset = handles::OffsetOf(w);
  const Located at = p.Locate(offset);
  if (ABSL_PREDICT_FALSE(!p.SizeFieldMatches(h, offset, at))) {
    handles::UnpinRecord(*slot);
    return p.NotIssued("pin", h, via);
  }
  if (ABSL_PREDICT_FALSE(p.options.checked)) {
    if (absl::Status s = p.CheckDescriptor("pin", h, at); !s.ok()) {
      handles::UnpinRecord(*slot);
      return s;
    }
  }
  return Pinned(slot, nullptr, p.arena->base() + offset, SizeOf(h, at), access);
}

// The common pin, inline: a class object of a handle that opens, not moving, not saturated, not checked
// mode: one CAS. Anything else goes to PinSlow with nothing changed.
namespace {

[[gnu::always_inline]] inline absl::StatusOr<Pinned> PinFast(Pool::Impl& p, Handle h, Access access,
                                                              const HandleCell* via) {
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE((r.entry == nullptr) | (h.size_field() == Handle::kHugeSize) | p.options.checked)) {
    return PinSlow(p, h, access, via);
  }
  handles::Word w;
  if (ABSL_PREDICT_FALSE(!handles::TryPinCounted(*r.entry, r.gen, &w))) return PinSlow(p, h, access, via);
  const std::uint64_t offset = handles::OffsetOf(w);
  if (ABSL_PREDICT_FALSE(!p.InClassOfSizeField(h, offset))) {
    handles::UnpinCounted(*r.entry);
    return PinSlow(p, h, access, via);
  }
  return Pool::Impl::MakePinned(nullptr, r.entry, p.arena->base() + offset, std::size_t{h.size_field()} + 1, access);
}

}  // namespace

absl::StatusOr<Pinned> Pool::pin(Handle h, Access access) { return PinFast(*impl_, h, access, nullptr); }

// The common pin_owned, inline: as pin's, through a free slot of the record of a thread that used this pool
// last: stores to the thread's own line and loads. Anything else goes to PinOwnedSlow with nothing changed.
namespace {

[[gnu::always_inline]] inline absl::StatusOr<Pinned> PinOwnedFast(Pool::Impl& p, Handle h, Access access,
                                                                   const HandleCell* via) {
  if (ABSL_PREDICT_FALSE(tls_last.pool_id != p.id)) return p.PinOwnedSlow(h, access, via);
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE((r.entry == nullptr) | (h.size_field() == Handle::kHugeSize) | p.options.checked)) {
    return p.PinOwnedSlow(h, access, via);
  }
  handles::AccessRecord& rec = *tls_last.cache->record;
  std::atomic<handles::Tag>* slot = rec.FreePinSlot();
  handles::Word w;
  if (ABSL_PREDICT_FALSE(slot == nullptr ||
                         !handles::TryPinInRecord(*r.entry, r.gen, rec, *slot, handles::TagOf(h.index()),
                                                  *p.records, &w))) {
    return p.PinOwnedSlow(h, access, via);
  }
  const std::uint64_t offset = handles::OffsetOf(w);
  if (ABSL_PREDICT_FALSE(!p.InClassOfSizeField(h, offset))) {
    handles::UnpinRecord(*slot);
    return p.PinOwnedSlow(h, access, via);
  }
  return Pool::Impl::MakePinned(slot, nullptr, p.arena->base() + offset, std::size_t{h.size_field()} + 1, access);
}

}  // namespace

absl::StatusOr<Pinned> Pool::pin_owned(Handle h, Access access) { return PinOwnedFast(*impl_, h, access, nullptr); }

// ---- read sections ----

ReadGuard Pool::read_section() {
  Impl& p = *impl_;
  if (ABSL_PREDICT_FALSE(!p.old_copies->keeping())) p.StartKeepingOldCopies();
  handles::AccessRecord* rec;
  if (ABSL_PREDICT_TRUE(tls_last.pool_id == p.id)) {
    rec = tls_last.cache->record;
  } else {
    if (tls_exited) return ReadGuard();  // no record outlives this call: an ended section (reads fail)
    bool temporary = false;
    rec = p.SlowCache(&temporary)->record;
  }
  p.records->EnterRead(*rec);
  return ReadGuard(&p, rec);
}

void ReadGuard::End() {
  impl_->records->ExitRead(*record_);
  impl_ = nullptr;
  record_ = nullptr;
}

namespace {

// The common read, inline: a class object of a handle that opens, live, not checked mode: loads only.
// Anything else goes to ReadSlow.
[[gnu::always_inline]] inline absl::StatusOr<std::span<const std::byte>> ReadFast(Pool::Impl& p, Handle h,
                                                                                 const HandleCell* via) {
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE((r.entry == nullptr) | (h.size_field() == Handle::kHugeSize) | p.options.checked)) {
    return p.ReadSlow(h, via);
  }
  handles::Word w;
  if (ABSL_PREDICT_FALSE(!handles::TryRead(*r.entry, r.gen, &w))) return p.ReadSlow(h, via);
  const std::uint64_t offset = handles::OffsetOf(w);
  if (ABSL_PREDICT_FALSE(!p.InClassOfSizeField(h, offset))) return p.ReadSlow(h, via);
  return std::span<const std::byte>(p.arena->base() + offset, std::size_t{h.size_field()} + 1);
}

absl::Status EndedSection() { return absl::FailedPreconditionError("read: the read section has ended"); }

}  // namespace

absl::StatusOr<std::span<const std::byte>> ReadGuard::read(Handle h) const {
  if (ABSL_PREDICT_FALSE(impl_ == nullptr)) return EndedSection();
  return ReadFast(*impl_, h, nullptr);
}

absl::StatusOr<std::span<const std::byte>> ReadGuard::read(const HandleCell& cell) const {
  if (ABSL_PREDICT_FALSE(impl_ == nullptr)) return EndedSection();
  Pool::Impl& p = *impl_;
  return Pool::Impl::ThroughCell(cell, [&](Handle h, const HandleCell* via) __attribute__((always_inline)) {
    return ReadFast(p, h, via);
  });
}

// ---- through cells (mova/handle_owner.h): a call refused because the cell moved on starts again ----

absl::StatusOr<Pinned> Pool::pin(const HandleCell& cell, Access access) {
  Impl& p = *impl_;
  return Impl::ThroughCell(cell, [&](Handle h, const HandleCell* via) __attribute__((always_inline)) {
    return PinFast(p, h, access, via);
  });
}

absl::StatusOr<Pinned> Pool::pin_owned(const HandleCell& cell, Access access) {
  Impl& p = *impl_;
  return Impl::ThroughCell(cell, [&](Handle h, const HandleCell* via) __attribute__((always_inline)) {
    return PinOwnedFast(p, h, access, via);
  });
}

// A plain store of the null handle after a free: once the entry is retired no compactor can claim it, so none
// rewrites the cell after this (a compactor that claimed it first made the free wait, then start again).
absl::Status Pool::free(HandleCell& cell) {
  Impl& p = *impl_;
  absl::Status s = Impl::ThroughCell(cell, [&](Handle h, const HandleCell* via) __attribute__((always_inline)) {
    return FreeFast(p, h, via);
  });
  if (ABSL_PREDICT_TRUE(s.ok())) cell.store(kNullHandle);
  return s;
}

void Pinned::DropCountedPin(std::atomic<std::uint64_t>* entry) { handles::UnpinCounted(*entry); }

namespace {

// size_of's answer from a read pin of the object.
absl::StatusOr<std::size_t> SizeOfPinned(const absl::StatusOr<Pinned>& pinned) {
  if (!pinned.ok()) return pinned.status();
  return pinned->size();
}

}  // namespace

absl::StatusOr<std::size_t> Pool::size_of(Handle h) { return SizeOfPinned(pin(h, Access::kRead)); }
absl::StatusOr<std::size_t> Pool::size_of(const HandleCell& cell) { return SizeOfPinned(pin(cell, Access::kRead)); }

absl::StatusOr<std::span<std::byte>> Pool::pin_detached(Handle h, Access access) {
  Impl& p = *impl_;
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return p.NotIssued("pin_detached", h);
  absl::StatusOr<Pinned> pinned = p.PinCounted(h, r, access);  // unpin(h) may come from any thread
  if (!pinned.ok()) return pinned.status();
  {
    MutexLock lock(&p.detached_mu);
    ++p.detached[h.index()];
  }
  const std::span<std::byte> bytes(const_cast<std::byte*>(pinned->data()), pinned->size());
  pinned->entry_ = nullptr;  // the pin stays; the ledger owes it to unpin(h)
  return bytes;
}

absl::Status Pool::unpin(Handle h) {
  Impl& p = *impl_;
  const handles::HandleRef r = p.Resolve(h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return p.NotIssued("unpin", h);
  const handles::Word w = r.entry->load(std::memory_order_acquire);
  if (handles::GenOf(w) != r.gen) return p.Rejected("unpin", h);
  {
    // A pin recorded here keeps the object live and its generation r.gen until it is dropped below.
    MutexLock lock(&p.detached_mu);
    auto it = p.detached.find(h.index());
    if (it == p.detached.end()) {
      return p.Misuse(absl::FailedPreconditionError(absl::StrFormat(
          "unpin: handle %#x holds no pin taken by pin_detached (a Pinned's pin is dropped by the Pinned)", h.raw)));
    }
    if (--it->second == 0) p.detached.erase(it);
  }
  handles::UnpinCounted(*r.entry);
  return absl::OkStatus();
}

std::byte* Pinned::mutable_data() const {
  if (access_ == Access::kRead) {
    std::fprintf(stderr, "mova: mutable_data() on an object pinned with Access::kRead\n");
    std::abort();
  }
  return data_;
}

void Pool::Impl::RecallThreadCaches() {
  flush_epoch.fetch_add(1, std::memory_order_relaxed);
  CacheScope scope(*this);
  Flush(*scope);
}

namespace {

// When a compact() or defragment() call that started at `start` with `budget` stops: a budgeted call moves
// for the first half of its budget and discards what it freed in the rest (Arena::DeferDiscards); an
// unbudgeted one has no deadline.
struct CallDeadlines {
  explicit CallDeadlines(PassBudget budget, absl::Time start)
      : budgeted(budget.time.count() > 0),
        end(budgeted ? start + absl::FromChrono(budget.time) : absl::InfiniteFuture()),
        moves(budgeted ? start + absl::FromChrono(budget.time) / 2 : absl::InfiniteFuture()) {}
  const bool budgeted;
  const absl::Time end;
  const absl::Time moves;
};

// Ends a call's deferred discards (made progress: it moved something). A budgeted call whose moves are
// complete but whose discards are not is not complete either, and `*pending` tells the next call to discard
// before it moves again.
void FinishDiscards(alloc::Arena::DeferDiscards& defer, bool made_progress, const CallDeadlines& d,
                    bool* complete, bool* pending) {
  const bool discarded_all = defer.Finish(made_progress);
  *pending = d.budgeted && *complete && !discarded_all;
  if (*pending) *complete = false;
}

}  // namespace

CompactResult Pool::compact() { return compact(PassBudget{}); }

CompactResult Pool::compact(PassBudget budget) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);
  const absl::Time start = absl::Now();
  const CallDeadlines deadlines(budget, start);
  // Once a pass: a budgeted call that goes on with one does not make every thread give its cache back again
  // (each recall costs the threads a flush and refills under the class locks the pass takes).
  if (p.next_compact_class == 0 && !p.compact_discards_pending) p.RecallThreadCaches();
  CompactResult r;
  {
    // Emptied blocks go back to the OS together at the end, in a few batched calls, whatever the decay; what a
    // budgeted call could not discard, the next calls do before they move anything again.
    alloc::Arena::DeferDiscards defer(*p.arena, deadlines.end);
    // A budgeted call that left discards behind makes them before it moves anything again.
    if (!(deadlines.budgeted && p.compact_discards_pending)) p.CompactClasses(deadlines.moves, r, p.next_compact_class);
    // Old copies no read section holds now: the blocks they empty are this call's to release (and discard below).
    const Impl::Reclaimed back = p.ReclaimOldCopies(/*pressed=*/false);
    r.blocks_released += back.blocks_released;
    r.pages_released += back.pages_released;
    FinishDiscards(defer, /*made_progress=*/r.objects_moved > 0, deadlines, &r.complete, &p.compact_discards_pending);
  }
  // A whole pass also compacts the handle table (owned entries; one visit of every owner's cells).
  if (r.complete && !deadlines.budgeted) {
    const HandleCompactResult h = p.CompactHandles(PassBudget{});
    r.handles_migrated = h.entries_migrated;
    r.handle_pages_released = h.pages_released;
  }
  p.table->ReleaseSpare();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  p.objects_moved.fetch_add(r.objects_moved, std::memory_order_relaxed);
  p.bytes_moved.fetch_add(r.bytes_moved, std::memory_order_relaxed);
  p.pages_compacted.fetch_add(r.pages_released, std::memory_order_relaxed);
  // Last, and released: a stats() reader that sees this compaction counted sees what it moved too.
  p.compactions.fetch_add(1, std::memory_order_release);
  return r;
}

HandleCompactResult Pool::Impl::CompactHandles(PassBudget budget) {
  const absl::Time start = absl::Now();
  const CallDeadlines deadlines(budget, start);
  const absl::Time deadline = deadlines.end;
  HandleCompactResult r;
  handle_compactions.fetch_add(1, std::memory_order_relaxed);
  if (owners.empty()) return r;
  // Which pages' live entries the owners could move: a count per page of the owned handles in them, which
  // budgeted calls make across calls (alloc/owned_handle_count.h); an unbudgeted call counts afresh.
  if (!deadlines.budgeted) owned_count.Reset();
  const alloc::OwnedHandleCount::Progress counted = owned_count.Count(owners, *table, deadline);
  r.cells_counted = counted.cells;
  if (!counted.complete) {
    r.complete = false;
    r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    return r;
  }
  r.cells_owned = owned_count.cells_owned();
  handles_owned.store(r.cells_owned, std::memory_order_relaxed);
  // Cached entries go back to the table, so that a page's entries in use are its live handles.
  RecallThreadCaches();
  // The calls of one sequence plan from the same count: the pages emptied meanwhile are no longer resident,
  // those that took entries are dense, and the sparse pages left are counted as they were.
  const std::vector<std::uint32_t> plan = table->PlanEvacuation(owned_count.per_page());
  r.pages_evacuated = plan.size();
  if (!plan.empty()) {
    table->BeginEvacuation(plan);
    handles::EntryMigrator m(*table, *records,
                             [this](std::uint64_t offset, std::uint32_t index) { Rebind(offset, index); });
    for (HandleOwner* o : owners) {
      o->VisitCells([&](std::span<HandleCell* const> cells) {
        // Out of budget after something moved: the rest of the cells are passed over (the next call plans
        // again). What emptied so far is given back below all the same. Only after a move, so that every
        // incomplete call made progress (an owner that answers kFail to everything gets complete calls).
        if (!r.complete || (m.stats().migrated > 0 && absl::Now() >= deadline)) {
          r.complete = false;
          return;
        }
        m.Migrate(*o, cells);
      });
    }
    r.pages_released = table->EndEvacuation();
    const handles::EntryMigrationStats& st = m.stats();
    r.entries_isolated = st.isolated;
    r.isolate_failed = st.isolate_failed;
    r.entries_migrated = st.migrated;
    r.freed_while_isolated = st.freed_while_isolated;
    r.again = st.again;
    r.put_back = st.put_back;
    handles_migrated.fetch_add(st.migrated, std::memory_order_relaxed);
    handles_freed_while_isolated.fetch_add(st.freed_while_isolated, std::memory_order_relaxed);
    handle_isolate_failed.fetch_add(st.isolate_failed, std::memory_order_relaxed);
    handles_put_back.fetch_add(st.put_back, std::memory_order_relaxed);
  }
  table->ReleaseSpare();
  if (r.complete) owned_count.Reset();  // the sequence is over: the next call counts afresh
  const bool futile = r.complete && r.pages_released == 0;
  futile_table_state.store(futile ? TableState(table->stats()) : ~0ull, std::memory_order_relaxed);
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

HandleCompactResult Pool::compact_handles() { return compact_handles(PassBudget{}); }

HandleCompactResult Pool::compact_handles(PassBudget budget) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);
  return p.CompactHandles(budget);
}

void Pool::register_owner(HandleOwner& owner) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);
  if (std::find(p.owners.begin(), p.owners.end(), &owner) == p.owners.end()) p.owners.push_back(&owner);
  p.owner_count.store(p.owners.size(), std::memory_order_relaxed);
  p.owned_count.Reset();
}

void Pool::unregister_owner(HandleOwner& owner) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);  // no compaction visits it after this returns
  std::erase(p.owners, &owner);
  p.owner_count.store(p.owners.size(), std::memory_order_relaxed);
  p.owned_count.Reset();
}

std::vector<Pool::AddressRange> Pool::reserved_ranges() const {
  const Impl& p = *impl_;
  return {
      {p.arena->base(), p.arena->capacity().value(), "objects"},
      {reinterpret_cast<const std::byte*>(&p.table->entry(0)), std::size_t{p.table->capacity()} * sizeof(handles::Word),
       "handle table"},
      {p.table->keys_base(), p.table->keys_bytes().value(), "handle keys"},
      {p.table->states_base(), p.table->states_reserved_bytes().value(), "handle page states"},
      {p.table->records_base(), p.table->records_reserved_bytes().value(), "handle page records"},
      {p.page_map->base(), p.page_map->reserved_bytes().value(), "page map"},
  };
}

DefragResult Pool::defragment() { return defragment(PassBudget{}); }

DefragResult Pool::defragment(PassBudget budget) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);
  const absl::Time start = absl::Now();
  const CallDeadlines deadlines(budget, start);
  // Cached slots keep their blocks in place: once a pass, as compact() does.
  if (p.next_defrag_region == 0 && !p.defrag_discards_pending) p.RecallThreadCaches();
  const compactor::MigrationStats before = p.migrator.stats();
  const compactor::MoveEngineStats moves_before = p.arena->move_stats();
  auto pages_migrated = [&p] {
    std::uint64_t n = p.huge_driver->pages_migrated();
    p.classes->ForEachMade([&](const alloc::SizeClass& cls) { n += cls.pages_migrated(); });
    return n;
  };
  const std::uint64_t pages_before = pages_migrated();
  const std::vector<std::uint32_t> usage_before = p.arena->RegionUsage();
  // Runs given back (copied-from blocks, targets of failed moves) go to the OS together at the end, as in
  // compact().
  alloc::Arena::DeferDiscards defer(*p.arena, deadlines.end);
  alloc::LowerRegionTargets block_targets(*p.arena, compactor::MoveKind::kBlock,
                                         [](compactor::MovableBlock& m) { return alloc::BlockOfMovable(m)->run(); });
  alloc::LowerRegionTargets huge_targets(*p.arena, compactor::MoveKind::kRun,
                                        [](compactor::MovableBlock& m) { return alloc::HugeOfMovable(m)->run; });
  DefragResult r;
  // The migrate scanner walks regions from the top down to the first `needed` regions, which could hold every
  // page in use (moving blocks among those frees no region); the free scanner (LowerRegionTargets) finds room
  // below each block or huge object.
  const std::size_t needed = compactor::RegionsNeeded(usage_before, alloc::kPagesPerRegion);
  // A call that ran out of budget left a cursor: the next one goes on below it (a region whose blocks cannot
  // move now, pinned or without room below, is not scanned again and again).
  std::size_t top = deadlines.budgeted && p.defrag_discards_pending ? needed : usage_before.size();
  std::uint64_t resume_page = 0;  // where the scan of region top - 1 starts
  if (p.next_defrag_region > 0 && p.next_defrag_region <= top) {
    top = p.next_defrag_region;
    resume_page = p.next_defrag_page;
  }
  p.next_defrag_region = 0;
  p.next_defrag_page = 0;
  bool stopped = false, stepped = false;  // stepped: this call made a step (at least one a call)
  for (std::size_t region = top; !stopped && region-- > needed;) {
    if (usage_before[region] == 0) continue;
    const std::uint64_t first = region * alloc::kPagesPerRegion, end = first + alloc::kPagesPerRegion;
    std::uint64_t page = first + (region + 1 == top ? resume_page : 0);
    // A step of kDefragStepPages at a time, the budget looked at before each.
    bool counted = false;  // this region is in regions_scanned
    while (page < end) {
      if (stepped && absl::Now() >= deadlines.moves) {
        r.complete = false;
        p.next_defrag_region = region + 1;
        p.next_defrag_page = page - first;
        stopped = true;
        break;
      }
      if (!counted) {
        ++r.regions_scanned;
        counted = true;
      }
      std::vector<compactor::MovableBlock*> blocks, huge;
      for (const std::uint64_t step_end = std::min(end, page + Impl::kDefragStepPages); page < step_end; ++page) {
        const alloc::PageOwner o = p.page_map->Get(page);
        if (!o.present() || o.page_in_block() != 0) continue;
        void* at = p.arena->PageAddress(static_cast<std::uint32_t>(page));
        if (o.huge()) {
          auto* h = static_cast<alloc::HugeObject*>(at);
          MutexLock huge_lock(&p.huge_mu);  // the run cannot be released while it is validated and isolated
          if (p.page_map->Get(page).huge() && h->magic == alloc::kBlockMagic && h->run.first == page &&
              p.migrator.Isolate(h->movable, compactor::MigrateMode::kSyncLight)) {
            huge.push_back(&h->movable);
          }
          continue;
        }
        alloc::SizeClass& cls = p.classes->Get(o.cls());
        auto* b = static_cast<Block*>(at);
        MutexLock class_lock(&cls.mu());  // the block cannot be released while it is validated and isolated
        if (cls.LiveBlockAt(b) && p.migrator.Isolate(b->movable, compactor::MigrateMode::kSyncLight)) {
          blocks.push_back(&b->movable);
        }
      }
      if (!blocks.empty()) {
        r.blocks_migrated += p.migrator.Migrate(blocks, block_targets, compactor::MigrateMode::kSyncLight);
      }
      if (!huge.empty()) {
        const std::size_t n = p.migrator.Migrate(huge, huge_targets, compactor::MigrateMode::kSyncLight);
        r.huge_migrated += n;
        r.blocks_migrated += n;
      }
      // With read sections, the blocks this step moved keep their old runs until no section can read them:
      // given back now if none does, so that the next steps reuse those pages instead of populating fresh ones.
      p.ReclaimOldCopies(/*pressed=*/false);
      stepped = true;
    }
  }
  p.ReclaimOldCopies(/*pressed=*/false);  // those a section held at a step's end, if it has ended since
  r.regions_freed = compactor::RegionsFreed(usage_before, p.arena->RegionUsage());
  FinishDiscards(defer, /*made_progress=*/r.blocks_migrated > 0, deadlines, &r.complete, &p.defrag_discards_pending);
  if (p.options.collapse_dense_regions) r.regions_collapsed = p.arena->CollapseFullRegions().collapsed;
  const compactor::MigrationStats after = p.migrator.stats();
  const compactor::MoveEngineStats moves_after = p.arena->move_stats();
  r.blocks_isolated = after.isolated - before.isolated;
  r.isolate_failed = after.isolate_failed - before.isolate_failed;
  r.blocks_failed = after.failed - before.failed;
  r.pages_moved = pages_migrated() - pages_before;
  r.moves_uffd = moves_after.uffd_moves - moves_before.uffd_moves;
  r.moves_mremap = moves_after.remap_moves - moves_before.remap_moves;
  r.moves_copy = moves_after.copy_moves - moves_before.copy_moves;
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  p.defrag_runs.fetch_add(1, std::memory_order_relaxed);
  p.regions_freed.fetch_add(r.regions_freed, std::memory_order_relaxed);
  p.huge_migrated.fetch_add(r.huge_migrated, std::memory_order_relaxed);
  return r;
}

absl::StatusOr<RelocateResult> Pool::relocate(std::span<const Handle> handles, std::span<RelocateOutcome> outcomes) {
  Impl& p = *impl_;
  if (handles.size() != outcomes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("relocate: %u handles, but room for %u outcomes",
                                                      handles.size(), outcomes.size()));
  }
  MutexLock lock(&p.compact_mu);
  const absl::Time start = absl::Now();
  // Setup's first half: every handle validated as any entry point validates it, and the class objects listed
  // by class in the caller's order.
  std::vector<std::vector<alloc::RelocateItem>> by_class(p.classes->size());
  absl::flat_hash_set<std::uint32_t> named;
  for (std::size_t i = 0; i < handles.size(); ++i) {
    const Handle h = handles[i];
    RelocateOutcome& o = outcomes[i];
    const handles::HandleRef ref = p.Resolve(h);
    const handles::Word w = ref.entry != nullptr ? ref.entry->load(std::memory_order_acquire) : 0;
    if (ref.entry == nullptr || handles::GenOf(w) != ref.gen) {
      // Classified as every entry point classifies a refusal (checked mode aborts here).
      const absl::Status s = ref.entry == nullptr ? p.NotIssued("relocate", h) : p.Rejected("relocate", h);
      o = absl::IsNotFound(s) ? RelocateOutcome::kStale : RelocateOutcome::kNotIssued;
      continue;
    }
    const std::uint64_t offset = handles::OffsetOf(w);
    const Impl::Located at = p.Locate(offset);
    if (!p.SizeFieldMatches(h, offset, at)) {
      (void)p.NotIssued("relocate", h);
      o = RelocateOutcome::kNotIssued;
    } else if (at.huge != nullptr) {
      o = RelocateOutcome::kHuge;
    } else if (!named.insert(h.index()).second) {
      o = RelocateOutcome::kBusy;  // named before: it moves (or not) once
    } else {
      by_class[at.cls.value()].push_back(alloc::RelocateItem{h.index(), ref.gen, offset, at.block, at.slot, &o});
    }
  }
  RelocateResult r;
  for (std::size_t k = 0; k < by_class.size(); ++k) {
    if (!by_class[k].empty()) p.classes->Get(ClassId(static_cast<std::uint32_t>(k))).Relocate(by_class[k], r);
  }
  // With read sections, the moves emptied blocks only once their old copies go back: now, if no section holds
  // them.
  r.blocks_emptied += p.ReclaimOldCopies(/*pressed=*/false).blocks_released;
  for (const RelocateOutcome o : outcomes) {
    switch (o) {
      case RelocateOutcome::kMoved: break;  // counted by the classes, with the bytes
      case RelocateOutcome::kPinned: ++r.pinned; break;
      case RelocateOutcome::kBusy: ++r.busy; break;
      case RelocateOutcome::kStale: ++r.stale; break;
      case RelocateOutcome::kNotIssued: ++r.not_issued; break;
      case RelocateOutcome::kHuge: ++r.huge; break;
      case RelocateOutcome::kNoMemory: ++r.no_memory; break;
    }
  }
  p.relocations.fetch_add(1, std::memory_order_relaxed);
  p.objects_relocated.fetch_add(r.moved, std::memory_order_relaxed);
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

void Pool::release_free_memory() {
  impl_->ReclaimOldCopies(/*pressed=*/false);
  impl_->classes->ForEachMade([](alloc::SizeClass& cls) { cls.ReleaseSpare(); });
  impl_->arena->PurgeDirty(/*force=*/true);
  impl_->table->ReleaseSpare();
}

void Pool::flush_thread_cache() {
  CacheScope scope(*impl_);
  impl_->Flush(*scope);
}

PoolStats Pool::stats() const {
  Impl& p = *impl_;
  PoolStats s;
  std::vector<std::uint64_t> cached(p.map.num_classes(), 0);
  std::uint64_t allocs, frees, alloc_bytes, free_bytes;
  {
    MutexLock lock(&p.caches_mu);
    allocs = p.retired_allocs;
    frees = p.retired_frees;
    alloc_bytes = p.retired_alloc_bytes;
    free_bytes = p.retired_free_bytes;
    for (const ThreadCache* c : p.caches) {
      allocs += c->allocs.Get();
      frees += c->frees.Get();
      alloc_bytes += c->alloc_bytes.Get();
      free_bytes += c->free_bytes.Get();
      for (std::size_t k = 0; k < c->classes.size(); ++k) cached[k] += c->classes[k].count.load(std::memory_order_relaxed);
      // Its fixed part (the slot arrays, which only the owner may read the sizes of, are left out).
      s.metadata_bytes += sizeof(ThreadCache) + c->classes.size() * sizeof(alloc::ClassSlots);
    }
  }
  s.live_objects = allocs - frees;
  s.live_bytes = alloc_bytes - free_bytes;
  for (std::size_t k = 0; k < p.map.num_classes(); ++k) {
    const alloc::SizeClassInfo& info = p.map.info(ClassId(static_cast<std::uint32_t>(k)));
    const alloc::SizeClass* made = p.classes->Find(ClassId(static_cast<std::uint32_t>(k)));
    const alloc::ClassSnapshot snap = made != nullptr ? made->Snapshot() : alloc::ClassSnapshot{};
    ClassStats cs;
    cs.slot_size = info.slot_size;
    cs.pages_per_block = info.pages_per_block;
    cs.objects_per_block = info.objects_per_block;
    cs.blocks = snap.blocks;
    cs.block_pages = snap.pages;
    cs.objects_cached = std::min(cached[k], snap.slots_in_use);
    cs.objects_in_use = snap.slots_in_use - cs.objects_cached;
    cs.fullness = snap.groups;
    s.classes.push_back(cs);
    s.slot_bytes += cs.objects_in_use * info.slot_size;
    s.block_bytes += ToBytes(Pages(snap.pages)).value();
    s.metadata_bytes += snap.heap_bytes;
  }
  // The pool's own structures on the heap: the class table, the access records.
  s.metadata_bytes += p.classes->size() * sizeof(void*) + p.records->heap_bytes();
  s.huge_objects = p.huge_objects.load(std::memory_order_relaxed);
  s.huge_bytes = ToBytes(Pages(p.huge_pages.load(std::memory_order_relaxed))).value();
  const alloc::Arena::Stats a = p.arena->stats();
  s.dirty_bytes = ToBytes(Pages(a.dirty_pages)).value();
  s.regions_in_use = a.regions_in_use;
  s.regions_touched = a.regions_touched;
  s.discard_failures = a.discard_failures;
  s.populate_calls = a.populate_calls;
  s.discard_calls = a.discard_calls;
  s.discard_runs = a.discard_runs;
  // The page map is backed in the units the arena has not given back (region_shadow.h): a page per 4 regions.
  s.metadata_bytes += a.shadow_bytes;
  const handles::HandleTable::Stats t = p.table->stats();
  // The handle table's page keys (4 B per table page ever opened), records and the states of resident pages.
  s.metadata_bytes += handles::HandleTable::KeysBytes(t.pages_opened).value() + t.states_bytes;
  s.handles_in_use = t.entries_in_use;
  s.handle_table_bytes = t.resident_bytes().value();
  s.handle_table_pages_peak = t.pages_opened;
  s.handles_rested = t.entries_rested;
  s.handle_pages_rekeyed = t.pages_rekeyed;
  s.handle_compactions = p.handle_compactions.load(std::memory_order_relaxed);
  s.handles_owned = p.handles_owned.load(std::memory_order_relaxed);
  s.handles_migrated = p.handles_migrated.load(std::memory_order_relaxed);
  s.handles_freed_while_isolated = p.handles_freed_while_isolated.load(std::memory_order_relaxed);
  s.handle_isolate_failed = p.handle_isolate_failed.load(std::memory_order_relaxed);
  s.handles_put_back = p.handles_put_back.load(std::memory_order_relaxed);
  s.handle_pages_evacuated = t.pages_evacuated;
  s.resident_bytes = s.block_bytes + s.huge_bytes + s.dirty_bytes + s.handle_table_bytes + s.metadata_bytes;
  s.compactions = p.compactions.load(std::memory_order_acquire);  // before the counters it publishes
  s.objects_moved = p.objects_moved.load(std::memory_order_relaxed);
  s.direct_compactions = p.direct_compactions.load(std::memory_order_relaxed);
  s.relocations = p.relocations.load(std::memory_order_relaxed);
  s.objects_relocated = p.objects_relocated.load(std::memory_order_relaxed);
  s.keeping_old_copies = p.old_copies->keeping();
  s.stale_touch_watch = p.watch != nullptr && p.arena->fault_uffd() >= 0;
  s.old_copy_bytes = p.old_copies->pending().value();
  s.old_copies_freed = p.old_copies_freed.load(std::memory_order_relaxed);
  s.old_copy_bytes_freed = p.old_copy_bytes_freed.load(std::memory_order_relaxed);
  s.old_copies_freed_under_pressure = p.old_copies_freed_under_pressure.load(std::memory_order_relaxed);
  s.bytes_moved = p.bytes_moved.load(std::memory_order_relaxed);
  s.pages_compacted = p.pages_compacted.load(std::memory_order_relaxed);
  const compactor::MigrationStats m = p.migrator.stats();
  s.defrag_runs = p.defrag_runs.load(std::memory_order_relaxed);
  s.blocks_scanned = m.scanned;
  s.blocks_isolated = m.isolated;
  s.blocks_migrated = m.migrated;
  s.blocks_migrate_failed = m.failed;
  s.regions_freed = p.regions_freed.load(std::memory_order_relaxed);
  s.huge_migrated = p.huge_migrated.load(std::memory_order_relaxed);
  const compactor::MoveEngineStats e = p.arena->move_stats();
  s.userfaultfd_ready = e.userfaultfd_ready;
  s.moves_uffd = e.uffd_moves;
  s.moves_mremap = e.remap_moves;
  s.moves_copy = e.copy_moves;
  s.bytes_moved_uffd = e.uffd_bytes;
  s.bytes_moved_mremap = e.remap_bytes;
  s.bytes_moved_copy = e.copy_bytes;
  s.uffd_busy_fallbacks = e.uffd_busy_fallbacks;
  s.uffd_other_fallbacks = e.uffd_other_fallbacks;
  s.uffd_miscounts = e.uffd_miscounts;
  s.mremap_fallbacks = e.remap_fallbacks;
  s.regions_collapsed = a.regions_collapsed;
  s.collapse_failures = a.collapse_failures;
  if (p.background != nullptr) {
    s.background_running = p.background->running();
    s.background_wakeups = p.background->wakeups();
    s.background_runs = p.background->runs();
    s.background_runs_complete = p.background->completed();
    s.background_cycles = p.background->cycles();
    s.background_cycle_longest_us = p.background->cycle_times().longest_us();
    s.background_cycle_histogram = p.background->cycle_times().counts();
    s.background_by_classes = p.background_by_classes.load(std::memory_order_relaxed);
    s.background_by_regions = p.background_by_regions.load(std::memory_order_relaxed);
    s.background_by_pressure = p.background_by_pressure.load(std::memory_order_relaxed);
    s.background_by_handles = p.background_by_handles.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace mova
