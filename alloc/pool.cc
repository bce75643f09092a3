// alloc/pool.cc — Pool's construction, its allocate / free / pin / read entry points, and the binding of
// threads to their caches. The parts and what joins them are in alloc/pool_impl.h; compaction's entry points
// in pool_compaction.cc, stats in pool_stats.cc.
//
// Types: ThreadCaches (one per thread: its caches for every pool it used), CacheScope.
// Fast paths (allocate / free with a warm cache, pin, unpin) take no lock and make no syscall: allocate pops
// a cached slot and a cached handle entry and publishes the entry; free announces the entry in the thread's
// access record, checks it, retires it with one CAS and pushes both back (the entry to the handle list, or,
// while the handle table is sparse, to the list of entries on their way back to it); pin counts the pin in
// the entry (one CAS; totally ordered with a free, so a pin racing a free of the same object has one outcome);
// pin_owned stores the entry's tag in a pin slot of the thread's record and loads the entry, and its unpin
// clears the slot: no shared write (handles/access_records.h; movers confirm their claims against the
// records, handles/move_claims.h); its common case is inline in pool.h (handles/inline_pin.h), its binding to
// the thread's record read from internal::thread_binding, which this file keeps. A thread whose record's pin
// slots are all taken counts the pin instead.
// Each fast path is inline in its public function and does the common case only; anything else (another
// pool used last, an empty or full cache, a flush due, a huge object, a pin, a mover, checked mode, an
// error) goes to its slow path (AllocateSlow, FreeSlow, PinSlow, Impl::PinOwnedSlow) before anything is
// changed, and the slow path does the whole call. One function doing both kept the error paths' state in
// registers and on the stack through the common case: allocate + free took ~370 instructions, now ~265.
// Validation: every entry point that takes a handle goes through Impl::Resolve (the handle table opens the
// handle's check to its entry and generation) and the entry operation's generation compare; a refusal is
// classified (stale or never issued) on the slow path. Pins taken by pin_detached are counted in a ledger,
// so unpin(h) can drop only those, never a Pinned's.
// Read sections (ReadGuard): a read is Resolve and one load of the entry (handles/entry_word.h TryRead); the
// section's epoch lives in the thread's access record.
// Thread exit: a thread's caches go back to every pool still alive (under g_registry_mu, which Pool's
// destructor takes before it frees anything). Pool ids are never reused, so a cache pointer left in a dead
// thread-local slot is never matched again.
#include "mova/pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "alloc/pool_impl.h"
#include "base/mutex.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"
#include "mova/handle_owner.h"
#include "os/os.h"

namespace mova {

using alloc::Block;
using alloc::SlotRef;
using alloc::ThreadCache;

[[gnu::tls_model("initial-exec")]] constinit thread_local internal::ThreadBinding internal::thread_binding;

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

// The fast paths' TLS is internal::thread_binding (pool.h; trivially destructible, initial-exec): one
// %fs-relative load instead of a __tls_get_addr call.
[[gnu::tls_model("initial-exec")]] thread_local bool tls_exited = false;  // this thread's caches were handed back

struct ThreadCaches {
  absl::flat_hash_map<std::uint64_t, ThreadCache*> by_pool;
  ~ThreadCaches();
};
thread_local ThreadCaches tls_caches;

}  // namespace

namespace {

// The calling thread's cache for one pool for the length of one call (announced to stealers: EnterSlow),
// synchronised with the pool's flush epoch. The common case — this thread used this pool last — is a
// thread-local compare.
class CacheScope {
 public:
  explicit CacheScope(Pool::Impl& p) : p_(p) {
    if (ABSL_PREDICT_TRUE(internal::thread_binding.pool_id == p.id)) {
      c_ = internal::thread_binding.cache;
    } else {
      c_ = p.SlowCache(&temporary_);
    }
    c_->EnterSlow();
    if (ABSL_PREDICT_FALSE(c_->epoch.load(std::memory_order_acquire) !=
                           p.flush_epoch.load(std::memory_order_relaxed))) {
      p.SyncCache(*c_);
    }
  }
  ~CacheScope() {
    c_->LeaveSlow();
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
  internal::thread_binding = internal::ThreadBinding{};
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

// Defined here, not in pool_impl.h, because it reads this file's thread-locals.
ThreadCache* Pool::Impl::SlowCache(bool* temporary) {
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
  internal::thread_binding = internal::ThreadBinding{id, slot, slot->record};
  return slot;
}

namespace {

// The fast paths' view (Pool::Impl::fast; pool.h's inline pin_owned has a copy): none in checked mode (every
// call is checked in full) or without membarrier (an announce would need a full fence, which only the full
// paths pay).
handles::PinPath FastPathOf(const Pool::Impl& p) {
  static_assert(alloc::kSizeGranule == 8, "handles/inline_pin.h looks classes up in 8-byte steps");
  static_assert(alloc::kSizeGranule % handles::kLocationAlign == 0, "every slot starts at a location the entry holds");
  if (p.options.checked || !p.records->asymmetric()) return {};
  return handles::PinPath{.table = p.table->view(),
                          .objects = p.arena->base(),
                          .page_owners = p.page_map->owners(),
                          .owner_shift = alloc::PageOwner::kClassShift,
                          .owner_base = alloc::PageOwner::kClassPageBase,
                          .class_by_granule = alloc::kSizeClassTable.lookup.data(),
                          .max_class_size = static_cast<std::uint32_t>(alloc::kMaxClassSize)};
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
  absl::StatusOr<std::unique_ptr<handles::HandleTable>> table =
      handles::HandleTable::Create(the_os, options.max_handles, PoolSalt(impl->id));
  if (!table.ok()) return table.status();
  impl->table = std::move(*table);
  impl->read_path = handles::ReadPath{impl->table->view(), impl->arena->base()};
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
  impl->huge = std::make_unique<alloc::HugeObjects>(*impl->arena, *impl->page_map, *impl->huge_driver);
  if (impl->arena->fault_uffd() >= 0) {
    impl->vacated = std::make_unique<alloc::VacatedLog>();
    impl->huge_driver->set_vacated_log(impl->vacated.get());
    Impl* self = impl.get();
    impl->watch = std::make_unique<alloc::StaleTouchWatch>(
        the_os, impl->arena->fault_uffd(), [self](std::uintptr_t a) { return self->DescribeStaleTouch(a); });
  }
  impl->fast = FastPathOf(*impl);
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
        [self, pass, budget = PassBudget{options.background_cycle}] {
          return Impl::BackgroundCycle(*self, *pass, budget);
        });
  }
  return pool;
}


Pool::Pool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)), id_(impl_->id), pin_path_(impl_->fast) {}
Pool::~Pool() {
  // PoolOptions::show_stats (MOVA_SHOW_STATS): the pool's stats on stderr when it goes, as mimalloc's
  // MIMALLOC_SHOW_STATS does.
  if (impl_->options.show_stats != StatsOutput::kNone) {
    const PoolStats s = stats();
    const std::string text = impl_->options.show_stats == StatsOutput::kJson ? FormatStatsJson(s) : FormatStatsText(s);
    std::fprintf(stderr, "mova: stats of pool %llu at its destruction\n%s\n",
                 static_cast<unsigned long long>(impl_->id), text.c_str());
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
  p.RefreshTableSparse(c);
  if (ABSL_PREDICT_FALSE(c.handles.count.load(std::memory_order_relaxed) == 0)) {
    if (absl::Status s = p.RefillHandles(c); !s.ok()) return s;
  }
  const std::uint32_t index = c.handles.items[c.handles.count.load(std::memory_order_relaxed) - 1];
  std::uint64_t offset;
  bool made_block = false;
  if (ABSL_PREDICT_FALSE(size > alloc::kMaxClassSize)) {
    absl::StatusOr<std::uint64_t> off = p.huge->Allocate(size, index);
    if (!off.ok() && p.ReclaimForAllocation(off.status())) off = p.huge->Allocate(size, index);
    if (!off.ok()) return off.status();
    offset = *off;
  } else {
    const ClassId cls = p.map.ClassFor(size);
    if (ABSL_PREDICT_FALSE(c.classes[cls.value()].count.load(std::memory_order_relaxed) == 0)) {
      absl::Status s = p.RefillSlots(c, cls, &made_block);
      if (!s.ok() && p.ReclaimForAllocation(s)) s = p.RefillSlots(c, cls, &made_block);
      if (!s.ok()) return s;
    }
    offset = p.PopSlot(c, cls, index);
  }
  c.handles.count.store(c.handles.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  const Handle h = p.PublishNew(c, index, offset, size);
  // After the publication: direct compaction recalls the thread caches, this one's included.
  if (ABSL_PREDICT_FALSE(made_block)) p.MaybeCompactDirectly();
  return h;
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
      handles::WithdrawRetire(*c.record);
      return p.NotIssued("free", h, via);
    }
    if (ABSL_PREDICT_FALSE(p.options.checked)) {
      if (absl::Status s = p.CheckDescriptor("free", h, at); !s.ok()) {
        handles::WithdrawRetire(*c.record);
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
    p.huge->Free(at.huge);
  } else {
    // The slot's owner word keeps the retired index until the slot is returned to its block: compaction
    // reads it as "not movable" (the entry no longer points here), exactly like kSlotReserved.
    p.PushSlot(c, at.cls, alloc::PackSlot(at.block, at.slot));
  }
  if (ABSL_PREDICT_FALSE(handles::IsLastLife(r.gen))) {
    const std::uint32_t index = h.index();
    p.table->Return(std::span<const std::uint32_t>(&index, 1));  // it rests there
  } else {
    p.RefreshTableSparse(c);
    p.KeepFreedHandle(c, h.index());
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
  if (ABSL_PREDICT_FALSE(internal::thread_binding.pool_id != p.id)) return AllocateSlow(p, size);
  ThreadCache& c = *internal::thread_binding.cache;
  c.EnterFast();  // a stealer leaves the lists alone until LeaveFast, or this call sees the epoch move on
  // The cache's epoch before the lists' counts: if a stealer's flush has just ended, the acquire makes the
  // counts read below its zeros (read first, they could be the counts from before it).
  const std::uint64_t epoch = c.epoch.load(std::memory_order_acquire);
  const ClassId cls = p.map.ClassFor(size);
  alloc::ClassSlots& cs = c.classes[cls.value()];
  const std::uint32_t n = cs.count.load(std::memory_order_relaxed);
  const std::uint32_t hn = c.handles.count.load(std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE((n == 0) | (hn == 0) | (epoch != p.flush_epoch.load(std::memory_order_relaxed)))) {
    c.LeaveFast();
    return AllocateSlow(p, size);
  }
  const std::uint32_t index = c.handles.items[hn - 1];
  c.handles.count.store(hn - 1, std::memory_order_relaxed);
  const Handle h = p.PublishNew(c, index, p.PopSlot(c, cls, index), size);
  c.LeaveFast();
  return h;
}

namespace {

// The common free, inline: a class object of a handle that opens on the fast path (so not checked mode, and
// membarrier in use), freed by a thread whose cache for this pool is warm, has room for the slot (in the
// class the size field names) and the entry, and owes no flush; the entry not pinned, not moving and not in
// its last life; the page map naming a block of that class at the entry's location. Nothing is changed
// until the retiring CAS succeeds, so anything else (or a lost CAS) sends the call to FreeSlow from the start.
[[gnu::always_inline]] inline absl::Status FreeFast(Pool::Impl& p, Handle h, const HandleCell* via) {
  if (ABSL_PREDICT_FALSE(internal::thread_binding.pool_id != p.id)) return FreeSlow(p, h, via);
  const handles::HandleRef r = handles::OpenHandle(p.fast.table, h);
  if (ABSL_PREDICT_FALSE(r.entry == nullptr)) return FreeSlow(p, h, via);
  ThreadCache& c = *internal::thread_binding.cache;
  handles::AccessRecord& rec = *c.record;
  const std::uint32_t index = h.index();
  const handles::Tag tag = handles::TagOf(index);
  // The retire's announcement, first: a mover gives up a claim on the entry, and a stealer leaves the lists
  // alone (ThreadCache::Idle) until it is withdrawn — or this call sees the epoch move on.
  handles::AnnounceRetire(rec, tag);
  auto slow = [&]() -> absl::Status {
    handles::WithdrawRetire(rec);
    return FreeSlow(p, h, via);
  };
  const std::uint32_t size_field = h.size_field();
  // A size field past the classes' (a huge object's, or a forged one) goes to FreeSlow. The cache's epoch
  // before anything of the lists: if a stealer's flush has just ended, the acquire makes what is read below
  // the emptied lists.
  if (ABSL_PREDICT_FALSE(handles::IsLastLife(r.gen) | (size_field >= alloc::kMaxClassSize) |
                         (c.epoch.load(std::memory_order_acquire) != p.flush_epoch.load(std::memory_order_relaxed)))) {
    return slow();
  }
  // The freed entry goes to the handle list, or, while the table is sparse, on its way back to the table
  // (ThreadCache::free_to); the list must have room. The class the size field names; the page map must
  // agree (LocateClassSlot). A class not yet cached by this thread has capacity 0, so a full cache and a
  // missing array are one test.
  alloc::CachedList<std::uint32_t>& to = *c.free_to;
  const std::uint32_t hn = to.count.load(std::memory_order_relaxed);
  const ClassId cls = p.map.ClassFor(std::size_t{size_field} + 1);
  alloc::ClassSlots& cs = c.classes[cls.value()];
  const std::uint32_t n = cs.count.load(std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE((hn == to.size.capacity) | (n == cs.size.capacity))) return slow();
  handles::Word w;
  if (!handles::TryRetireAnnounced(*r.entry, r.gen, rec, tag, &w)) return slow();
  alloc::SlotRef slot;
  if (ABSL_PREDICT_FALSE(!p.LocateClassSlot(handles::OffsetOf(w), cls, &slot))) return slow();
  if (ABSL_PREDICT_FALSE(!handles::EndRetireAnnounced(*r.entry, w))) return slow();
  // The slot's owner word keeps the retired index until the slot is returned to its block: compaction
  // reads it as "not movable" (the entry no longer points here), exactly like kSlotReserved.
  cs.items[n] = slot;
  cs.count.store(n + 1, std::memory_order_relaxed);
  to.items[hn] = index;
  to.count.store(hn + 1, std::memory_order_relaxed);
  c.frees.Add(1);
  c.free_bytes.Add(std::size_t{size_field} + 1);
  handles::WithdrawRetire(rec);  // the free is done
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

// The common pin, inline: a class object of a handle that opens on the fast path (so not checked mode), not
// moving, not saturated: one CAS. Anything else goes to PinSlow with nothing changed.
namespace {

[[gnu::always_inline]] inline absl::StatusOr<Pinned> PinFast(Pool::Impl& p, Handle h, Access access,
                                                              const HandleCell* via) {
  const handles::HandleRef r = handles::OpenHandle(p.fast.table, h);
  if (ABSL_PREDICT_FALSE((r.entry == nullptr) | (h.size_field() == Handle::kHugeSize))) {
    return PinSlow(p, h, access, via);
  }
  handles::Word w;
  if (ABSL_PREDICT_FALSE(!handles::TryPinCounted(*r.entry, r.gen, &w))) return PinSlow(p, h, access, via);
  const std::uint64_t offset = handles::OffsetOf(w);
  if (ABSL_PREDICT_FALSE(!p.InClassOfSizeField(h, offset))) {
    handles::UnpinCounted(*r.entry);
    return PinSlow(p, h, access, via);
  }
  return Pool::Impl::MakePinned(nullptr, r.entry, p.fast.objects + offset, std::size_t{h.size_field()} + 1, access);
}

}  // namespace

absl::StatusOr<Pinned> Pool::pin(Handle h, Access access) { return PinFast(*impl_, h, access, nullptr); }

// The common pin_owned, inline: as pin's, through a free slot of the record of a thread that used this pool
// last: stores to the thread's own line and loads. Anything else goes to PinOwnedSlow with nothing changed.
namespace {

[[gnu::always_inline]] inline absl::StatusOr<Pinned> PinOwnedFast(Pool::Impl& p, Handle h, Access access,
                                                                   const HandleCell* via) {
  if (ABSL_PREDICT_FALSE(internal::thread_binding.pool_id != p.id)) return p.PinOwnedSlow(h, access, via);
  const handles::HandleRef r = handles::OpenHandle(p.fast.table, h);
  if (ABSL_PREDICT_FALSE((r.entry == nullptr) | (h.size_field() == Handle::kHugeSize))) {
    return p.PinOwnedSlow(h, access, via);
  }
  handles::AccessRecord& rec = *internal::thread_binding.record;
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
  return Pool::Impl::MakePinned(slot, nullptr, p.fast.objects + offset, std::size_t{h.size_field()} + 1, access);
}

}  // namespace

// What the inline pin_owned (pool.h) declined: this thread used another pool last (it binds to this one
// now), a record not yet listed as pinning, anything PinOwnedFast takes; the rest goes on to PinOwnedSlow.
absl::StatusOr<Pinned> Pool::PinOwnedSlow(Handle h, Access access) { return PinOwnedFast(*impl_, h, access, nullptr); }

// ---- read sections ----

ReadGuard Pool::read_section() {
  Impl& p = *impl_;
  if (ABSL_PREDICT_FALSE(!p.old_copies->keeping())) p.StartKeepingOldCopies();
  handles::AccessRecord* rec;
  if (ABSL_PREDICT_TRUE(internal::thread_binding.pool_id == p.id)) {
    rec = internal::thread_binding.record;
  } else {
    if (tls_exited) return ReadGuard();  // no record outlives this call: an ended section (reads fail)
    bool temporary = false;
    rec = p.SlowCache(&temporary)->record;
  }
  p.records->EnterRead(*rec);
  return ReadGuard(&p, rec, p.options.checked ? handles::ReadPath{} : p.read_path);
}

void ReadGuard::End() {
  impl_->records->ExitRead(*record_);
  impl_ = nullptr;
  record_ = nullptr;
  path_ = {};
}

namespace {

absl::Status EndedSection() { return absl::FailedPreconditionError("read: the read section has ended"); }

}  // namespace

// read()'s inline path (handles/inline_read.h) took what it could; the rest is validated here, the size class
// check and checked mode's included.
absl::StatusOr<std::span<const std::byte>> ReadGuard::ReadSlow(Handle h) const {
  if (ABSL_PREDICT_FALSE(impl_ == nullptr)) return EndedSection();
  return impl_->ReadSlow(h, nullptr);
}

absl::StatusOr<std::span<const std::byte>> ReadGuard::ReadSlow(const HandleCell& cell) const {
  if (ABSL_PREDICT_FALSE(impl_ == nullptr)) return EndedSection();
  Pool::Impl& p = *impl_;
  return Pool::Impl::ThroughCell(cell, [&](Handle h, const HandleCell* via) { return p.ReadSlow(h, via); });
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
  { CacheScope scope(*this); }  // this thread's cache now: the scope finds its epoch behind and flushes it
  // The others' caches, for owners not in a call (thread_cache.h): after the barrier, an owner not shown in
  // a call begins its next one with the new epoch in sight, and waits on steal_mu for a flush under way. An
  // owner announces with a compiler barrier only, so without membarrier nothing is stolen.
  if (!records->asymmetric() || !records->Barrier().ok()) return;
  MutexLock lock(&caches_mu);
  for (ThreadCache* c : caches) {
    if (c->Idle() && SyncCache(*c)) caches_stolen.fetch_add(1, std::memory_order_relaxed);
  }
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

void Pool::flush_thread_cache() {
  CacheScope scope(*impl_);
  impl_->Flush(*scope);
}

}  // namespace mova
