// alloc/pool_compaction.cc — the pool's compaction entry points: compact() (objects into fewer class blocks),
// compact_handles() (owned entries into fewer table pages) and its owners, defragment() (blocks and huge
// objects down into fewer regions), relocate() (named objects together), release_free_memory(), and the
// background compactor's cycle that runs them in turn. See alloc/pool_impl.h.
// Every mover holds Impl::compact_mu for the whole call. A budgeted call moves for the first half of its
// budget and discards the pages it emptied in the rest (CallDeadlines, FinishDiscards); what it leaves, the
// next call goes on with.
#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "alloc/lower_region_targets.h"
#include "alloc/pool_impl.h"
#include "compactor/region_scan.h"
#include "handles/entry_migrator.h"

namespace mova {

using alloc::Block;

// One cycle of a background pass: compact() with the cycle's budget until it is complete, then defragment()
// likewise, then compact_handles() likewise (its count of the owned cells and its moves are bounded by the
// budget; the owners' iteration over cells it has no time left for is not); a pass started for memory
// pressure ends by giving back every free page. True when the pass is complete.
bool Pool::Impl::BackgroundCycle(Pool& pool, BackgroundPass& pass, PassBudget budget) {
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
  // (each recall costs the threads a flush and refills under the class locks the pass takes). A whole call
  // always recalls: one that came after budgeted calls (the background compactor's) stopped mid-pass would
  // otherwise pass over every block a cache took a slot of since (thin-out read 1.58-1.60 RSS/live after the
  // best effort with the background compactor on, against 1.43, from run to run).
  if (!deadlines.budgeted || (p.next_compact_class == 0 && !p.compact_discards_pending)) p.RecallThreadCaches();
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

DefragResult Pool::defragment() { return defragment(PassBudget{}); }

DefragResult Pool::defragment(PassBudget budget) {
  Impl& p = *impl_;
  MutexLock lock(&p.compact_mu);
  const absl::Time start = absl::Now();
  const CallDeadlines deadlines(budget, start);
  // Cached slots keep their blocks in place: once a pass, and at every whole call, as compact() does.
  if (!deadlines.budgeted || (p.next_defrag_region == 0 && !p.defrag_discards_pending)) p.RecallThreadCaches();
  const compactor::MigrationStats before = p.migrator.stats();
  const compactor::MoveEngineStats moves_before = p.arena->move_stats();
  auto pages_migrated = [&p] {
    std::uint64_t n = p.huge->driver().pages_migrated();
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
  const std::uint64_t step_pages = deadlines.budgeted ? Impl::kBudgetedDefragStepPages : Impl::kDefragStepPages;
  absl::Duration last_step;  // how long this call's last step took
  for (std::size_t region = top; !stopped && region-- > needed;) {
    if (usage_before[region] == 0) continue;
    const std::uint64_t first = region * alloc::kPagesPerRegion, end = first + alloc::kPagesPerRegion;
    std::uint64_t page = first + (region + 1 == top ? resume_page : 0);
    // A step of `step_pages` at a time; after the first, a step begins only if one as long as the last would
    // end by the deadline for moves.
    bool counted = false;  // this region is in regions_scanned
    while (page < end) {
      const absl::Time step_start = absl::Now();
      if (stepped && step_start + last_step >= deadlines.moves) {
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
      for (const std::uint64_t step_end = std::min(end, page + step_pages); page < step_end; ++page) {
        const alloc::PageOwner o = p.page_map->Get(page);
        if (!o.present() || o.page_in_block() != 0) continue;
        void* at = p.arena->PageAddress(static_cast<std::uint32_t>(page));
        if (o.huge()) {
          auto* h = static_cast<alloc::HugeObject*>(at);
          MutexLock huge_lock(&p.huge->mu());  // the run cannot be released while it is validated and isolated
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
      last_step = absl::Now() - step_start;
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

}  // namespace mova
