// compactor/block_migrator.cc — see block_migrator.h.
#include "compactor/block_migrator.h"

#include <vector>

namespace mova::compactor {
namespace {

void Bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

bool BlockMigrator::Isolate(MovableBlock& b, MigrateMode mode) {
  Bump(c_.scanned);
  auto refuse = [&](bool locked, bool referenced) {
    if (locked) b.Unlock();
    if (referenced) b.Put();
    Bump(c_.isolate_failed);
    return false;
  };
  if (!b.TryGet()) return refuse(false, false);      // being freed
  if (!b.movable()) return refuse(false, true);      // checked before locking
  if (!b.TryLock()) return refuse(false, true);      // busy: skipped, one attempt only
  if (!b.movable() || b.isolated()) return refuse(true, true);
  if (!b.ops()->Isolate(b, mode)) return refuse(true, true);  // the driver says no (something is pinned)
  b.SetIsolated(true);
  b.Unlock();
  Bump(c_.isolated);
  return true;
}

void BlockMigrator::PutbackLocked(MovableBlock& b) {
  if (b.movable()) {
    b.ops()->Putback(b);
    Bump(c_.putbacks);
  }
  b.SetIsolated(false);
  b.Unlock();
  b.Put();
}

bool BlockMigrator::Putback(MovableBlock& b) {
  b.Lock();
  if (!b.isolated()) {
    b.Unlock();
    Bump(c_.refused);
    return false;
  }
  PutbackLocked(b);
  return true;
}

void BlockMigrator::FinishFreed(MovableBlock& b) {
  // Unregistered by its driver while isolated: nothing to move and nothing to put back. The migrator's
  // reference is the last; dropping it lets the driver release the block.
  b.SetIsolated(false);
  Bump(c_.migrated);
  Bump(c_.freed_isolated);
  b.Put();
}

BlockMigrator::Step BlockMigrator::MigrateOne(MovableBlock& b, TargetSource& targets, MigrateMode mode,
                                               int pass) {
  if (!b.movable()) {
    FinishFreed(b);
    return Step::kMigrated;
  }
  if (!b.TryLock()) {
    if (mode == MigrateMode::kAsync || pass < kForcePass) {
      Bump(c_.retries);
      return Step::kRetry;
    }
    b.Lock();
  }
  if (!b.movable()) {
    b.Unlock();
    FinishFreed(b);
    return Step::kMigrated;
  }
  MovableBlock* dst = targets.GetTarget(b);
  if (dst == nullptr) {  // no room anywhere: give up on this block for this round
    Bump(c_.failed);
    PutbackLocked(b);
    return Step::kFailed;
  }
  switch (b.ops()->Migrate(*dst, b, mode)) {
    case MigrateResult::kSuccess:
      b.SetIsolated(false);
      b.Unlock();
      Bump(c_.migrated);
      b.Put();
      return Step::kMigrated;
    case MigrateResult::kAgain:
      targets.PutTarget(dst);
      b.Unlock();
      Bump(c_.retries);
      return Step::kRetry;
    case MigrateResult::kFail:
      break;
  }
  targets.PutTarget(dst);
  Bump(c_.failed);
  PutbackLocked(b);
  return Step::kFailed;
}

std::size_t BlockMigrator::Migrate(std::span<MovableBlock* const> isolated, TargetSource& targets,
                                   MigrateMode mode) {
  std::size_t migrated = 0;
  std::vector<MovableBlock*> pending;
  pending.reserve(isolated.size());
  for (MovableBlock* b : isolated) {
    if (b->isolated()) {
      pending.push_back(b);
    } else {
      Bump(c_.refused);
    }
  }
  const int passes = mode == MigrateMode::kAsync ? kAsyncPasses : kSyncPasses;
  for (int pass = 0; pass < passes && !pending.empty(); ++pass) {
    std::vector<MovableBlock*> again;
    for (MovableBlock* b : pending) {
      switch (MigrateOne(*b, targets, mode, pass)) {
        case Step::kMigrated:
          ++migrated;
          break;
        case Step::kRetry:
          again.push_back(b);
          break;
        case Step::kFailed:
          break;
      }
    }
    pending.swap(again);
  }
  for (MovableBlock* b : pending) {  // retries exhausted: put back (waiting for the lock even in async mode)
    b->Lock();
    if (!b->movable()) {
      b->Unlock();
      FinishFreed(*b);
      ++migrated;
      continue;
    }
    Bump(c_.failed);
    PutbackLocked(*b);
  }
  return migrated;
}

MigrationStats BlockMigrator::stats() const {
  MigrationStats s;
  s.scanned = c_.scanned.load(std::memory_order_relaxed);
  s.isolated = c_.isolated.load(std::memory_order_relaxed);
  s.isolate_failed = c_.isolate_failed.load(std::memory_order_relaxed);
  s.migrated = c_.migrated.load(std::memory_order_relaxed);
  s.freed_isolated = c_.freed_isolated.load(std::memory_order_relaxed);
  s.failed = c_.failed.load(std::memory_order_relaxed);
  s.retries = c_.retries.load(std::memory_order_relaxed);
  s.putbacks = c_.putbacks.load(std::memory_order_relaxed);
  s.refused = c_.refused.load(std::memory_order_relaxed);
  return s;
}

}  // namespace mova::compactor
