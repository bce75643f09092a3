// alloc/lower_region_targets.h — the free scanner: where a block of the arena moves to.
//
// Types: MoveTarget (a destination run, described outside its pages, which hold nothing the move needs),
// LowerRegionTargets (compactor::TargetSource: a run of the source's length in a region below the source's
// own, by the arena's first fit, so blocks move down and high regions empty out; empty or populated as
// Arena::BackingForMove says for the driver's kind of move). Used by every
// driver whose blocks live in an Arena: the pool's class blocks and huge objects, and MovableBufferStore.
// One instance serves one defragmentation, on one thread; its records live as long as it does.
#ifndef MOVA_ALLOC_LOWER_REGION_TARGETS_H_
#define MOVA_ALLOC_LOWER_REGION_TARGETS_H_

#include <memory>
#include <vector>

#include "alloc/arena.h"
#include "compactor/block_migrator.h"
#include "compactor/movable_block.h"

namespace mova::alloc {

// A migration target: the framework's handle on an empty run.
struct MoveTarget {
  compactor::MovableBlock movable;
  PageRun run;
  Backing backing = Backing::kEmpty;  // pass to Arena::MoveRun
};
inline MoveTarget& TargetOf(compactor::MovableBlock& m) { return *static_cast<MoveTarget*>(m.owner()); }

class LowerRegionTargets final : public compactor::TargetSource {
 public:
  // `run_of` names the run a registered block of the caller's occupies.
  using RunOf = PageRun (*)(compactor::MovableBlock&);
  // `kind`: how the driver moves its blocks (Arena::MoveRun's kind).
  LowerRegionTargets(Arena& arena, compactor::MoveKind kind, RunOf run_of) : arena_(arena), kind_(kind), run_of_(run_of) {}

  compactor::MovableBlock* GetTarget(compactor::MovableBlock& src) override {
    const PageRun from = run_of_(src);
    const Backing backing = arena_.BackingForMove(Pages(from.count), kind_);
    absl::StatusOr<PageRun> run =
        arena_.AllocateBelow(Pages(from.count), static_cast<std::uint32_t>(from.first / kPagesPerRegion), backing);
    if (!run.ok()) return nullptr;
    MoveTarget* t;
    if (!unused_.empty()) {
      t = unused_.back();
      unused_.pop_back();
    } else {
      t = targets_.emplace_back(std::make_unique<MoveTarget>()).get();
    }
    t->run = *run;
    t->backing = backing;
    t->movable.SetOwner(t);
    return &t->movable;
  }
  // The run may hold pages of a move that failed part way: Free discards them. The record is used again.
  void PutTarget(compactor::MovableBlock* t) override {
    arena_.Free(TargetOf(*t).run);
    unused_.push_back(static_cast<MoveTarget*>(t->owner()));
  }

 private:
  Arena& arena_;
  const compactor::MoveKind kind_;
  const RunOf run_of_;
  std::vector<std::unique_ptr<MoveTarget>> targets_;
  std::vector<MoveTarget*> unused_;  // records given back by PutTarget
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_LOWER_REGION_TARGETS_H_
