// buffers/movable_buffer_store.cc — see movable_buffer_store.h.
#include "buffers/movable_buffer_store.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "alloc/lower_region_targets.h"
#include "compactor/region_scan.h"

namespace mova::buffers {

void PinnedBuffer::reset() {
  if (state_ != nullptr) state_->fetch_sub(1, std::memory_order_release);
  state_ = nullptr;
}

absl::StatusOr<std::unique_ptr<MovableBufferStore>> MovableBufferStore::Create(Bytes capacity, os::Os* os) {
  os::Os& the_os = os != nullptr ? *os : os::SystemOs();
  absl::StatusOr<std::unique_ptr<alloc::Arena>> arena =
      alloc::Arena::Create(the_os, alloc::ArenaOptions{capacity, Bytes(~std::size_t{0}), {}, {}});
  if (!arena.ok()) return arena.status();
  return std::unique_ptr<MovableBufferStore>(new MovableBufferStore(std::move(*arena)));
}

MovableBufferStore::~MovableBufferStore() = default;  // the arena's reservation goes with it

MovableBufferStore::Buffer* MovableBufferStore::Find(BufferId id) {
  MutexLock lock(&records_mu_);
  if (id.index >= records_.size()) return nullptr;
  Buffer& b = records_[id.index];
  if ((id.generation & 1) == 0 || b.generation.load(std::memory_order_acquire) != id.generation) return nullptr;
  return &b;
}

bool MovableBufferStore::ClaimForMove(Buffer& b) {
  std::uint64_t s = b.state.load(std::memory_order_acquire);
  return s == 0 && b.state.compare_exchange_strong(s, kMoving, std::memory_order_acq_rel);
}

void MovableBufferStore::EndMove(Buffer& b) {
  b.state.fetch_and(~kMoving, std::memory_order_release);
  b.state.notify_all();
}

absl::StatusOr<BufferId> MovableBufferStore::Create(std::size_t capacity) {
  absl::StatusOr<alloc::PageRun> run = arena_->Allocate(PagesCeil(Bytes(std::max<std::size_t>(capacity, 1))));
  if (!run.ok()) return run.status();
  MutexLock lock(&records_mu_);
  std::uint32_t index;
  if (!free_records_.empty()) {
    index = free_records_.back();
    free_records_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(records_.size());
    records_.emplace_back().index = index;
  }
  Buffer& b = records_[index];
  SetRun(b, *run);
  b.size.store(0, std::memory_order_relaxed);
  const std::uint32_t gen = b.generation.load(std::memory_order_relaxed) + 1;  // odd: live
  b.generation.store(gen, std::memory_order_release);
  b.state.store(0, std::memory_order_release);
  b.movable.Register(this, &b);
  return BufferId{index, gen};
}

absl::Status MovableBufferStore::Append(BufferId id, std::span<const std::byte> data) {
  Buffer* b = Find(id);
  if (b == nullptr) return absl::NotFoundError("append: stale or unknown buffer id");
  b->movable.Lock();  // one writer at a time; isolation skips the buffer meanwhile
  const std::size_t size = b->size.load(std::memory_order_relaxed);
  const alloc::PageRun run = RunOf(*b);
  if (size + data.size() > ToBytes(Pages(run.count)).value()) {  // grow: a move to a bigger run
    if (!ClaimForMove(*b)) {
      b->movable.Unlock();
      const bool dead = (b->state.load(std::memory_order_acquire) & kDead) != 0;
      return dead ? absl::NotFoundError("append: stale or unknown buffer id")
                  : absl::FailedPreconditionError("append: the buffer must grow but is pinned");
    }
    absl::StatusOr<alloc::PageRun> bigger =
        arena_->Allocate(PagesCeil(Bytes(std::max(size + data.size(), 2 * ToBytes(Pages(run.count)).value()))));
    if (!bigger.ok()) {
      EndMove(*b);
      b->movable.Unlock();
      return bigger.status();
    }
    std::memcpy(arena_->PageAddress(bigger->first), arena_->PageAddress(run.first), size);
    SetRun(*b, *bigger);
    EndMove(*b);
    arena_->Free(run);
  }
  // Write under a pin of our own, so that a concurrent Destroy cannot free the run under the copy.
  std::uint64_t s = b->state.load(std::memory_order_acquire);
  do {
    if ((s & kDead) != 0) {
      b->movable.Unlock();
      return absl::NotFoundError("append: stale or unknown buffer id");
    }
  } while (!b->state.compare_exchange_weak(s, s + kPinOne, std::memory_order_acquire));
  std::memcpy(Data(*b) + size, data.data(), data.size());
  b->size.store(size + data.size(), std::memory_order_release);
  b->state.fetch_sub(kPinOne, std::memory_order_release);
  b->movable.Unlock();
  return absl::OkStatus();
}

absl::StatusOr<PinnedBuffer> MovableBufferStore::Pin(BufferId id) {
  Buffer* b = Find(id);
  if (b == nullptr) return absl::NotFoundError("pin: stale or unknown buffer id");
  std::uint64_t s = b->state.load(std::memory_order_acquire);
  for (;;) {
    if ((s & kDead) != 0 || b->generation.load(std::memory_order_acquire) != id.generation) {
      return absl::NotFoundError("pin: stale or unknown buffer id");
    }
    if ((s & kMoving) != 0) {
      b->state.wait(s, std::memory_order_acquire);
      s = b->state.load(std::memory_order_acquire);
      continue;
    }
    if (b->state.compare_exchange_weak(s, s + kPinOne, std::memory_order_acquire)) break;
  }
  return PinnedBuffer(&b->state, std::span<std::byte>(Data(*b), b->size.load(std::memory_order_acquire)));
}

absl::StatusOr<std::size_t> MovableBufferStore::SizeOf(BufferId id) {
  Buffer* b = Find(id);
  if (b == nullptr) return absl::NotFoundError("size_of: stale or unknown buffer id");
  return b->size.load(std::memory_order_acquire);
}

absl::Status MovableBufferStore::Destroy(BufferId id) {
  Buffer* b = Find(id);
  if (b == nullptr) return absl::NotFoundError("destroy: stale or unknown buffer id");
  std::uint64_t s = b->state.load(std::memory_order_acquire);
  for (;;) {
    if ((s & kDead) != 0) return absl::NotFoundError("destroy: stale or unknown buffer id");
    if ((s & kMoving) != 0) {
      b->state.wait(s, std::memory_order_acquire);
      s = b->state.load(std::memory_order_acquire);
      continue;
    }
    if ((s & kPinMask) != 0) return absl::FailedPreconditionError("destroy: the buffer is pinned");
    if (b->state.compare_exchange_weak(s, kDead, std::memory_order_acq_rel)) break;
  }
  std::uint32_t gen = id.generation;
  if (!b->generation.compare_exchange_strong(gen, gen + 1, std::memory_order_acq_rel)) {
    return absl::NotFoundError("destroy: stale or unknown buffer id");  // a racing Destroy won
  }
  b->movable.Unregister();  // Release frees the run (now, or when a migrator lets go of the buffer)
  return absl::OkStatus();
}

bool MovableBufferStore::Isolate(compactor::MovableBlock& m, compactor::MigrateMode) {
  const Buffer& b = *static_cast<Buffer*>(m.owner());
  return b.state.load(std::memory_order_acquire) == 0;  // live, unpinned, not moving
}

compactor::MigrateResult MovableBufferStore::Migrate(compactor::MovableBlock& dst, compactor::MovableBlock& src,
                                                     compactor::MigrateMode) {
  Buffer& b = *static_cast<Buffer*>(src.owner());
  const alloc::MoveTarget& target = alloc::TargetOf(dst);
  const alloc::PageRun to = target.run;
  if (!ClaimForMove(b)) return compactor::MigrateResult::kAgain;  // pinned since isolation
  const alloc::PageRun from = RunOf(b);
  absl::StatusOr<compactor::MoveOutcome> moved = arena_->MoveRun(to, from, compactor::MoveKind::kRun, Bytes(0), target.backing);
  if (!moved.ok()) {  // memory short for a copy: the buffer stays where it is, whole
    EndMove(b);
    return compactor::MigrateResult::kFail;
  }
  SetRun(b, to);
  EndMove(b);
  if (moved->source_vacated) {
    arena_->FreeMovedOut(from);
  } else {
    arena_->Free(from);
  }
  return compactor::MigrateResult::kSuccess;
}

void MovableBufferStore::Putback(compactor::MovableBlock&) {}  // nothing was changed by Isolate

void MovableBufferStore::Release(compactor::MovableBlock& m) {
  Buffer& b = *static_cast<Buffer*>(m.owner());
  arena_->Free(RunOf(b));
  MutexLock lock(&records_mu_);
  free_records_.push_back(b.index);  // reusable now that no one refers to it
}

DefragResult MovableBufferStore::Defragment() {
  MutexLock lock(&defrag_mu_);
  const absl::Time start = absl::Now();
  const compactor::MigrationStats before = migrator_.stats();
  const compactor::MoveEngineStats moves_before = arena_->move_stats();
  const std::vector<std::uint32_t> usage_before = arena_->RegionUsage();
  const std::size_t needed = compactor::RegionsNeeded(usage_before, alloc::kPagesPerRegion);
  // Candidates by region, highest first; records never move, so their addresses stay valid.
  std::vector<std::vector<Buffer*>> by_region(usage_before.size());
  {
    MutexLock records_lock(&records_mu_);
    for (Buffer& b : records_) {
      if ((b.state.load(std::memory_order_acquire) & kDead) != 0) continue;
      const std::size_t region = RunOf(b).first / alloc::kPagesPerRegion;
      if (region >= needed && region < by_region.size()) by_region[region].push_back(&b);
    }
  }
  alloc::LowerRegionTargets targets(*arena_, compactor::MoveKind::kRun, [](compactor::MovableBlock& m) { return RunOf(*static_cast<Buffer*>(m.owner())); });
  DefragResult r;
  for (std::size_t region = by_region.size(); region-- > needed;) {
    if (by_region[region].empty()) continue;
    ++r.regions_scanned;
    std::vector<compactor::MovableBlock*> isolated;
    for (Buffer* b : by_region[region]) {
      if (migrator_.Isolate(b->movable, compactor::MigrateMode::kSyncLight)) isolated.push_back(&b->movable);
    }
    if (!isolated.empty()) r.blocks_migrated += migrator_.Migrate(isolated, targets, compactor::MigrateMode::kSyncLight);
  }
  r.regions_freed = compactor::RegionsFreed(usage_before, arena_->RegionUsage());
  const compactor::MigrationStats after = migrator_.stats();
  r.blocks_isolated = after.isolated - before.isolated;
  r.isolate_failed = after.isolate_failed - before.isolate_failed;
  r.blocks_failed = after.failed - before.failed;
  const compactor::MoveEngineStats moves_after = arena_->move_stats();
  r.pages_moved = (moves_after.uffd_bytes + moves_after.remap_bytes + moves_after.copy_bytes - moves_before.uffd_bytes -
                   moves_before.remap_bytes - moves_before.copy_bytes) >> kPageShift;
  r.moves_uffd = moves_after.uffd_moves - moves_before.uffd_moves;
  r.moves_mremap = moves_after.remap_moves - moves_before.remap_moves;
  r.moves_copy = moves_after.copy_moves - moves_before.copy_moves;
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

}  // namespace mova::buffers
