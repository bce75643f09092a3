// alloc/pool_stats.cc — Pool::stats(): one snapshot assembled from every part's own counters (the threads'
// caches, the size classes, the huge objects, the arena, the handle table, the movers and the background
// compactor). See alloc/pool_impl.h. Each part is read under its own lock or through relaxed counters, so the
// totals are each exact but not one instant's: a stats() racing allocations may count an object in one
// total and not yet in another.
#include <algorithm>
#include <vector>

#include "alloc/pool_impl.h"
#include "mova/stats.h"

namespace mova {

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
    for (const alloc::ThreadCache* c : p.caches) {
      allocs += c->allocs.Get();
      frees += c->frees.Get();
      alloc_bytes += c->alloc_bytes.Get();
      free_bytes += c->free_bytes.Get();
      for (std::size_t k = 0; k < c->classes.size(); ++k) {
        cached[k] += c->classes[k].count.load(std::memory_order_relaxed);
      }
      // Its fixed part (the slot arrays, which only the owner may read the sizes of, are left out).
      s.metadata_bytes += sizeof(alloc::ThreadCache) + c->classes.size() * sizeof(alloc::ClassSlots);
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
  s.huge_objects = p.huge->count();
  s.huge_bytes = ToBytes(p.huge->pages()).value();
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
  s.thread_caches_stolen = p.caches_stolen.load(std::memory_order_relaxed);
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
    s.background_cycle_longest_cpu_us = p.background->cycle_cpu_times().longest_us();
    s.background_cycle_cpu_histogram = p.background->cycle_cpu_times().counts();
    s.background_cycles_preempted = p.background->cycles_preempted();
    s.background_by_classes = p.background_by_classes.load(std::memory_order_relaxed);
    s.background_by_regions = p.background_by_regions.load(std::memory_order_relaxed);
    s.background_by_pressure = p.background_by_pressure.load(std::memory_order_relaxed);
    s.background_by_handles = p.background_by_handles.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace mova
