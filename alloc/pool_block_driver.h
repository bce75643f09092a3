// alloc/pool_block_driver.h — the pool's class blocks as a driver of the movable-block framework.
//
// Types: PoolBlockDriver (MovableOps for class blocks: isolate / migrate / putback / release dispatch to the
// block's SizeClass). Its migration targets come from alloc/lower_region_targets.h.
// Contract: the pool isolates its blocks only from its defragmenter, which holds the block's class lock
// while it validates and isolates the block (so the block cannot be released under it); migrate and putback
// take the class lock themselves. A migrated block's old place goes to the old copies when the pool keeps
// them (alloc/old_copies.h), else back to the arena.
#ifndef MOVA_ALLOC_POOL_BLOCK_DRIVER_H_
#define MOVA_ALLOC_POOL_BLOCK_DRIVER_H_

#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/lower_region_targets.h"
#include "alloc/old_copies.h"
#include "alloc/size_classes.h"
#include "compactor/movable_block.h"

namespace mova::alloc {

inline Block* BlockOfMovable(compactor::MovableBlock& m) { return static_cast<Block*>(m.owner()); }

class PoolBlockDriver final : public compactor::MovableOps {
 public:
  PoolBlockDriver(OldCopies& old_copies, const SizeClasses& classes)
      : old_copies_(old_copies), classes_(classes) {}

  bool Isolate(compactor::MovableBlock& m, compactor::MigrateMode) override {
    Block* b = BlockOfMovable(m);
    return classes_.Get(ClassId(b->cls)).IsolateBlock(b);
  }
  compactor::MigrateResult Migrate(compactor::MovableBlock& dst, compactor::MovableBlock& src,
                                   compactor::MigrateMode) override {
    Block* s = BlockOfMovable(src);
    return classes_.Get(ClassId(s->cls)).MigrateBlock(s, TargetOf(dst));
  }
  void Putback(compactor::MovableBlock& m) override {
    Block* b = BlockOfMovable(m);
    classes_.Get(ClassId(b->cls)).PutbackBlock(b);
  }
  void Release(compactor::MovableBlock& m) override {
    const Block* b = BlockOfMovable(m);
    old_copies_.ReleaseRun(b->run(), /*moved_away=*/b->group == kGroupMovedOut);
  }

 private:
  OldCopies& old_copies_;
  const SizeClasses& classes_;  // a block's class was made before the block
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_POOL_BLOCK_DRIVER_H_
