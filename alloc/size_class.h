// alloc/size_class.h — one size class at run time: its blocks in fullness groups, slot hand-out and
// return, and object compaction (zsmalloc's zs_compact for one class).
//
// Types: SizeClass, ClassCompaction, ClassSnapshot, RelocateItem. All state is guarded by mu_.
// Invariants (under mu_): every block of the class is on exactly one list, its group's (GroupOf(in_use,
//   objects)) lane LaneOf(block); group_sizes_[g] is the length of group g's lanes together; blocks_ == Σ
//   list lengths; pages_ == Σ pages of the blocks; slots_in_use_ == Σ in_use; groups_ is allocated while the
//   class has a block (NewBlock makes it, ReleaseSpare and Compact free it with the last block); a block has
//   the class's geometry, or fewer pages and slots after CutTail; a block's first page (its lane) changes only
//   while it is on no list (migration lists the moved copy afresh). A block's affinity names the thread cache
//   that took slots from it last (a hint for PickBlock, never a condition of correctness).
//   The empty group holds at most one block (the spare, kept so that a class at a block boundary does not
//   populate and discard a block on every other call); any other block that empties is released at once (its
//   pages go back to the arena).
//   Compact and ReleaseSpare release the spare too. A block isolated for migration is on no list (group
//   kGroupIsolated) and gets no new slots; slots of it freed meanwhile still return to it.
// Moves: objects are claimed in batches (handles/move_claims.h: one barrier per batch of up to kBatchObjects
//   objects or kBatchBytes bytes — kBudgetBatch* for a call with a deadline —, not one per object), each claim
//   with its destination slot reserved; a claim
//   given up at confirmation returns its destination slot and leaves the object where it was. Once the pool
//   keeps old copies (alloc/old_copies.h: it has had a read section), a moved object's old slot stays reserved
//   and goes to the old copies at the end of its batch, instead of back on its block's free list.
// Locks: mu_ → Arena::mu_ (taken inside Arena calls). Entry words are CASed under mu_ (compaction) but never
//   waited on under it; pinners and freers never take mu_ while waiting for a move. With the block lock of
//   the movable-block framework: block lock → mu_ (migrate, putback); under mu_ only a block TryLock
//   (isolation), which cannot wait.
#ifndef MOVA_ALLOC_SIZE_CLASS_H_
#define MOVA_ALLOC_SIZE_CLASS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/cache_affinities.h"
#include "alloc/lower_region_targets.h"
#include "alloc/old_copies.h"
#include "alloc/vacated_log.h"
#include "alloc/page_map.h"
#include "alloc/size_class_map.h"
#include "compactor/movable_block.h"
#include "handles/access_records.h"
#include "handles/handle_table.h"
#include "handles/move_claims.h"
#include "mova/stats.h"

namespace mova::alloc {

struct ClassCompaction {
  std::uint64_t objects_moved = 0;
  std::uint64_t bytes_moved = 0;       // slot bytes copied
  std::uint64_t blocks_released = 0;
  std::uint64_t pages_released = 0;
  std::uint64_t objects_skipped = 0;   // pinned, moving or being freed when compaction reached them
  std::uint64_t blocks_skipped = 0;    // blocks left alone because a thread cache holds one of their slots
  bool complete = true;                // false: the deadline passed first (after at least one batch)
};

struct ClassSnapshot {
  std::uint64_t blocks = 0;
  std::uint64_t pages = 0;         // of the blocks (a block cut short has fewer than the class's geometry)
  std::uint64_t slots_in_use = 0;  // live objects plus slots held by thread caches
  std::array<std::uint64_t, kNumGroups> groups{};
  std::uint64_t heap_bytes = 0;  // the class's own structures on the heap: itself, its lanes, its scratch
};

// One object Pool::relocate asks a class to move: its entry, the generation and place the handle was resolved
// at (the arena offset, and the block and slot there), and where its outcome goes.
struct RelocateItem {
  std::uint32_t index;
  std::uint16_t gen;
  std::uint64_t offset;
  Block* block;
  std::uint32_t slot;
  RelocateOutcome* outcome;
};

class SizeClass {
 public:
  // `ops` is the pool's movable-block driver, registered with every block this class makes.
  SizeClass(ClassId id, const SizeClassInfo& info, Arena& arena, PageMap& page_map, handles::HandleTable& table,
            handles::AccessRecords& records, OldCopies& old_copies, compactor::MovableOps* ops)
      : id_(id),
        info_(info),
        arena_(arena),
        page_map_(page_map),
        table_(table),
        records_(records),
        old_copies_(old_copies),
        ops_(ops) {}
  ~SizeClass();  // releases every block (the pool is going away)
  SizeClass(const SizeClass&) = delete;
  SizeClass& operator=(const SizeClass&) = delete;

  const SizeClassInfo& info() const { return info_; }
  // Checked mode: every move is logged there (the old place, for a stale touch's report). Set before use.
  void set_vacated_log(VacatedLog* log) { vacated_ = log; }

  // Takes up to out.size() free slots (at least one on success) for the thread cache holding `affinity` (of
  // `caches`), from blocks PickBlock chooses, marks them reserved and the blocks as that cache's. Makes a new
  // block if PickBlock finds none (and then sets `*made_block`, when given). ResourceExhausted when the arena
  // cannot.
  absl::StatusOr<std::size_t> TakeSlots(std::span<SlotRef> out, std::uint16_t affinity, const CacheAffinities& caches,
                                        bool* made_block = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Puts reserved slots back on their blocks' free lists; releases blocks that become empty (but the spare).
  void ReturnSlots(std::span<const SlotRef> slots) ABSL_LOCKS_EXCLUDED(mu_);
  // The same for old copies a compaction left (alloc/old_copies.h): no spare kept, as after Compact. Returns
  // the blocks released and their pages.
  struct Released {
    std::uint64_t blocks = 0;
    std::uint64_t pages = 0;
  };
  Released ReturnOldCopies(std::span<const SlotRef> slots) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves objects from the emptiest blocks into the fullest and releases the emptied blocks. The emptiest
  // block that cannot be emptied gives its highest objects to the room left, and every block still partly
  // filled moves its highest objects into its own lowest free slots (PackDown) and gives back the pages past
  // its last slot in use (CutTail).
  // Stops after the first batch of moves that ends at or past `deadline` (absl::InfiniteFuture(): never), once
  // this call has moved something: a call that stops has made progress (and cuts no tails). A call with a
  // deadline works on views of the blocks (kCompactView), fresh ones while they let something move, then
  // once on all of them; a call without one works on all of them at once.
  ClassCompaction Compact(absl::Time deadline = absl::InfiniteFuture()) ABSL_LOCKS_EXCLUDED(mu_);
  ClassSnapshot Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // Pool::relocate for this class's objects, in order (migrate_vma's steps), a batch at a time: setup claims
  // each object (a pinned or busy one is skipped) and confirms the batch's claims together; pages copies the
  // kept objects into consecutive slots of fresh blocks; finalize publishes them there and frees their old
  // slots, releasing blocks that empty. Writes each item's outcome and adds to `out`.
  void Relocate(std::span<const RelocateItem> items, RelocateResult& out) ABSL_LOCKS_EXCLUDED(mu_);
  // Releases the spare empty block, if any.
  void ReleaseSpare() ABSL_LOCKS_EXCLUDED(mu_);

  // ---- block migration (the pool's movable-block driver calls these) ----
  // The class lock, held by the defragmenter while it picks and isolates this class's blocks.
  Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  // True if `b` (an address the page map gave) is a live block of this class.
  bool LiveBlockAt(Block* b) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `b` off the fullness lists for migration: false if any slot is held by a thread cache or any
  // object is pinned or moving.
  bool IsolateBlock(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lists an isolated block again.
  void PutbackBlock(Block* b) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves isolated `src` into the run `to` (as many pages, allocated as to.backing says): every object is
  // claimed, the pages moved (Arena::MoveRun), every handle republished at the new place; `src` is unregistered.
  // kAgain if an object could not be claimed (pinned, or freed into a thread cache meanwhile); kFail if the
  // move failed (memory short for a copy) — nothing moved then.
  compactor::MigrateResult MigrateBlock(Block* src, const MoveTarget& to) ABSL_LOCKS_EXCLUDED(mu_);
  // Pages of blocks this class has migrated, cumulative.
  std::uint64_t pages_migrated() const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return pages_migrated_;
  }

 private:
  absl::StatusOr<Block*> NewBlock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseBlock(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseSpareLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back the pages of listed block `b` past the page of its last slot not free (in use, or held by a
  // thread cache): they go to the arena, the slots in them leave the free list, and b has fewer pages and
  // slots from then on. Returns the pages given back (0 when the last page holds a slot not free).
  std::uint32_t CutTail(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct CompactionBatch;
  // A budgeted Compact's view: the emptiest and the fullest partly filled blocks, half of them each. Gathering
  // every partly filled block read 4,000–9,000 descriptors of a large class at 0.1 µs each (a cache and TLB miss
  // each, kLanes at a time), 0.4–1.3 ms of a 1 ms cycle, before every call moved its first batch.
  static constexpr std::size_t kCompactView = 512;
  // Fills `blocks` with the partly filled blocks, all of them when they are at most `limit` (0: no limit),
  // else `limit` of them: the emptiest half from the lowest groups up, the rest from the fullest groups down.
  // True when it took them all.
  bool GatherPartlyFilled(std::size_t limit, std::vector<Block*>& blocks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Compaction among `blocks` (partly filled, listed; reordered here): the emptiest emptied into the fullest a
  // batch at a time, then the rest packed down and cut. True when it stopped at `deadline` (after a batch).
  bool CompactBlocks(std::vector<Block*>& blocks, CompactionBatch& batch, absl::Time deadline, ClassCompaction& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Before CutTail: moves the highest objects of listed block `b`, partly filled, into its own lowest free
  // slots (the moves join `batch`), as long as that lets the cut give back at least one more page. A block
  // that compaction filled in part from other blocks keeps its old objects scattered over its slots (90% of
  // a thin-out's objects were freed at random), so its last object sits near its end and nothing would be cut.
  void PackDown(Block* b, CompactionBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The partly filled blocks of `blocks` pack down (their moves done) and cut their tails.
  void PackAndCut(std::span<Block* const> blocks, CompactionBatch& batch, ClassCompaction& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remakes b's free list from its slots [0, objects) that are free, lowest first (so that later allocations
  // fill the block from the bottom).
  void RelinkFreeSlots(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReturnSlotsLocked(std::span<const SlotRef> slots) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Link(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unlink(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts b on the list its fill names; an empty b becomes the spare or is released.
  void Regroup(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::uint32_t PopFree(Block* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushFree(Block* b, std::uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One batch of compaction (CompactionBatch, declared above): objects claimed, each with a destination slot
  // reserved, then confirmed and moved.
  void MoveBatch(CompactionBatch& batch, ClassCompaction& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One move of compaction and relocation: the object of kept claim `i` of `claims`, in `src`'s slot `slot`,
  // into `dst`'s reserved slot `dslot` — the whole slot copied, dst's back-map pointed at the entry, the new
  // place published, the old slot freed, or kept for read sections (the caller regroups `src`, and ends the
  // batch with KeepMovedFrom).
  void MoveClaimed(handles::MoveClaims& claims, std::size_t i, Block* src, std::uint32_t slot, Block* dst,
                   std::uint32_t dslot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the old slots MoveClaimed kept since the last call to the old copies, stamped after their publishes.
  void KeepMovedFrom() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why relocate could not claim `item`'s object: from its entry word now.
  RelocateOutcome Unclaimable(const RelocateItem& item) const;

  const ClassId id_;
  const SizeClassInfo info_;
  Arena& arena_;
  PageMap& page_map_;
  handles::HandleTable& table_;
  handles::AccessRecords& records_;
  OldCopies& old_copies_;
  compactor::MovableOps* const ops_;
  VacatedLog* vacated_ = nullptr;

  mutable Mutex mu_;
  // Each group's blocks are on kLanes lists (a block's lane is a hash of its first page): compaction walks the
  // lanes side by side, so kLanes descriptor misses overlap where one list waits for each before it knows the
  // next (the 64 MiB thin-out's compaction: ~10% faster). Any block of a group serves as well as another.
  static constexpr int kLaneBits = 3;
  static constexpr int kLanes = 1 << kLaneBits;
  static int LaneOf(const Block* b) { return static_cast<int>((b->first_page * 0x9E3779B1u) >> (32 - kLaneBits)); }
  // The first block listed in group g, or null.
  Block* FirstOf(int g) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The block a refill for the cache holding `affinity` takes slots from: among the first kAffinityScan partly
  // filled blocks, fullest group first, one that no other live cache took slots from last; else an empty block;
  // nullptr (make one) when there is none. Two threads that take slots from one block both write its back-map
  // lines on every allocation, each line bouncing between their cores (two threads replacing objects at random
  // ran at 0.65-0.7 of one thread's speed each; with blocks of their own, at 0.8-1.1), so a thread keeps to its
  // own blocks and those of threads gone. With one thread, every block is its own: the fullest, as ever.
  Block* PickBlock(std::uint16_t affinity, const CacheAffinities& caches) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static constexpr int kAffinityScan = 16;
  // Allocated with the class's first block and freed with its last (768 B: most of a pool's ~230 classes
  // never hold a block, and inline lanes cost every pool 128 KiB).
  using GroupLanes = std::array<std::array<Block*, kLanes>, kNumGroups>;
  std::unique_ptr<GroupLanes> groups_ ABSL_GUARDED_BY(mu_);
  std::array<std::uint64_t, kNumGroups> group_sizes_ ABSL_GUARDED_BY(mu_){};  // blocks on each list
  std::uint64_t blocks_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t pages_ ABSL_GUARDED_BY(mu_) = 0;  // Σ pages of the blocks
  std::uint64_t slots_in_use_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t pages_migrated_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<SlotRef> moved_from_ ABSL_GUARDED_BY(mu_);  // old slots kept in the batch under way
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_SIZE_CLASS_H_
