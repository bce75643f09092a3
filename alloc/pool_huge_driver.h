// alloc/pool_huge_driver.h — the pool's huge objects as movable blocks.
//
// Types: PoolHugeDriver (MovableOps for huge objects: a huge object moves as one page run — UFFDIO_MOVE, or
// mremap where there is none, or memcpy — and its handle is republished at the new place).
// Isolation refuses an object that is pinned or moving; migrate claims the handle entry (MOVING, confirmed by
// handles/move_claims.h) so pins and frees wait until the object is published at its new place, and answers
// Again if it is pinned or being freed meanwhile.
// Contract: the pool validates a huge object and isolates it under the huge objects' lock
// (alloc/huge_objects.h), which their Free also takes, so the run cannot be released in between. The
// framework works on the source's descriptor after a successful migrate: the move keeps the descriptor
// readable there (Arena::MoveRun's keep_head). A migrated object's old run goes to the old copies when the
// pool keeps them (alloc/old_copies.h), else to the arena.
#ifndef MOVA_ALLOC_POOL_HUGE_DRIVER_H_
#define MOVA_ALLOC_POOL_HUGE_DRIVER_H_

#include <atomic>
#include <new>

#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/page_map.h"
#include "alloc/lower_region_targets.h"
#include "alloc/old_copies.h"
#include "alloc/vacated_log.h"
#include "compactor/movable_block.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"
#include "handles/move_claims.h"

namespace mova::alloc {

inline HugeObject* HugeOfMovable(compactor::MovableBlock& m) { return static_cast<HugeObject*>(m.owner()); }

class PoolHugeDriver final : public compactor::MovableOps {
 public:
  PoolHugeDriver(Arena& arena, PageMap& page_map, handles::HandleTable& table, handles::AccessRecords& records,
                 OldCopies& old_copies)
      : arena_(arena), page_map_(page_map), table_(table), records_(records), old_copies_(old_copies) {}

  bool Isolate(compactor::MovableBlock& m, compactor::MigrateMode) override {
    const HugeObject* h = HugeOfMovable(m);
    const handles::Word w = table_.entry(h->owner).load(std::memory_order_acquire);
    return handles::IsLiveGen(handles::GenOf(w)) && handles::OffsetOf(w) == h->data_offset() &&
           handles::PinsOf(w) == 0 && !handles::IsMoving(w) && !records_.PinnedByRecord(handles::TagOf(h->owner));
  }

  compactor::MigrateResult Migrate(compactor::MovableBlock& dst, compactor::MovableBlock& src,
                                   compactor::MigrateMode) override {
    HugeObject* h = HugeOfMovable(src);
    const MoveTarget& target = TargetOf(dst);
    const PageRun to = target.run, from = h->run;
    handles::MoveClaims claim(table_, records_);  // given up when it goes, unless published
    if (!claim.Add(h->owner, h->data_offset()) || claim.Confirm() != 0) return compactor::MigrateResult::kAgain;
    absl::StatusOr<compactor::MoveOutcome> moved =
        arena_.MoveRun(to, from, compactor::MoveKind::kRun, Bytes(sizeof(HugeObject)), target.backing);  // h stays readable
    if (!moved.ok()) return compactor::MigrateResult::kFail;
    auto* n = reinterpret_cast<HugeObject*>(arena_.PageAddress(to.first));
    n->run = to;
    new (&n->movable) compactor::MovableBlock();
    n->movable.Register(this, n);
    page_map_.MapHuge(to);
    claim.Publish(0, n->data_offset());
    if (vacated_ != nullptr) vacated_->Moved(h->data_offset(), h->size, h->owner, n->data_offset());
    h->magic = 0;
    h->moved_out = true;
    page_map_.Unmap(from.first, 1);
    h->movable.Unregister();
    pages_migrated_.fetch_add(to.count, std::memory_order_relaxed);
    return compactor::MigrateResult::kSuccess;
  }

  void Putback(compactor::MovableBlock&) override {}  // isolation changed nothing of the object
  void Release(compactor::MovableBlock& m) override {
    const HugeObject* h = HugeOfMovable(m);
    old_copies_.ReleaseRun(h->run, h->moved_out);
  }

  std::uint64_t pages_migrated() const { return pages_migrated_.load(std::memory_order_relaxed); }
  // Checked mode: every move is logged there. Set before use.
  void set_vacated_log(VacatedLog* log) { vacated_ = log; }

 private:
  Arena& arena_;
  PageMap& page_map_;
  handles::HandleTable& table_;
  handles::AccessRecords& records_;
  OldCopies& old_copies_;
  VacatedLog* vacated_ = nullptr;
  std::atomic<std::uint64_t> pages_migrated_{0};
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_POOL_HUGE_DRIVER_H_
