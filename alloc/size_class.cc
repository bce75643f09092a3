// alloc/size_class.cc — see size_class.h.
#include "alloc/size_class.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace mova::alloc {

SizeClass::~SizeClass() {
  MutexLock lock(&mu_);
  for (Block*& head : groups_) {
    while (head != nullptr) {
      Block* b = head;
      head = b->next;
      const PageRun run = b->run();
      page_map_.Unmap(run.first, run.count);
      arena_.Free(run);
    }
  }
}

void SizeClass::Link(Block* b) {
  b->group = GroupOf(b->in_use, b->objects);
  b->prev = nullptr;
  b->next = groups_[b->group];
  if (b->next != nullptr) b->next->prev = b;
  groups_[b->group] = b;
}

void SizeClass::Unlink(Block* b) {
  if (b->prev != nullptr) {
    b->prev->next = b->next;
  } else {
    groups_[b->group] = b->next;
  }
  if (b->next != nullptr) b->next->prev = b->prev;
  b->prev = b->next = nullptr;
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
    if (groups_[kGroupEmpty] == nullptr) {
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
    b->Owner(i).store(kSlotFreeBit | (i + 1 < b->objects ? i + 1 : kNoSlot), std::memory_order_relaxed);
  }
  b->free_head = 0;
  b->in_use = 0;
  page_map_.MapBlock(*run, id_);
  b->movable.Register(ops_, b);
  ++blocks_;
  Link(b);
  return b;
}

void SizeClass::ReleaseBlock(Block* b) {
  const PageRun run = b->run();
  b->magic = 0;  // checked mode verifies the magic of every block it frees or pins into
  page_map_.Unmap(run.first, run.count);
  --blocks_;
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
    if (owner != kSlotReserved && (owner & kSlotFreeBit) != 0) continue;
    if (owner == kSlotReserved) return false;
    const handles::Word w = table_.entry(owner).load(std::memory_order_acquire);
    if (!handles::IsLiveGen(handles::GenOf(w)) || handles::OffsetOf(w) != b->SlotOffset(slot) ||
        handles::PinsOf(w) != 0 || handles::IsMoving(w)) {
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

compactor::MigrateResult SizeClass::MigrateBlock(Block* src, PageRun to) {
  MutexLock lock(&mu_);
  if (!src->movable.movable()) {
    // Emptied and freed while isolated (after the migrator last looked): that counts as migrated, and the
    // target is not needed.
    arena_.Free(to);
    return compactor::MigrateResult::kSuccess;
  }
  if (src->group != kGroupIsolated) return compactor::MigrateResult::kFail;
  // Claim every object (MOVING): pins and frees of them wait until they are published at dst.
  struct Claim {
    std::uint32_t index;
    handles::Word word;
  };
  std::vector<Claim> claimed;
  claimed.reserve(src->in_use);
  auto release_claims = [&] {
    for (const Claim& c : claimed) handles::EndMove(table_.entry(c.index), c.word, handles::OffsetOf(c.word));
  };
  for (std::uint32_t slot = 0; slot < src->objects; ++slot) {
    const std::uint32_t owner = src->Owner(slot).load(std::memory_order_acquire);
    if (owner != kSlotReserved && (owner & kSlotFreeBit) != 0) continue;
    handles::Word w;
    if (owner == kSlotReserved || !handles::BeginMove(table_.entry(owner), src->SlotOffset(slot), &w)) {
      release_claims();  // pinned, freed into a cache, or being freed: try again later
      return compactor::MigrateResult::kAgain;
    }
    claimed.push_back(Claim{owner, w});
  }
  // Move the whole block — descriptor, back-map and slots — then make the moved copy a block of its own.
  // The framework still works on src's descriptor after this returns (unlock, drop its reference), so the
  // move keeps it readable at src.
  const PageRun from = src->run();
  const std::uint64_t from_off = src->offset();
  absl::StatusOr<compactor::MoveOutcome> moved =
      arena_.MoveRun(to, from, compactor::MoveKind::kBlock, Bytes(sizeof(Block)));
  if (!moved.ok()) {
    release_claims();  // src is intact; the framework puts it back and frees the target
    return compactor::MigrateResult::kFail;
  }
  auto* dst = reinterpret_cast<Block*>(arena_.PageAddress(to.first));
  dst->first_page = to.first;
  dst->prev = dst->next = nullptr;
  new (&dst->movable) compactor::MovableBlock();
  dst->movable.Register(ops_, dst);
  page_map_.MapBlock(to, id_);
  const std::uint64_t to_off = dst->offset();
  for (const Claim& c : claimed) {
    handles::EndMove(table_.entry(c.index), c.word, handles::OffsetOf(c.word) - from_off + to_off);
  }
  dst->group = kGroupEmpty;
  Link(dst);
  Regroup(dst);
  // The old place: unmapped, and the driver's reference dropped; the migrator's reference frees the pages.
  src->magic = 0;
  page_map_.Unmap(from.first, from.count);
  src->movable.Unregister();
  pages_migrated_ += to.count;
  return compactor::MigrateResult::kSuccess;
}

std::uint32_t SizeClass::PopFree(Block* b) {
  const std::uint32_t slot = b->free_head;
  b->free_head = b->Owner(slot).load(std::memory_order_relaxed) & ~kSlotFreeBit;
  b->Owner(slot).store(kSlotReserved, std::memory_order_relaxed);
  ++b->in_use;
  ++slots_in_use_;
  return slot;
}

void SizeClass::PushFree(Block* b, std::uint32_t slot) {
  b->Owner(slot).store(kSlotFreeBit | b->free_head, std::memory_order_relaxed);
  b->free_head = slot;
  --b->in_use;
  --slots_in_use_;
}

absl::StatusOr<std::size_t> SizeClass::TakeSlots(std::span<SlotRef> out) {
  MutexLock lock(&mu_);
  std::size_t n = 0;
  while (n < out.size()) {
    Block* b = nullptr;
    for (int g = kGroupFull - 1; g >= kGroupEmpty && b == nullptr; --g) b = groups_[g];
    if (b == nullptr) {
      absl::StatusOr<Block*> fresh = NewBlock();
      if (!fresh.ok()) {
        if (n > 0) break;
        return fresh.status();
      }
      b = *fresh;
    }
    while (n < out.size() && b->free_head != kNoSlot) out[n++] = PackSlot(b, PopFree(b));
    Regroup(b);
  }
  return n;
}

void SizeClass::ReturnSlots(std::span<const SlotRef> slots) {
  MutexLock lock(&mu_);
  for (SlotRef r : slots) {
    Block* b = BlockOf(r);
    PushFree(b, SlotIndexOf(r));
    Regroup(b);
  }
}

bool SizeClass::MoveObject(Block* src, std::uint32_t slot, Block* dst, ClassCompaction& out) {
  const std::uint32_t index = src->Owner(slot).load(std::memory_order_acquire);
  if (index > kMaxHandleIndex) return false;  // reserved by a thread cache
  handles::EntryAtomic& e = table_.entry(index);
  const std::uint64_t src_off = src->SlotOffset(slot);
  handles::Word claimed;
  if (!handles::BeginMove(e, src_off, &claimed)) return false;
  const std::uint32_t dslot = PopFree(dst);
  const std::uint64_t dst_off = dst->SlotOffset(dslot);
  // The whole slot is copied: the requested size travels in the handle, not in the block.
  std::memcpy(arena_.base() + dst_off, arena_.base() + src_off, src->slot_size);
  dst->Owner(dslot).store(index, std::memory_order_release);
  handles::EndMove(e, claimed, dst_off);
  PushFree(src, slot);
  ++out.objects_moved;
  out.bytes_moved += src->slot_size;
  return true;
}

ClassCompaction SizeClass::Compact() {
  MutexLock lock(&mu_);
  ClassCompaction out;
  if (Block* spare = groups_[kGroupEmpty]; spare != nullptr) {  // compaction leaves no empty block behind
    out.pages_released += spare->pages;
    ++out.blocks_released;
    ReleaseSpareLocked();
  }
  std::vector<Block*> blocks;
  for (int g = 1; g < kGroupFull; ++g) {
    for (Block* b = groups_[g]; b != nullptr; b = b->next) blocks.push_back(b);
  }
  if (blocks.size() < 2) return out;
  std::stable_sort(blocks.begin(), blocks.end(), [](const Block* a, const Block* b) { return a->in_use > b->in_use; });
  // Destinations from the front (fullest), sources from the back (emptiest). `room` counts the free slots
  // in blocks[dst .. src-1]: if they cannot take all of src's objects, src cannot be emptied, and neither
  // can any fuller block, so compaction of this class is done (zs_can_compact's test).
  std::size_t dst = 0, src = blocks.size() - 1;
  std::uint64_t room = 0;
  for (std::size_t i = 0; i < src; ++i) room += blocks[i]->objects - blocks[i]->in_use;
  while (dst < src && room >= blocks[src]->in_use) {
    Block* s = blocks[src];
    for (std::uint32_t slot = 0; slot < s->objects && s->in_use > 0; ++slot) {
      const std::uint32_t owner = s->Owner(slot).load(std::memory_order_acquire);
      if (owner == kSlotReserved) {  // a thread cache holds it: s cannot be emptied now
        ++out.blocks_skipped;
        break;
      }
      if ((owner & kSlotFreeBit) != 0) continue;
      Block* d = blocks[dst];  // room >= in_use guarantees a non-full destination before src
      if (!MoveObject(s, slot, d, out)) {  // pinned, moving or being freed
        ++out.objects_skipped;
        break;
      }
      --room;
      if (d->in_use == d->objects) {
        Regroup(d);
        ++dst;
      }
    }
    if (s->in_use == 0) {
      ++out.blocks_released;
      out.pages_released += s->pages;
    }
    Regroup(s);  // releases s if it was emptied
    --src;
    if (dst < src) room -= blocks[src]->objects - blocks[src]->in_use;
  }
  // Destinations filled in part are relisted; blocks past src were relisted as sources.
  for (std::size_t i = 0; i <= src; ++i) Regroup(blocks[i]);
  ReleaseSpareLocked();  // a source emptied above may have become the spare; it was counted then
  return out;
}

void SizeClass::ReleaseSpareLocked() {
  while (Block* b = groups_[kGroupEmpty]) {
    Unlink(b);
    ReleaseBlock(b);
  }
}

void SizeClass::ReleaseSpare() {
  MutexLock lock(&mu_);
  ReleaseSpareLocked();
}

ClassSnapshot SizeClass::Snapshot() const {
  MutexLock lock(&mu_);
  ClassSnapshot s;
  s.blocks = blocks_;
  s.slots_in_use = slots_in_use_;
  for (int g = 0; g < kNumGroups; ++g) {
    for (const Block* b = groups_[g]; b != nullptr; b = b->next) {
      ++s.groups[g];
    }
  }
  return s;
}

}  // namespace mova::alloc
