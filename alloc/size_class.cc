// alloc/size_class.cc — see size_class.h.
#include "alloc/size_class.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "handles/move_claims.h"

namespace mova::alloc {

SizeClass::~SizeClass() {
  MutexLock lock(&mu_);
  if (groups_ == nullptr) return;
  for (auto& lanes : *groups_) {
    for (Block*& head : lanes) {
      while (head != nullptr) {
        Block* b = head;
        head = b->next;
        const PageRun run = b->run();
        page_map_.Unmap(run.first, run.count);
        arena_.Free(run);
      }
    }
  }
}

Block* SizeClass::FirstOf(int g) const {
  if (group_sizes_[g] == 0) return nullptr;
  for (Block* head : (*groups_)[g]) {
    if (head != nullptr) return head;
  }
  return nullptr;
}

void SizeClass::Link(Block* b) {
  b->group = GroupOf(b->in_use, b->objects);
  Block*& head = (*groups_)[b->group][LaneOf(b)];
  b->prev = nullptr;
  b->next = head;
  if (b->next != nullptr) b->next->prev = b;
  head = b;
  ++group_sizes_[b->group];
}

void SizeClass::Unlink(Block* b) {
  if (b->prev != nullptr) {
    b->prev->next = b->next;
  } else {
    (*groups_)[b->group][LaneOf(b)] = b->next;
  }
  if (b->next != nullptr) b->next->prev = b->prev;
  b->prev = b->next = nullptr;
  --group_sizes_[b->group];
}

void SizeClass::Regroup(Block* b) {
  if (b->group == kGroupIsolated) {  // not on a list; an isolated block that empties is freed under migration
    if (b->in_use == 0) ReleaseBlock(b);
    return;
  }
  if (b->in_use == 0) {
    // Keep one empty block as the class's spare, so that a class hovering at a block boundary does not
    // populate and discard a block on every other call; a second empty block is released.
    Unlink(b);
    if (group_sizes_[kGroupEmpty] == 0) {
      Link(b);
    } else {
      ReleaseBlock(b);
    }
    return;
  }
  if (GroupOf(b->in_use, b->objects) == b->group) return;
  Unlink(b);
  Link(b);
}

absl::StatusOr<Block*> SizeClass::NewBlock() {
  if (groups_ == nullptr) {
    groups_.reset(new (std::nothrow) GroupLanes{});
    if (groups_ == nullptr) return absl::ResourceExhaustedError("mova: out of memory for a size class's block lists");
  }
  absl::StatusOr<PageRun> run = arena_.Allocate(Pages(info_.pages_per_block));
  if (!run.ok()) return run.status();
  // The descriptor and back-map live at the head of the block's own (populated) pages.
  auto* b = new (arena_.PageAddress(run->first)) Block;
  b->cls = static_cast<std::uint16_t>(id_.value());
  b->pages = static_cast<std::uint8_t>(run->count);
  b->first_page = run->first;
  b->slot_size = info_.slot_size;
  b->objects = static_cast<std::uint16_t>(info_.objects_per_block);
  b->data_offset = static_cast<std::uint16_t>(info_.data_offset);
  for (std::uint32_t i = 0; i < b->objects; ++i) {
    b->Owner(i).store(FreeLink(i + 1 < b->objects ? i + 1 : kNoSlot), std::memory_order_relaxed);
  }
  b->free_head = 0;
  b->in_use = 0;
  page_map_.MapBlock(*run, id_);
  b->movable.Register(ops_, b);
  ++blocks_;
  pages_ += b->pages;
  Link(b);
  return b;
}

void SizeClass::ReleaseBlock(Block* b) {
  const PageRun run = b->run();
  b->magic = 0;  // checked mode verifies the magic of every block it frees or pins into
  page_map_.Unmap(run.first, run.count);
  --blocks_;
  pages_ -= run.count;
  // The pages go back to the arena when the last reference goes: now, unless the block is isolated (then
  // the migrator's, and migration counts the block as migrated).
  b->movable.Unregister();
}

bool SizeClass::LiveBlockAt(Block* b) const {
  const PageOwner o = page_map_.Get(b->first_page);
  return o.present() && !o.huge() && o.page_in_block() == 0 && o.cls() == id_ && b->magic == kBlockMagic;
}

bool SizeClass::IsolateBlock(Block* b) {
  mu_.AssertHeld();
  if (b->group == kGroupIsolated) return false;
  // Every slot in use must hold a live, unpinned object that this block's back-map names: a slot a thread
  // cache holds (reserved, or freed into a cache) would be handed out from the old place after the move.
  for (std::uint32_t slot = 0; slot < b->objects; ++slot) {
    const std::uint32_t owner = b->Owner(slot).load(std::memory_order_acquire);
    if (OnFreeList(owner)) continue;
    if (owner == kSlotReserved) return false;
    const handles::Word w = table_.entry(owner).load(std::memory_order_acquire);
    if (!handles::IsLiveGen(handles::GenOf(w)) || handles::OffsetOf(w) != b->SlotOffset(slot) ||
        handles::PinsOf(w) != 0 || handles::IsMoving(w) || records_.PinnedByRecord(handles::TagOf(owner))) {
      return false;
    }
  }
  Unlink(b);
  b->group = kGroupIsolated;
  return true;
}

void SizeClass::PutbackBlock(Block* b) {
  MutexLock lock(&mu_);
  if (b->group != kGroupIsolated) return;
  Link(b);
  Regroup(b);  // an emptied block becomes the spare or is released
}

compactor::MigrateResult SizeClass::MigrateBlock(Block* src, const MoveTarget& target) {
  MutexLock lock(&mu_);
  const PageRun to = target.run;
  if (!src->movable.movable()) {
    // Emptied and freed while isolated (after the migrator last looked): that counts as migrated, and the
    // target is not needed.
    arena_.Free(to);
    return compactor::MigrateResult::kSuccess;
  }
  if (src->group != kGroupIsolated) return compactor::MigrateResult::kFail;
  // Claim every object (MOVING) and confirm the claims: pins and frees of them wait until they are published
  // at dst.
  handles::MoveClaims claims(table_, records_);
  for (std::uint32_t slot = 0; slot < src->objects; ++slot) {
    const std::uint32_t owner = src->Owner(slot).load(std::memory_order_acquire);
    if (OnFreeList(owner)) continue;
    if (owner == kSlotReserved || !claims.Add(owner, src->SlotOffset(slot))) {
      return compactor::MigrateResult::kAgain;  // pinned, freed into a cache, or being freed: try again later
    }
  }
  if (claims.Confirm() != 0) return compactor::MigrateResult::kAgain;  // claims.Reset() gives up the rest
  // Move the whole block — descriptor, back-map and slots — then make the moved copy a block of its own.
  // The framework still works on src's descriptor after this returns (unlock, drop its reference), so the
  // move keeps it readable at src.
  const PageRun from = src->run();
  const std::uint64_t from_off = src->offset();
  absl::StatusOr<compactor::MoveOutcome> moved =
      arena_.MoveRun(to, from, compactor::MoveKind::kBlock, Bytes(sizeof(Block)), target.backing);
  if (!moved.ok()) return compactor::MigrateResult::kFail;  // src is intact; the framework puts it back
  auto* dst = reinterpret_cast<Block*>(arena_.PageAddress(to.first));
  dst->first_page = to.first;
  dst->prev = dst->next = nullptr;
  new (&dst->movable) compactor::MovableBlock();
  dst->movable.Register(ops_, dst);
  page_map_.MapBlock(to, id_);
  const std::uint64_t to_off = dst->offset();
  for (std::size_t i = 0; i < claims.size(); ++i) {
    const std::uint64_t old_off = handles::OffsetOf(claims.word(i)), new_off = old_off - from_off + to_off;
    claims.Publish(i, new_off);
    if (vacated_ != nullptr) vacated_->Moved(old_off, info_.slot_size, claims.index(i), new_off);
  }
  dst->group = kGroupEmpty;
  Link(dst);
  Regroup(dst);
  // The old place: unmapped, and the driver's reference dropped; the migrator's reference frees the pages
  // (the driver's Release: to the old copies, when the pool keeps them).
  src->magic = 0;
  src->group = kGroupMovedOut;
  page_map_.Unmap(from.first, from.count);
  src->movable.Unregister();
  pages_migrated_ += to.count;
  return compactor::MigrateResult::kSuccess;
}

std::uint32_t SizeClass::PopFree(Block* b) {
  const std::uint32_t slot = b->free_head;
  b->free_head = NextFree(b->Owner(slot).load(std::memory_order_relaxed));
  b->Owner(slot).store(kSlotReserved, std::memory_order_relaxed);
  ++b->in_use;
  ++slots_in_use_;
  return slot;
}

void SizeClass::PushFree(Block* b, std::uint32_t slot) {
  b->Owner(slot).store(FreeLink(b->free_head), std::memory_order_relaxed);
  b->free_head = slot;
  --b->in_use;
  --slots_in_use_;
}

Block* SizeClass::PickBlock(std::uint16_t affinity, const CacheAffinities& caches) const {
  if (groups_ == nullptr) return nullptr;
  auto ours = [&](const Block* b) {
    return b->affinity == affinity || affinity == CacheAffinities::kNone || !caches.Live(b->affinity);
  };
  int budget = kAffinityScan;
  for (int g = kGroupFull - 1; g > kGroupEmpty && budget > 0; --g) {
    if (group_sizes_[g] == 0) continue;
    for (Block* head : (*groups_)[g]) {
      for (Block* b = head; b != nullptr && budget > 0; b = b->next, --budget) {
        if (ours(b)) return b;
      }
    }
  }
  // None at hand: an empty block (anyone's), or a new one. Blocks past the first kAffinityScan are not looked
  // at (a refill stays short under the lock), so a block may be made while other threads' blocks, or this
  // cache's own further down a list, have room; compaction (explicit, direct or background) takes that slack
  // back, moving objects between blocks whichever cache took from them.
  return FirstOf(kGroupEmpty);
}

absl::StatusOr<std::size_t> SizeClass::TakeSlots(std::span<SlotRef> out, std::uint16_t affinity,
                                                 const CacheAffinities& caches, bool* made_block) {
  MutexLock lock(&mu_);
  std::size_t n = 0;
  while (n < out.size()) {
    Block* b = PickBlock(affinity, caches);
    if (b == nullptr) {
      absl::StatusOr<Block*> fresh = NewBlock();
      if (!fresh.ok()) {
        if (n > 0) break;
        return fresh.status();
      }
      b = *fresh;
      if (made_block != nullptr) *made_block = true;
    }
    b->affinity = affinity;
    while (n < out.size() && b->free_head != kNoSlot) out[n++] = PackSlot(b, PopFree(b));
    Regroup(b);
  }
  return n;
}

SizeClass::Released SizeClass::ReturnOldCopies(std::span<const SlotRef> slots) {
  MutexLock lock(&mu_);
  const std::uint64_t blocks = blocks_, pages = pages_;
  ReturnSlotsLocked(slots);
  ReleaseSpareLocked();
  return Released{blocks - blocks_, pages - pages_};
}

void SizeClass::RelinkFreeSlots(Block* b) {
  std::uint32_t head = kNoSlot;
  for (std::uint32_t slot = b->objects; slot-- > 0;) {
    if (!OnFreeList(b->Owner(slot).load(std::memory_order_relaxed))) continue;
    b->Owner(slot).store(FreeLink(head), std::memory_order_relaxed);
    head = slot;
  }
  b->free_head = static_cast<std::uint16_t>(head);
}

std::uint32_t SizeClass::CutTail(Block* b) {
  std::int64_t last = -1;  // the last slot not free
  for (std::uint32_t slot = b->objects; slot-- > 0;) {
    if (!OnFreeList(b->Owner(slot).load(std::memory_order_relaxed))) {
      last = slot;
      break;
    }
  }
  if (last < 0) return 0;  // empty: Regroup releases it whole
  const std::uint64_t end = b->data_offset + (static_cast<std::uint64_t>(last) + 1) * b->slot_size;
  const std::uint32_t keep = static_cast<std::uint32_t>((end + kPageSize - 1) / kPageSize);
  if (keep >= b->pages) return 0;
  const std::uint32_t objects =
      static_cast<std::uint32_t>((std::uint64_t{keep} * kPageSize - b->data_offset) / b->slot_size);
  const PageRun tail{b->first_page + keep, b->pages - keep};
  Unlink(b);
  page_map_.Unmap(tail.first, tail.count);
  b->pages = static_cast<std::uint8_t>(keep);
  b->objects = static_cast<std::uint16_t>(objects);
  RelinkFreeSlots(b);  // the slots cut off leave the free list
  pages_ -= tail.count;
  arena_.Free(tail);
  Link(b);
  return tail.count;
}

void SizeClass::ReturnSlots(std::span<const SlotRef> slots) {
  MutexLock lock(&mu_);
  ReturnSlotsLocked(slots);
}

void SizeClass::ReturnSlotsLocked(std::span<const SlotRef> slots) {
  // A thread cache flushes slots in the order they were freed, so runs of them share a block: each run
  // regroups its block once (a division), not once per slot. A block's in_use only falls within a run, so
  // regrouping at the run's end is the same as after each slot.
  Block* run = nullptr;
  for (SlotRef r : slots) {
    Block* b = BlockOf(r);
    if (b != run) {
      if (run != nullptr) Regroup(run);
      run = b;
    }
    PushFree(b, SlotIndexOf(r));
  }
  if (run != nullptr) Regroup(run);
}

// Claims made but not yet confirmed and moved, with the destination slot reserved for each.
struct SizeClass::CompactionBatch {
  static constexpr std::size_t kBatchObjects = 1024;
  static constexpr std::uint64_t kBatchBytes = 256 * 1024;  // bounds how long a claimed object's users wait
  // With a deadline: a call stops only at the end of a batch, so the batch is what it may overrun by. A batch
  // of 1024 objects took 1–2 ms here (a 1 ms budget's calls took 5 ms); one of 128 about 0.15 ms, for one
  // more barrier per 128 moves.
  static constexpr std::size_t kBudgetBatchObjects = 128;
  static constexpr std::uint64_t kBudgetBatchBytes = 32 * 1024;

  // Sized for a whole batch of `slot_size` objects at once: arrays grown by doubling left their smaller copies
  // as holes in malloc's heap, pages that a process's heap keeps (with the entry migrator's lists sized the
  // same way, 28 KiB of scattered's RSS at 64 MiB).
  CompactionBatch(handles::HandleTable& table, handles::AccessRecords& records, bool budgeted, std::uint32_t slot_size)
      : claims(table, records),
        max_objects(budgeted ? kBudgetBatchObjects : kBatchObjects),
        max_bytes(budgeted ? kBudgetBatchBytes : kBatchBytes) {
    const std::size_t most = std::min<std::size_t>(max_objects, max_bytes / slot_size + 1);
    moves.reserve(most);
    claims.Reserve(most);
  }
  bool full(std::uint32_t slot_size) const {
    return moves.size() >= max_objects || moves.size() * std::uint64_t{slot_size} >= max_bytes;
  }

  struct Move {
    Block* src;
    Block* dst;
    std::uint32_t slot;
    std::uint32_t dslot;
  };
  handles::MoveClaims claims;  // claims[i] is moves[i]'s
  std::vector<Move> moves;
  const std::size_t max_objects;
  const std::uint64_t max_bytes;
};

void SizeClass::MoveClaimed(handles::MoveClaims& claims, std::size_t i, Block* src, std::uint32_t slot, Block* dst,
                            std::uint32_t dslot) {
  const std::uint64_t dst_off = dst->SlotOffset(dslot), src_off = src->SlotOffset(slot);
  // The whole slot is copied: the requested size travels in the handle, not in the block.
  std::memcpy(arena_.base() + dst_off, arena_.base() + src_off, info_.slot_size);
  dst->Owner(dslot).store(claims.index(i), std::memory_order_release);
  claims.Publish(i, dst_off);
  if (vacated_ != nullptr) vacated_->Moved(src_off, info_.slot_size, claims.index(i), dst_off);
  if (old_copies_.keeping()) {
    // Read sections may still be reading the old place: it stays reserved (counted in use, so its block
    // stays) until the old copies give it back.
    src->Owner(slot).store(kSlotReserved, std::memory_order_relaxed);
    moved_from_.push_back(PackSlot(src, slot));
  } else {
    PushFree(src, slot);
  }
}

void SizeClass::KeepMovedFrom() {
  if (moved_from_.empty()) return;
  old_copies_.AddSlots(id_.value(), moved_from_, Bytes(info_.slot_size));
  moved_from_.clear();
}

void SizeClass::MoveBatch(CompactionBatch& batch, ClassCompaction& out) {
  if (batch.moves.empty()) return;
  out.objects_skipped += batch.claims.Confirm();
  for (std::size_t i = 0; i < batch.moves.size(); ++i) {
    const CompactionBatch::Move& m = batch.moves[i];
    if (!batch.claims.kept(i)) {  // pinned or being freed: it stays, and its destination slot is free again
      PushFree(m.dst, m.dslot);
      continue;
    }
    MoveClaimed(batch.claims, i, m.src, m.slot, m.dst, m.dslot);
    ++out.objects_moved;
    out.bytes_moved += m.src->slot_size;
  }
  KeepMovedFrom();
  batch.claims.Reset();
  batch.moves.clear();
}

void SizeClass::PackDown(Block* b, CompactionBatch& batch) {
  // Slots left for read sections stay taken until the old copies go back: packing would only add to them.
  if (old_copies_.keeping() || b->in_use == 0) return;
  const std::uint64_t packed_end = b->data_offset + std::uint64_t{b->in_use} * b->slot_size;
  if ((packed_end + kPageSize - 1) / kPageSize >= b->pages) return;  // packed, it would keep every page
  // Pairs the lowest free slot with the highest object while the slot lies below it. A taken slot leaves the
  // free list without unlinking (that would walk the list): the list is remade from the slots still free.
  std::uint32_t lo = 0, hi = b->objects, taken = 0;
  for (;;) {
    while (lo < hi && !OnFreeList(b->Owner(lo).load(std::memory_order_relaxed))) ++lo;
    while (hi > lo && OnFreeList(b->Owner(hi - 1).load(std::memory_order_relaxed))) --hi;
    if (hi <= lo + 1) break;  // no free slot below the highest object
    const std::uint32_t slot = hi - 1;
    const std::uint32_t owner = b->Owner(slot).load(std::memory_order_acquire);
    // A slot a thread cache holds (kSlotReserved, or a retired index: above kMaxHandleIndex, or claimed in
    // vain), a pinned or busy object: the tail cannot empty past it.
    if (batch.full(b->slot_size) || owner > kMaxHandleIndex || !batch.claims.Add(owner, b->SlotOffset(slot))) break;
    b->Owner(lo).store(kSlotReserved, std::memory_order_relaxed);  // off the free list below
    ++b->in_use;
    ++slots_in_use_;
    batch.moves.push_back({b, b, slot, lo});
    ++taken;
    ++lo;
    --hi;
  }
  if (taken > 0) RelinkFreeSlots(b);  // the taken slots' links are gone
}

void SizeClass::PackAndCut(std::span<Block* const> blocks, CompactionBatch& batch, ClassCompaction& out) {
  for (Block* b : blocks) {
    if (b->in_use < b->objects) PackDown(b, batch);
  }
  MoveBatch(batch, out);
  for (Block* b : blocks) {
    if (b->in_use < b->objects) out.pages_released += CutTail(b);
  }
}

ClassCompaction SizeClass::Compact(absl::Time deadline) {
  MutexLock lock(&mu_);
  ClassCompaction out;
  if (Block* spare = FirstOf(kGroupEmpty); spare != nullptr) {  // compaction leaves no empty block behind
    out.pages_released += spare->pages;
    ++out.blocks_released;
    ReleaseSpareLocked();
  }
  if (groups_ == nullptr) return out;  // the class holds no block
  const bool budgeted = deadline != absl::InfiniteFuture();
  CompactionBatch batch(table_, records_, budgeted, info_.slot_size);
  std::vector<Block*> blocks;
  // A budgeted call works on views of kCompactView blocks, fresh ones while they let something move, then once
  // on every block (a view whose destinations cannot take its sources' objects says little of the rest).
  for (bool whole = !budgeted;;) {
    const std::uint64_t moved_before = out.objects_moved;
    const bool all = GatherPartlyFilled(whole ? 0 : kCompactView, blocks);
    if (CompactBlocks(blocks, batch, deadline, out) || all) break;
    if (out.objects_moved == moved_before) {
      whole = true;
    } else if (absl::Now() >= deadline) {
      out.complete = false;
      break;
    }
  }
  ReleaseSpareLocked();  // a source emptied above may have become the spare; it was counted then
  return out;
}

bool SizeClass::GatherPartlyFilled(std::size_t limit, std::vector<Block*>& blocks) {
  std::size_t partly_filled = 0;
  for (int g = 1; g < kGroupFull; ++g) partly_filled += group_sizes_[g];
  const bool all = limit == 0 || partly_filled <= limit;
  if (all) limit = partly_filled;
  blocks.clear();
  // Sized once: grown by doubling, a large class left a trail of freed arrays in the heap (malloc keeps the
  // pages of freed chunks below live ones: ~0.1 MiB of RSS after compact()).
  blocks.reserve(limit);
  // Takes up to `most` blocks from the lists that begin at `heads`, walked side by side (a step of each in turn:
  // a walk waits for each descriptor before it knows the next, and side by side those misses overlap); false
  // when it stopped at `most`.
  auto take = [&blocks](std::span<Block*> heads, std::size_t& most) {
    for (std::size_t left = heads.size(); left > 0;) {
      left = 0;
      for (Block*& b : heads) {
        if (b == nullptr) continue;
        if (most == 0) return false;
        blocks.push_back(b);
        --most;
        b = b->next;
        ++left;
      }
    }
    return true;
  };
  if (all) {
    std::array<Block*, (kGroupFull - 1) * kLanes> walk;  // groups 1 .. kGroupFull - 1, every lane
    for (int g = 1; g < kGroupFull; ++g) std::copy((*groups_)[g].begin(), (*groups_)[g].end(), &walk[(g - 1) * kLanes]);
    take(walk, limit);
  } else {
    // The emptiest blocks (sources) from the lowest groups up, then the fullest (destinations) from the highest
    // down to the group above the one the first half stopped in: no block taken twice.
    std::size_t most = limit / 2;
    int g = 1;
    for (; g < kGroupFull; ++g) {
      std::array<Block*, kLanes> lanes = (*groups_)[g];
      if (!take(lanes, most)) break;
    }
    most = limit - blocks.size();
    for (int h = kGroupFull - 1; h > g; --h) {
      std::array<Block*, kLanes> lanes = (*groups_)[h];
      if (!take(lanes, most)) break;
    }
  }
  return all;
}

bool SizeClass::CompactBlocks(std::vector<Block*>& blocks, CompactionBatch& batch, absl::Time deadline,
                              ClassCompaction& out) {
  if (blocks.size() < 2) {
    PackAndCut(blocks, batch, out);
    return false;
  }
  // Fullest first: a counting sort by in_use (at most objects_per_block buckets), one read of each descriptor. A
  // comparison sort read two descriptors per comparison, a cache miss each on a large class: milliseconds
  // before a budgeted call moved anything.
  std::vector<std::uint32_t> at(info_.objects_per_block + 1, 0);  // at[k]: where blocks with in_use k start
  for (const Block* b : blocks) ++at[b->in_use];
  for (std::uint32_t k = info_.objects_per_block + 1, start = 0; k-- > 0;) {  // descending: fullest first
    const std::uint32_t n = at[k];
    at[k] = start;
    start += n;
  }
  std::vector<Block*> sorted(blocks.size());
  for (Block* b : blocks) sorted[at[b->in_use]++] = b;
  blocks.swap(sorted);
  // Destinations from the front (fullest), sources from the back (emptiest). `room` counts the free slots
  // in blocks[dst .. src-1]: if they cannot take all of src's objects, src cannot be emptied, and neither
  // can any fuller block, so compaction of this class is done (zs_can_compact's test).
  std::size_t dst = 0, src = blocks.size() - 1;
  std::uint64_t room = 0;
  for (std::size_t i = 0; i < src; ++i) room += blocks[i]->objects - blocks[i]->in_use;
  // Objects are claimed with their destination slots reserved (so a later source never receives a pending
  // move) and moved a batch at a time; sources are regrouped (released when emptied) once every batch is done.
  const std::size_t last = src;
  bool stop = false;  // the deadline passed: the source under way stays where it is, in part moved
  // Claims the object of s's `slot` (entry `owner`) with a slot of the fullest destination reserved (room > 0
  // guarantees a non-full one before src), and moves the batch once it is full. False when the object cannot
  // be claimed (pinned, moving, or being freed into a cache), or when the deadline passed after a batch that
  // moved something (stop is set: a call stops only having got somewhere).
  auto claim = [&](Block* s, std::uint32_t slot, std::uint32_t owner) {
    if (owner > kMaxHandleIndex || !batch.claims.Add(owner, s->SlotOffset(slot))) {
      ++out.objects_skipped;
      return false;
    }
    Block* d = blocks[dst];
    batch.moves.push_back({s, d, slot, PopFree(d)});
    --room;
    if (d->in_use == d->objects) {
      Regroup(d);
      ++dst;
    }
    if (batch.full(s->slot_size)) {
      MoveBatch(batch, out);
      if (out.objects_moved > 0 && absl::Now() >= deadline) {
        stop = true;
        out.complete = false;
        return false;
      }
    }
    return true;
  };
  while (!stop && dst < src && room >= blocks[src]->in_use) {
    Block* s = blocks[src];
    std::uint32_t pending = s->in_use;  // objects of s not yet claimed
    for (std::uint32_t slot = 0; slot < s->objects && pending > 0; ++slot) {
      const std::uint32_t owner = s->Owner(slot).load(std::memory_order_acquire);
      if (owner == kSlotReserved) {  // a thread cache holds it: s cannot be emptied now
        ++out.blocks_skipped;
        break;
      }
      if (OnFreeList(owner)) continue;
      --pending;
      if (!claim(s, slot, owner)) break;  // s cannot be emptied now, or the deadline passed
    }
    --src;  // s is done with (emptied, or left in part moved when the deadline passed)
    if (stop) break;
    if (dst < src) room -= blocks[src]->objects - blocks[src]->in_use;
  }
  // The emptiest block left cannot be emptied into the room left: the room takes its highest objects instead,
  // so that its last pages empty and are cut off below (size-shift at 64 MiB: the last blocks of ~150 classes
  // of 2-16 pages held 1.1 MiB of free slots).
  if (!stop && dst < src && room > 0) {
    Block* s = blocks[src];
    for (std::uint32_t slot = s->objects; slot-- > 0 && room > 0;) {
      const std::uint32_t owner = s->Owner(slot).load(std::memory_order_acquire);
      if (owner == kSlotReserved) break;  // a thread cache holds it: the tail cannot empty past it
      if (OnFreeList(owner)) continue;
      if (!claim(s, slot, owner)) break;
    }
  }
  MoveBatch(batch, out);
  for (std::size_t i = src + 1; i <= last; ++i) {
    if (blocks[i]->in_use == 0) {
      ++out.blocks_released;
      out.pages_released += blocks[i]->pages;
    }
    Regroup(blocks[i]);  // releases it if it was emptied
  }
  // Destinations filled in part are relisted, and every block still partly filled packs its objects down
  // and gives back its free tail.
  for (std::size_t i = 0; i <= src; ++i) Regroup(blocks[i]);
  if (!stop && dst <= src) PackAndCut(std::span<Block* const>(blocks).subspan(dst, src - dst + 1), batch, out);
  return stop;
}

RelocateOutcome SizeClass::Unclaimable(const RelocateItem& item) const {
  const handles::Word w = table_.entry(item.index).load(std::memory_order_acquire);
  if (handles::GenOf(w) != item.gen) return RelocateOutcome::kStale;  // freed since it was resolved
  if (handles::PinsOf(w) != 0) return RelocateOutcome::kPinned;
  return RelocateOutcome::kBusy;  // moving (another mover), or being retired by a free: busy either way
}

void SizeClass::Relocate(std::span<const RelocateItem> items, RelocateResult& out) {
  MutexLock lock(&mu_);
  // A batch's claimed objects wait for the batch, as in compaction.
  const std::size_t per_batch = std::max<std::size_t>(
      1, std::min<std::size_t>(CompactionBatch::kBatchObjects, CompactionBatch::kBatchBytes / info_.slot_size));
  Block* dst = nullptr;  // the fresh block being filled
  std::vector<std::size_t> claimed;  // claimed[i]: the item of claim i
  for (std::size_t first = 0; first < items.size(); first += per_batch) {
    const std::span<const RelocateItem> batch = items.subspan(first, std::min(per_batch, items.size() - first));
    // Setup: one claim each, no wait; then one barrier for the batch.
    handles::MoveClaims claims(table_, records_);
    claimed.clear();
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (claims.Add(batch[k].index, batch[k].offset)) {
        claimed.push_back(k);
      } else {
        *batch[k].outcome = Unclaimable(batch[k]);
      }
    }
    claims.Confirm();
    // Pages and finalize, object by object in the caller's order: a fresh block's free list hands out its
    // slots in address order, so consecutive objects land in consecutive slots.
    for (std::size_t i = 0; i < claims.size(); ++i) {
      const RelocateItem& item = batch[claimed[i]];
      if (!claims.kept(i)) {  // a record named it: a pin_owned pin, or a free under way
        *item.outcome = RelocateOutcome::kPinned;
        continue;
      }
      if (dst == nullptr || dst->free_head == kNoSlot) {
        absl::StatusOr<Block*> fresh = NewBlock();
        if (!fresh.ok()) {
          claims.GiveUp(i);
          *item.outcome = RelocateOutcome::kNoMemory;
          continue;
        }
        dst = *fresh;
        ++out.blocks_filled;
      }
      const std::uint32_t dslot = PopFree(dst);
      Regroup(dst);
      // Claimed at `offset`: the object is where it was resolved, in item.block's item.slot.
      MoveClaimed(claims, i, item.block, item.slot, dst, dslot);
      if (item.block->in_use == 0) ++out.blocks_emptied;
      Regroup(item.block);  // an emptied block becomes the spare or is released
      *item.outcome = RelocateOutcome::kMoved;
      ++out.moved;
      out.bytes_moved += info_.slot_size;
    }
    KeepMovedFrom();
  }
}

void SizeClass::ReleaseSpareLocked() {
  while (Block* b = FirstOf(kGroupEmpty)) {
    Unlink(b);
    ReleaseBlock(b);
  }
  // A class with no block left (none listed, none isolated) gives its lists back; NewBlock makes them again.
  // A size drift leaves dozens of classes so.
  if (blocks_ == 0) groups_.reset();
}

void SizeClass::ReleaseSpare() {
  MutexLock lock(&mu_);
  ReleaseSpareLocked();
}

ClassSnapshot SizeClass::Snapshot() const {
  MutexLock lock(&mu_);
  ClassSnapshot s;
  s.blocks = blocks_;
  s.pages = pages_;
  s.slots_in_use = slots_in_use_;
  s.groups = group_sizes_;  // counted as blocks are linked: a snapshot never walks the lists
  s.heap_bytes = sizeof(SizeClass) + (groups_ != nullptr ? sizeof(GroupLanes) : 0) +
                 moved_from_.capacity() * sizeof(SlotRef);
  return s;
}

}  // namespace mova::alloc
