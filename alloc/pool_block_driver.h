// alloc/pool_block_driver.h — the pool as a driver of the movable-block framework, and the free scanner
// that finds it room.
//
// Types: PoolBlockDriver (MovableOps for class blocks: isolate / migrate / putback / release dispatch to the
// block's SizeClass), MoveTarget (a destination run, described outside its pages: they stay empty until the
// move fills them), LowerRegionTargets (TargetSource: an empty run of the source's length in a region below
// the source's own, by the arena's first fit, so blocks move down and high regions empty out).
// Contract: the pool isolates its blocks only from its defragmenter, which holds the block's class lock
// while it validates and isolates the block (so the block cannot be released under it); migrate and putback
// take the class lock themselves.
#ifndef MOVA_ALLOC_POOL_BLOCK_DRIVER_H_
#define MOVA_ALLOC_POOL_BLOCK_DRIVER_H_

#include <memory>
#include <vector>

#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/size_class.h"
#include "compactor/block_migrator.h"
#include "compactor/movable_block.h"

namespace mova::alloc {

inline Block* BlockOfMovable(compactor::MovableBlock& m) { return static_cast<Block*>(m.owner()); }

// A migration target: the framework's handle on an empty run.
struct MoveTarget {
  compactor::MovableBlock movable;
  PageRun run;
};
inline PageRun TargetRun(compactor::MovableBlock& m) { return static_cast<MoveTarget*>(m.owner())->run; }

class PoolBlockDriver final : public compactor::MovableOps {
 public:
  PoolBlockDriver(Arena& arena, const std::vector<std::unique_ptr<SizeClass>>& classes)
      : arena_(arena), classes_(classes) {}

  bool Isolate(compactor::MovableBlock& m, compactor::MigrateMode) override {
    Block* b = BlockOfMovable(m);
    return classes_[b->cls]->IsolateBlock(b);
  }
  compactor::MigrateResult Migrate(compactor::MovableBlock& dst, compactor::MovableBlock& src,
                                   compactor::MigrateMode) override {
    Block* s = BlockOfMovable(src);
    return classes_[s->cls]->MigrateBlock(s, TargetRun(dst));
  }
  void Putback(compactor::MovableBlock& m) override {
    Block* b = BlockOfMovable(m);
    classes_[b->cls]->PutbackBlock(b);
  }
  void Release(compactor::MovableBlock& m) override { arena_.Free(BlockOfMovable(m)->run()); }

 private:
  Arena& arena_;
  const std::vector<std::unique_ptr<SizeClass>>& classes_;
};

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
    targets_.push_back(std::make_unique<MoveTarget>());
    MoveTarget* t = targets_.back().get();
    t->run = *run;
    t->movable.SetOwner(t);
    return &t->movable;
  }
  // The run may hold pages of a move that failed part way: Free discards them.
  void PutTarget(compactor::MovableBlock* t) override { arena_.Free(TargetRun(*t)); }

 private:
  Arena& arena_;
  RunOf run_of_;
  std::vector<std::unique_ptr<MoveTarget>> targets_;  // live for one defragmentation
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_POOL_BLOCK_DRIVER_H_
