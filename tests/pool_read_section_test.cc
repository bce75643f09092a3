// Read sections (ReadGuard): reads write no shared line and never wait for a mover; an object moved while a
// section reads it stays readable, unchanged, at its old place until the section ends; old places go back
// after that (at the end of a compaction, at release_free_memory, at once for an allocation short of memory),
// never while a section that may read them is open. Label "concurrency": also run under ThreadSanitizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "mova/handle_owner.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Fill;
using testing::Intact;
using testing::Matches;
using testing::Obj;
using testing::ScatteredDenseBlocks;

PoolOptions Quiet() {
  PoolOptions o;
  o.background_interval = std::chrono::milliseconds(0);  // the tests say when anything moves
  o.direct_compaction = std::chrono::microseconds(0);
  return o;
}

// `n` objects of `size` bytes, then three in four freed, interleaved: every block a quarter full, so a
// compaction moves about two thirds of the survivors.
std::vector<Obj> SparseObjects(Pool& pool, std::size_t n, std::size_t size, std::uint64_t seed0 = 1) {
  std::vector<Obj> all, kept;
  for (std::size_t i = 0; i < n; ++i) all.push_back({AllocFilled(pool, size, seed0 + i), size, seed0 + i});
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 4 == 0) {
      kept.push_back(all[i]);
    } else {
      EXPECT_TRUE(pool.free(all[i].h).ok());
    }
  }
  return kept;
}

TEST(ReadSection, ReadsSeeTheBytesAndRefuseWhatPinRefuses) {
  auto pool = Pool::Create(Quiet()).value();
  const Handle small = AllocFilled(*pool, 100, 7);
  const Handle huge = AllocFilled(*pool, 300 << 10, 8);
  const Handle freed = AllocFilled(*pool, 64, 9);
  ASSERT_TRUE(pool->free(freed).ok());
  {
    ReadGuard g = pool->read_section();
    ASSERT_TRUE(g.active());
    absl::StatusOr<std::span<const std::byte>> a = g.read(small);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->size(), 100u);
    EXPECT_TRUE(Matches(*a, 7));
    absl::StatusOr<std::span<const std::byte>> b = g.read(huge);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->size(), std::size_t{300} << 10);
    EXPECT_TRUE(Matches(*b, 8));
    EXPECT_EQ(g.read(freed).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(g.read(Handle{}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(g.read(Handle{small.raw ^ (std::uint64_t{1} << 40)}).status().code(),
              absl::StatusCode::kInvalidArgument);
    {
      ReadGuard inner = pool->read_section();  // nested: the outer section stays open when it ends
      EXPECT_TRUE(inner.read(small).ok());
    }
    EXPECT_TRUE(g.read(small).ok());
    ReadGuard moved = std::move(g);
    EXPECT_FALSE(g.active());
    EXPECT_EQ(g.read(small).status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(moved.read(small).ok());
    moved.reset();
    EXPECT_EQ(moved.read(small).status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(ReadGuard().read(small).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(pool->stats().keeping_old_copies);
}

// read() is inline (handles/inline_read.h): it opens the handle against the table itself and hands anything
// it does not take to the library, which answers as pin() does. Each bad handle here fails one test of the
// inline path, and each for certain (handle.h and pool.h say which forgeries are refused only by chance).
TEST(ReadSection, TheInlineReadRefusesEveryHandlePinRefuses) {
  auto pool = Pool::Create(Quiet()).value();
  auto other = Pool::Create(Quiet()).value();
  const Handle h = AllocFilled(*pool, 100, 7);
  const Handle freed = AllocFilled(*pool, 48, 8);
  ASSERT_TRUE(pool->free(freed).ok());
  const Handle others = AllocFilled(*other, 100, 9);
  const Handle past_range = Handle::Make(Handle::kIndexMask, h.check(), h.size_field());  // past the table
  const Handle unopened = Handle::Make(200 * 512 + 3, h.check(), h.size_field());  // a page never opened
  const Handle index0 = Handle::Make(0, h.check(), h.size_field());
  const Handle resized = Handle{h.raw ^ (std::uint64_t{1} << Handle::kSizeShift)};  // 101 bytes claimed
  const Handle rechecked = Handle{h.raw ^ (std::uint64_t{1} << Handle::kCheckShift)};
  const Handle reindexed = Handle::Make(freed.index(), h.check(), h.size_field());  // an entry not live
  const Handle as_huge = Handle::Make(h.index(), h.check(), Handle::kHugeSize);
  ReadGuard g = pool->read_section();
  for (const Handle bad :
       {Handle{}, freed, others, past_range, unopened, index0, resized, rechecked, reindexed, as_huge}) {
    SCOPED_TRACE(bad.raw);
    const absl::StatusCode pinned = pool->pin(bad, Access::kRead).status().code();
    ASSERT_NE(pinned, absl::StatusCode::kOk);
    EXPECT_EQ(g.read(bad).status().code(), pinned);
    const HandleCell cell(bad);
    EXPECT_EQ(g.read(cell).status().code(), pinned);
  }
  absl::StatusOr<std::span<const std::byte>> bytes = g.read(h);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size(), 100u);
  EXPECT_TRUE(Matches(*bytes, 7));
}

TEST(ReadSection, AnObjectMovedWhileReadStaysAtItsOldPlaceUntilTheSectionEnds) {
  auto pool = Pool::Create(Quiet()).value();
  const std::vector<Obj> kept = SparseObjects(*pool, 20000, 200);
  std::vector<std::span<const std::byte>> before;
  {
    ReadGuard g = pool->read_section();
    for (const Obj& o : kept) before.push_back(g.read(o.h).value());
    const std::uint64_t blocks_before = pool->stats().block_bytes;
    const CompactResult r = pool->compact();
    ASSERT_GT(r.objects_moved, 1000u);
    const PoolStats during = pool->stats();
    // The old places are kept, unchanged: their blocks stay, and every span read before still holds its bytes.
    EXPECT_EQ(during.old_copy_bytes, r.objects_moved * 200);  // 200 B objects live in 200 B slots
    EXPECT_EQ(during.block_bytes, blocks_before);
    EXPECT_EQ(r.pages_released, 0u);
    std::size_t elsewhere = 0;
    for (std::size_t i = 0; i < kept.size(); ++i) {
      ASSERT_TRUE(Matches(before[i], kept[i].seed)) << i;
      const std::span<const std::byte> now = g.read(kept[i].h).value();  // the new place, for a moved one
      ASSERT_TRUE(Matches(now, kept[i].seed)) << i;
      elsewhere += now.data() != before[i].data() ? 1 : 0;
    }
    EXPECT_EQ(elsewhere, r.objects_moved);
    // Still open: nothing goes back, not even when asked.
    pool->release_free_memory();
    EXPECT_EQ(pool->stats().old_copy_bytes, during.old_copy_bytes);
    for (std::size_t i = 0; i < kept.size(); ++i) ASSERT_TRUE(Matches(before[i], kept[i].seed)) << i;
  }
  pool->release_free_memory();
  const PoolStats after = pool->stats();
  EXPECT_EQ(after.old_copy_bytes, 0u);
  EXPECT_GT(after.old_copies_freed, 1000u);
  EXPECT_EQ(after.old_copies_freed_under_pressure, 0u);
  EXPECT_LT(after.block_bytes, pool->stats().block_bytes + 1);
  EXPECT_LT(after.block_bytes * 2, kept.size() * 200 * 4);  // the emptied blocks went back
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(ReadSection, WithNoSectionOpenACompactionGivesItsOldPlacesBackItself) {
  auto pool = Pool::Create(Quiet()).value();
  { ReadGuard g = pool->read_section(); }  // the pool keeps old copies from now on
  const std::vector<Obj> kept = SparseObjects(*pool, 20000, 200);
  const std::uint64_t blocks_before = pool->stats().block_bytes;
  const CompactResult r = pool->compact();
  ASSERT_GT(r.objects_moved, 1000u);
  EXPECT_GT(r.pages_released, 0u);  // the blocks its old copies left empty count as this call's
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.old_copy_bytes, 0u);
  EXPECT_EQ(s.old_copies_freed, r.objects_moved);
  EXPECT_LT(s.block_bytes * 2, blocks_before);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(ReadSection, BlocksMovedByDefragmentStayReadableAndMovesCopy) {
  PoolOptions options = Quiet();
  options.zero_copy_min = Bytes(0);  // without read sections, blocks would move by UFFDIO_MOVE
  auto pool = Pool::Create(options).value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 5, 16u << 20);
  std::vector<std::span<const std::byte>> before;
  {
    ReadGuard g = pool->read_section();
    for (const Obj& o : kept) before.push_back(g.read(o.h).value());
    const DefragResult r = pool->defragment();
    ASSERT_GT(r.blocks_migrated, 0u);
    EXPECT_EQ(r.moves_uffd, 0u);
    EXPECT_EQ(r.moves_mremap, 0u);
    EXPECT_GT(pool->stats().old_copy_bytes, 0u);
    for (std::size_t i = 0; i < kept.size(); ++i) {
      ASSERT_TRUE(Matches(before[i], kept[i].seed)) << i;
      ASSERT_TRUE(Matches(g.read(kept[i].h).value(), kept[i].seed)) << i;
    }
  }
  pool->release_free_memory();
  EXPECT_EQ(pool->stats().old_copy_bytes, 0u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A cell-owning index: read(cell) goes on with the cell's new handle after the entry moved.
class Cells final : public HandleOwner {
 public:
  Cells(Pool& pool, std::size_t n) : pool_(pool), cells_(n) { pool_.register_owner(*this); }
  ~Cells() override { pool_.unregister_owner(*this); }
  HandleCell& operator[](std::size_t i) { return cells_[i]; }
  void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) override {
    VisitInBatches(cells_, [](HandleCell& c) { return &c; }, visit);
  }

 private:
  Pool& pool_;
  std::vector<HandleCell> cells_;
};

TEST(ReadSection, ReadsThroughCellsFollowMovedEntries) {
  auto pool = Pool::Create(Quiet()).value();
  constexpr std::size_t kN = 8192;
  Cells cells(*pool, kN);
  std::vector<Handle> dropped;
  for (std::size_t i = 0; i < kN; ++i) {
    const Handle h = AllocFilled(*pool, 40, 100 + i);
    if (i % 8 == 0) {
      cells[i].store(h);
    } else {
      dropped.push_back(h);
    }
  }
  for (const Handle h : dropped) ASSERT_TRUE(pool->free(h).ok());
  std::vector<Handle> old(kN);
  for (std::size_t i = 0; i < kN; i += 8) old[i] = cells[i].load();
  ReadGuard g = pool->read_section();
  const HandleCompactResult r = pool->compact_handles();
  ASSERT_GT(r.entries_migrated, 0u);
  std::size_t renumbered = 0;
  for (std::size_t i = 0; i < kN; i += 8) {
    absl::StatusOr<std::span<const std::byte>> b = g.read(cells[i]);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE(Matches(*b, 100 + i));
    if (cells[i].load().raw != old[i].raw) {
      ++renumbered;
      EXPECT_EQ(g.read(old[i]).status().code(), absl::StatusCode::kNotFound);  // the old handle is stale
    }
  }
  EXPECT_EQ(renumbered, r.entries_migrated);
}

TEST(ReadSection, OldCopiesGoAtOnceWhenAnAllocationIsShortOfMemoryAndNotWhileRead) {
  PoolOptions options = Quiet();
  options.memory_limit = Bytes(std::size_t{8} << 20);
  auto pool = Pool::Create(options).value();
  const std::vector<Obj> kept = SparseObjects(*pool, 24000, 256);  // ~6 MiB of blocks, a quarter used
  std::vector<Handle> more;
  {
    ReadGuard g = pool->read_section();
    const std::span<const std::byte> first = g.read(kept[0].h).value();
    ASSERT_GT(pool->compact().objects_moved, 1000u);
    const std::uint64_t held = pool->stats().old_copy_bytes;
    ASSERT_GT(held, std::uint64_t{1} << 20);  // and the blocks around them: ~4.5 MiB
    // 4 MiB more does not fit beside the old copies, and they stay while the section is open.
    absl::Status s;
    for (std::size_t i = 0; i < 4000 && s.ok(); ++i) {
      absl::StatusOr<Handle> h = pool->allocate(1000);
      if (h.ok()) more.push_back(*h);
      s = h.status();
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(pool->stats().old_copy_bytes, held);
    EXPECT_TRUE(Matches(first, kept[0].seed));
  }
  // The section ended: the next allocation short of memory takes the old copies' pages, with no compaction.
  while (more.size() < 4000) more.push_back(pool->allocate(1000).value());
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.old_copy_bytes, 0u);
  EXPECT_GT(s.old_copies_freed_under_pressure, 1000u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A gate a test closes to hold a thread inside an Os call.
class Gate {
 public:
  void Close() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> l(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  // Called by the held thread: says it arrived, then waits for Open.
  void Pass() {
    std::unique_lock<std::mutex> l(mu_);
    arrived_ = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  void WaitArrived() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return arrived_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true, arrived_ = false;
};

TEST(ReadSection, AReaderNeverWaitsForAMoverHeldInsideItsMove) {
  os::FaultInjectingOs fos;
  PoolOptions options = Quiet();
  options.os = &fos;
  auto pool = Pool::Create(options).value();
  const std::vector<Obj> kept = SparseObjects(*pool, 8000, 96);
  std::atomic<int> step{0};  // 1: the reader holds a record; 2: read now; 3: the reader is done
  std::thread reader([&] {
    { ReadGuard g = pool->read_section(); }  // a record of its own: the mover's barrier calls membarrier
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    ReadGuard g = pool->read_section();
    for (const Obj& o : kept) {
      absl::StatusOr<std::span<const std::byte>> b = g.read(o.h);
      ASSERT_TRUE(b.ok()) << b.status();
      ASSERT_TRUE(Matches(*b, o.seed));
    }
    step.store(3);
  });
  while (step.load() != 1) std::this_thread::yield();
  Gate gate;
  gate.Close();
  fos.SetHook(os::OsOp::kMembarrier, [&] { gate.Pass(); });
  std::thread mover([&] { EXPECT_GT(pool->compact().objects_moved, 0u); });
  // The mover has claimed its first batch (MOVING) and is held inside the barrier that confirms it; the
  // reader reads every object, the claimed ones included, while it is held.
  gate.WaitArrived();
  step.store(2);
  while (step.load() != 3) std::this_thread::yield();
  fos.SetHook(os::OsOp::kMembarrier, nullptr);
  gate.Open();
  mover.join();
  reader.join();
  pool->release_free_memory();
  EXPECT_EQ(pool->stats().old_copy_bytes, 0u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// Readers read a fixed set of objects in back-to-back sections while a mover compacts and defragments and
// a churner allocates and frees objects of its own (frees racing the moves); every byte read matches.
TEST(ReadSection, ReadersRaceMovesFreesAndCompactions) {
  auto pool = Pool::Create(Quiet()).value();
  const std::vector<Obj> kept = SparseObjects(*pool, 12000, 120);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, compactions{0};
  auto read_loop = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      ReadGuard g = pool->read_section();
      for (int k = 0; k < 64; ++k) {
        const Obj& o = kept[rng() % kept.size()];
        absl::StatusOr<std::span<const std::byte>> b = g.read(o.h);
        ASSERT_TRUE(b.ok()) << b.status();
        ASSERT_TRUE(Matches(*b, o.seed));
      }
      reads.fetch_add(64, std::memory_order_relaxed);
    }
  };
  std::thread r1(read_loop, 1), r2(read_loop, 2);
  std::thread churn([&] {
    std::mt19937_64 rng(3);
    std::vector<Obj> mine;
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      if (mine.size() < 2000 || rng() % 2 == 0) {
        const std::size_t size = 16 + rng() % 300;
        mine.push_back({AllocFilled(*pool, size, 1'000'000 + i), size, 1'000'000 + i});
      } else {
        const std::size_t at = rng() % mine.size();
        ASSERT_TRUE(Intact(*pool, mine[at].h, mine[at].size, mine[at].seed));
        ASSERT_TRUE(pool->free(mine[at].h).ok());
        mine[at] = mine.back();
        mine.pop_back();
      }
    }
    for (const Obj& o : mine) ASSERT_TRUE(pool->free(o.h).ok());
  });
  std::thread mover([&] {
    std::vector<Handle> all;
    for (const Obj& o : kept) all.push_back(o.h);
    std::vector<RelocateOutcome> outcomes(all.size());
    for (int i = 0; i < 60 && !::testing::Test::HasFailure(); ++i) {
      // Every kept object moves (into fresh blocks), whoever reads it.
      EXPECT_GT(pool->relocate(all, outcomes).value().moved, 0u);
      pool->compact();
      if (i % 4 == 0) pool->defragment();
      if (i % 8 == 0) pool->release_free_memory();
      compactions.fetch_add(1);
    }
    stop.store(true);
  });
  mover.join();
  r1.join();
  r2.join();
  churn.join();
  EXPECT_GT(reads.load(), 0u);
  pool->release_free_memory();
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.old_copy_bytes, 0u);
  EXPECT_GT(s.objects_moved, 0u);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(ReadSectionDeathTest, CheckedModeAbortsOnAStaleReadNamingTheHandle) {
  PoolOptions options = Quiet();
  options.checked = true;
  auto pool = Pool::Create(options).value();
  const Handle h = pool->allocate(32).value();
  ASSERT_TRUE(pool->free(h).ok());
  EXPECT_DEATH(
      {
        ReadGuard g = pool->read_section();
        (void)g.read(h);
      },
      "read: handle 0x[0-9a-f]+ is stale");
}

}  // namespace
}  // namespace mova
