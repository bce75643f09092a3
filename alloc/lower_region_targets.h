// alloc/lower_region_targets.h — the free scanner: where a block of the arena moves to.
//
// Types: MoveTarget (a destination run, described outside its pages: they stay empty until the move fills
// them), LowerRegionTargets (compactor::TargetSource: an empty run of the source's length in a region below
// the source's own, by the arena's first fit, so blocks move down and high regions empty out). Used by every
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
};
inline PageRun TargetRun(compactor::MovableBlock& m) { return static_cast<MoveTarget*>(m.owner())->run; }

class LowerRegionTargets final : public compactor::TargetSource {
 public:
  // `run_of` names the run a registered block of the caller's occupies.
  using RunOf = PageRun (*)(compactor::MovableBlock&);
  LowerRegionTargets(Arena& arena, RunOf run_of) : arena_(arena), run_of_(run_of) {}

  compactor::MovableBlock* GetTarget(compactor::MovableBlock& src) override {
    const PageRun from = run_of_(src);
    absl::StatusOr<PageRun> run = arena_.AllocateBelow(
        Pages(from.count), static_cast<std::uint32_t>(from.first / kPagesPerRegion), Backing::kEmpty);
    if (!run.ok()) return nullptr;
    MoveTarget* t;
    if (!unused_.empty()) {
      t = unused_.back();
      unused_.pop_back();
    } else {
      t = targets_.emplace_back(std::make_unique<MoveTarget>()).get();
    }
    t->run = *run;
    t->movable.SetOwner(t);
    return &t->movable;
  }
  // The run may hold pages of a move that failed part way: Free discards them. The record is used again.
  void PutTarget(compactor::MovableBlock* t) override {
    arena_.Free(TargetRun(*t));
    unused_.push_back(static_cast<MoveTarget*>(t->owner()));
  }

 private:
  Arena& arena_;
  const RunOf run_of_;
  std::vector<std::unique_ptr<MoveTarget>> targets_;
  std::vector<MoveTarget*> unused_;  // records given back by PutTarget
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_LOWER_REGION_TARGETS_H_
