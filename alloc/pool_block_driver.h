// alloc/pool_block_driver.h — the pool as a driver of the movable-block framework, and the free scanner
// that finds it room.
//
// Types: PoolBlockDriver (MovableOps for class blocks: isolate / migrate / putback / release dispatch to the
// block's SizeClass), LowerRegionTargets (TargetSource: a run of the block's size in a region below the
// block's own, by the arena's first fit, so blocks move down and high regions empty out).
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
    return classes_[s->cls]->MigrateBlock(s, BlockOfMovable(dst));
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
  explicit LowerRegionTargets(Arena& arena) : arena_(arena) {}

  compactor::MovableBlock* GetTarget(compactor::MovableBlock& src) override {
    const Block* s = BlockOfMovable(src);
    absl::StatusOr<PageRun> run =
        arena_.AllocateBelow(Pages(s->pages), static_cast<std::uint32_t>(s->first_page / kPagesPerRegion));
    if (!run.ok()) return nullptr;
    auto* t = new (arena_.PageAddress(run->first)) Block;  // a header naming the run; Migrate fills the rest
    t->first_page = run->first;
    t->pages = static_cast<std::uint8_t>(run->count);
    t->movable.SetOwner(t);
    return &t->movable;
  }
  void PutTarget(compactor::MovableBlock* t) override { arena_.Free(BlockOfMovable(*t)->run()); }

 private:
  Arena& arena_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_POOL_BLOCK_DRIVER_H_
