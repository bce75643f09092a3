// compactor/block_migrator.h — isolation, migration with bounded retries, and putback, by the kernel's rules
// for non-LRU movable pages (isolate_movable_page, migrate_pages, putback_movable_pages).
//
// Types: BlockMigrator, TargetSource (where migration targets come from: the free scanner's side),
// MigrationStats (the kernel's compact_* / pgmigrate_* counters).
// Rules, each tested in tests/block_migrator_test.cc:
//   isolate: take a reference unless the block is being freed; check movable before locking; one trylock —
//     a busy block is skipped, not waited for; re-check movable and skip an already isolated block under the
//     lock; ask the driver (it refuses a block with anything pinned); mark isolated.
//   migrate: only isolated blocks — one that is not is refused, its driver not called (the kernel's
//     VM_BUG_ON_PAGE(!PageIsolated)); Success moves on; Again is retried in later passes, at most kSyncPasses
//     (kAsyncPasses in async mode, which never waits for a block lock; sync modes take it with one trylock
//     before kForcePass, a busy block being retried like Again, and wait for it from kForcePass on); Fail, or
//     no target, puts the block back at once; blocks still Again after the last pass are put back. A block its
//     driver unregistered while isolated counts as migrated and is not put back.
//   putback: only an isolated block; one that is not is refused, its driver's Putback never called.
// Thread safety: any number of migrators may run at once on overlapping blocks; the block flags and lock
// decide who wins. Counters are relaxed atomics.
#ifndef MOVA_COMPACTOR_BLOCK_MIGRATOR_H_
#define MOVA_COMPACTOR_BLOCK_MIGRATOR_H_

#include <atomic>
#include <cstdint>
#include <span>

#include "compactor/movable_block.h"

namespace mova::compactor {

class TargetSource {
 public:
  virtual ~TargetSource() = default;
  // A target to migrate `src` into (registered or not, the driver's choice), or nullptr if there is no room.
  virtual MovableBlock* GetTarget(MovableBlock& src) = 0;
  // Gives back a target that was not used (the migration was retried or failed).
  virtual void PutTarget(MovableBlock* target) = 0;
};

struct MigrationStats {
  std::uint64_t scanned = 0;         // isolation attempts
  std::uint64_t isolated = 0;        // blocks isolated
  std::uint64_t isolate_failed = 0;  // attempts refused (freed, not movable, busy, isolated, pinned)
  std::uint64_t migrated = 0;        // blocks migrated, including those freed while isolated
  std::uint64_t freed_isolated = 0;  // of which freed by their driver while isolated
  std::uint64_t failed = 0;          // blocks put back after Fail, no target, or retries exhausted
  std::uint64_t retries = 0;         // Again answers (and, in async mode, busy locks)
  std::uint64_t putbacks = 0;        // Putback calls made to drivers
  std::uint64_t refused = 0;         // Putback or Migrate asked of a block not isolated: nothing done
};

class BlockMigrator {
 public:
  // isolate_movable_page. On true the block is isolated and this migrator holds a reference to it until
  // Migrate or Putback lets it go.
  bool Isolate(MovableBlock& block, MigrateMode mode);
  // Puts back a block this migrator isolated and will not migrate. False, with nothing done, for a block
  // that is not isolated.
  bool Putback(MovableBlock& block);
  // migrate_pages: migrates the isolated blocks, targets from `targets`. Returns how many migrated; every
  // block that did not is put back. All references taken by Isolate are released. A block in the list that
  // is not isolated is refused (counted, left alone: it holds no reference of ours).
  std::size_t Migrate(std::span<MovableBlock* const> isolated, TargetSource& targets, MigrateMode mode);

  MigrationStats stats() const;

 private:
  // Outcome of one attempt on one isolated block.
  enum class Step { kMigrated, kFailed, kRetry };
  Step MigrateOne(MovableBlock& block, TargetSource& targets, MigrateMode mode, int pass);
  // With the block locked: the driver's Putback unless the block was unregistered, then unlock and drop
  // the isolation reference.
  void PutbackLocked(MovableBlock& block);
  void FinishFreed(MovableBlock& block);

  struct Counters {
    std::atomic<std::uint64_t> scanned{0}, isolated{0}, isolate_failed{0}, migrated{0}, freed_isolated{0},
        failed{0}, retries{0}, putbacks{0}, refused{0};
  };
  Counters c_;
};

}  // namespace mova::compactor

#endif  // MOVA_COMPACTOR_BLOCK_MIGRATOR_H_
