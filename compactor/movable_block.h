// compactor/movable_block.h — the movable-block framework's view of a block, and the driver interface.
//
// Types: MovableBlock (what the framework keeps per registered block: flags, references, the driver's ops —
// the analog of the kernel's PG_movable / PG_isolated page flags, page refcount and page->mapping),
// MovableOps (the driver's isolate / migrate / putback, the kernel's struct movable_operations),
// MigrateMode, MigrateResult.
//
// Ownership: the driver embeds or owns each MovableBlock and holds one reference from Register until
// Unregister. The framework takes a reference while it has a block isolated, so a block the driver frees
// meanwhile stays valid until the framework lets go; the last reference calls ops->Release.
// Flags (one atomic word): kMovable (set by Register, cleared by Unregister), kIsolated (set and cleared only
// by the framework), kLocked (the block lock: one trylock in isolation, held across migrate and putback).
// Invariants: kIsolated implies the framework holds a reference; after Unregister the framework never calls
// Isolate on the block, and a block isolated when it was unregistered counts as migrated (never put back).
// The framework includes nothing of any driver (alloc/ in particular).
#ifndef MOVA_COMPACTOR_MOVABLE_BLOCK_H_
#define MOVA_COMPACTOR_MOVABLE_BLOCK_H_

#include <atomic>
#include <cstdint>

namespace mova::compactor {

// How hard migration may try (the kernel's MIGRATE_ASYNC / MIGRATE_SYNC_LIGHT / MIGRATE_SYNC).
enum class MigrateMode {
  kAsync,      // never waits: trylock only; Again is retried for kAsyncPasses passes
  kSyncLight,  // may wait for the block lock (from kForcePass on); no waiting on the driver's own slow work
  kSync,       // may wait for anything (the block lock from kForcePass on)
};

enum class MigrateResult {
  kSuccess,  // src's contents now live in dst; src is the driver's to free
  kAgain,    // transient: try again in a later pass (the kernel's -EAGAIN)
  kFail,     // give up for this round: src is put back
};

inline constexpr int kSyncPasses = 10;  // the kernel's NR_MAX_MIGRATE_PAGES_RETRY
inline constexpr int kAsyncPasses = 3;
// Sync modes find a busy block lock with one trylock in the passes before this one (retried like Again) and
// wait for it from this pass on: the kernel's `force` (pass > 2 in migrate_pages_batch), so that a block busy
// for a moment does not hold up the blocks behind it in the first passes.
inline constexpr int kForcePass = 3;

class MovableBlock;

class MovableOps {
 public:
  virtual ~MovableOps() = default;
  // Prepares `block` for migration: false if it cannot move now (anything in it pinned, say). Called with
  // the block locked; nothing else of the framework's runs on the block meanwhile.
  virtual bool Isolate(MovableBlock& block, MigrateMode mode) = 0;
  // Moves isolated `src`'s contents into `dst` (a target the framework obtained from the caller's target
  // source) and makes every reference to src's contents point into dst. Called with src locked.
  virtual MigrateResult Migrate(MovableBlock& dst, MovableBlock& src, MigrateMode mode) = 0;
  // Undoes Isolate: `block` stays where it is and is usable again. Called with the block locked.
  virtual void Putback(MovableBlock& block) = 0;
  // The last reference to `block` is gone (the driver unregistered it earlier): the driver may free it.
  virtual void Release(MovableBlock& block) = 0;
};

class MovableBlock {
 public:
  static constexpr std::uint32_t kMovable = 1u << 0;
  static constexpr std::uint32_t kIsolated = 1u << 1;
  static constexpr std::uint32_t kLocked = 1u << 2;

  MovableBlock() = default;
  MovableBlock(const MovableBlock&) = delete;
  MovableBlock& operator=(const MovableBlock&) = delete;

  // The driver makes the block movable (the kernel's __SetPageMovable(page, mapping)); it then holds one
  // reference.
  void Register(MovableOps* ops, void* owner) {
    ops_ = ops;
    owner_ = owner;
    refs_.store(1, std::memory_order_relaxed);
    flags_.fetch_or(kMovable, std::memory_order_release);
  }
  // The driver is about to free the block: it is no longer movable, and the driver drops its reference.
  // If the framework has it isolated, migration counts it as migrated and the framework's reference is the
  // last: Release is called when the framework lets go (at once otherwise).
  void Unregister() {
    flags_.fetch_and(~kMovable, std::memory_order_acq_rel);
    Put();
  }

  // Names the owner of a block that is not registered (a migration target being prepared).
  void SetOwner(void* owner) { owner_ = owner; }

  bool movable() const { return (flags_.load(std::memory_order_acquire) & kMovable) != 0; }
  bool isolated() const { return (flags_.load(std::memory_order_acquire) & kIsolated) != 0; }
  void* owner() const { return owner_; }
  MovableOps* ops() const { return ops_; }

  // The block lock (the kernel's lock_page): the framework holds it across isolate, migrate and putback;
  // a driver may take it while it changes the block, and isolation then skips the block.
  bool TryLock() { return (flags_.fetch_or(kLocked, std::memory_order_acquire) & kLocked) == 0; }
  void Lock() {
    while (!TryLock()) flags_.wait(flags_.load(std::memory_order_relaxed) | kLocked, std::memory_order_relaxed);
  }
  void Unlock() {
    flags_.fetch_and(~kLocked, std::memory_order_release);
    flags_.notify_all();
  }

 private:
  friend class BlockMigrator;

  // A reference, unless the block is being freed (no references left).
  bool TryGet() {
    std::int32_t r = refs_.load(std::memory_order_acquire);
    while (r > 0) {
      if (refs_.compare_exchange_weak(r, r + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
    }
    return false;
  }
  void Put() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) ops_->Release(*this);
  }
  void SetIsolated(bool on) {
    if (on) {
      flags_.fetch_or(kIsolated, std::memory_order_release);
    } else {
      flags_.fetch_and(~kIsolated, std::memory_order_release);
    }
  }

  std::atomic<std::uint32_t> flags_{0};
  std::atomic<std::int32_t> refs_{0};
  MovableOps* ops_ = nullptr;
  void* owner_ = nullptr;
};

}  // namespace mova::compactor

#endif  // MOVA_COMPACTOR_MOVABLE_BLOCK_H_
