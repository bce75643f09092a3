// How the pool's defragmenter moves pages: blocks by UFFDIO_MOVE (or memcpy when it is turned off), huge
// objects as whole runs (UFFDIO_MOVE, else mremap within its budget), each way counted; pinned huge objects
// stay put; and after fork both processes keep a working pool — the parent's moves of pages it shares with
// the child fall back to memcpy, and the child never touches the parent's memory.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "bench/rss.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::FreeEveryOther;
using testing::Intact;
using testing::Obj;
using testing::ScatteredDenseBlocks;

bool AllIntact(Pool& pool, const std::vector<Obj>& objs) {
  for (const Obj& o : objs) {
    if (!Intact(pool, o.h, o.size, o.seed)) return false;
  }
  return true;
}

// Class blocks are shorter than the default zero_copy_min: they are copied unless zero-copy is asked for
// every length.
TEST(PoolMoves, BlocksMoveByUserfaultfdOrByMemcpyAsConfigured) {
  struct Case {
    bool uffd;
    Bytes zero_copy_min;
    bool expect_uffd;
  };
  for (const Case& c : {Case{true, Bytes(0), true}, Case{true, PoolOptions().zero_copy_min, false},
                        Case{false, Bytes(0), false}}) {
    PoolOptions options;
    options.move_by_userfaultfd = c.uffd;
    options.zero_copy_min = c.zero_copy_min;
    auto pool = Pool::Create(options).value();
    std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 11, 16u << 20);
    const PoolStats before = pool->stats();
    if (c.uffd && !before.userfaultfd_ready) GTEST_SKIP() << "UFFDIO_MOVE unavailable on this kernel";
    EXPECT_EQ(before.userfaultfd_ready, c.uffd);
    const DefragResult r = pool->defragment();
    const PoolStats after = pool->stats();
    ASSERT_GT(r.blocks_migrated, 0u);
    if (c.expect_uffd) {
      EXPECT_EQ(r.moves_uffd, r.blocks_migrated);
      EXPECT_EQ(r.moves_copy, 0u);
      EXPECT_EQ(after.bytes_moved_uffd, r.pages_moved * kPageSize);
    } else {
      EXPECT_EQ(r.moves_copy, r.blocks_migrated);
      EXPECT_EQ(r.moves_uffd, 0u);
      EXPECT_EQ(after.bytes_moved_copy, r.pages_moved * kPageSize);
    }
    EXPECT_EQ(after.moves_uffd + after.moves_copy, after.blocks_migrated);
    // A call the kernel miscounted (it moved every page, then answered an error) still ends as a move by
    // UFFDIO_MOVE; no other call falls back.
    EXPECT_EQ(after.uffd_busy_fallbacks + after.uffd_other_fallbacks, after.uffd_miscounts);
    EXPECT_EQ(after.block_bytes, before.block_bytes);
    EXPECT_GT(r.regions_freed, 0u);
    EXPECT_TRUE(AllIntact(*pool, kept));
  }
}

// Huge objects of several sizes (under a region, a region and more) between fillers; the fillers and the
// lower huge objects are freed, so the upper ones have room below.
struct HugeLayout {
  std::vector<Obj> kept;
  std::uint64_t regions_before = 0;
};
HugeLayout ScatteredHugeObjects(Pool& pool) {
  const std::size_t sizes[] = {70 << 10, 300 << 10, 1500 << 10, 2600 << 10};
  std::vector<Obj> huge, fillers;
  for (std::size_t i = 0; i < 48; ++i) {
    const std::size_t s = sizes[i % 4] + 8 * i;
    huge.push_back({AllocFilled(pool, s, 1000 + i), s, 1000 + i});
    fillers.push_back({AllocFilled(pool, 200 << 10, 5000 + i), 200 << 10, 5000 + i});
  }
  for (const Obj& f : fillers) EXPECT_TRUE(pool.free(f.h).ok());
  HugeLayout out;
  for (std::size_t i = 0; i < huge.size(); ++i) {
    if (i < huge.size() / 2) {
      EXPECT_TRUE(pool.free(huge[i].h).ok());
    } else {
      out.kept.push_back(huge[i]);
    }
  }
  out.regions_before = pool.stats().regions_in_use;
  return out;
}

// Both tests below count zero-copy moves: every huge object takes one (the 70 KiB ones are under the default
// zero_copy_min and would be copied, as placement may put any of them above a hole).
PoolOptions EveryHugeMoveZeroCopy() {
  PoolOptions options;
  options.zero_copy_min = Bytes(0);
  return options;
}

TEST(PoolMoves, HugeObjectsMoveDownKeepTheirBytesAndPinnedOnesStayPut) {
  auto pool = Pool::Create(EveryHugeMoveZeroCopy()).value();
  HugeLayout layout = ScatteredHugeObjects(*pool);
  // Pin one huge object: it must not move.
  const Obj& pinned_obj = layout.kept.back();  // the highest: a candidate to move
  Pinned pinned = pool->pin(pinned_obj.h, Access::kRead).value();
  const std::byte* pinned_at = pinned.data();
  const PoolStats before = pool->stats();

  const DefragResult r = pool->defragment();
  const PoolStats after = pool->stats();
  std::printf("huge: %lu migrated (%lu by UFFDIO_MOVE, %lu by mremap, %lu by memcpy), %lu pages; regions %lu -> %lu\n",
              (unsigned long)r.huge_migrated, (unsigned long)r.moves_uffd, (unsigned long)r.moves_mremap,
              (unsigned long)r.moves_copy, (unsigned long)r.pages_moved, (unsigned long)layout.regions_before,
              (unsigned long)after.regions_in_use);
  EXPECT_GT(r.huge_migrated, 0u);
  EXPECT_GT(r.regions_freed, 0u);
  EXPECT_LT(after.regions_in_use, layout.regions_before);
  EXPECT_GT(r.isolate_failed, 0u);  // the pinned one
  EXPECT_EQ(after.huge_migrated, r.huge_migrated);
  EXPECT_EQ(after.huge_objects, before.huge_objects);
  EXPECT_EQ(after.huge_bytes, before.huge_bytes);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  if (after.userfaultfd_ready) {
    EXPECT_EQ(r.moves_uffd, r.huge_migrated);
  }
  EXPECT_EQ(pinned.data(), pinned_at);
  EXPECT_TRUE(testing::Matches(pinned.bytes(), pinned_obj.seed));
  pinned.reset();
  EXPECT_TRUE(AllIntact(*pool, layout.kept));
  // Moved huge objects free like any other, and their pages go back.
  for (const Obj& o : layout.kept) ASSERT_TRUE(pool->free(o.h).ok());
  const PoolStats empty = pool->stats();
  EXPECT_EQ(empty.huge_objects, 0u);
  EXPECT_EQ(empty.huge_bytes, 0u);
  EXPECT_EQ(empty.regions_in_use, 0u);
}

TEST(PoolMoves, WithoutUserfaultfdHugeObjectsMoveByMremapAndMappingsStayBounded) {
  PoolOptions options = EveryHugeMoveZeroCopy();
  options.move_by_userfaultfd = false;
  auto pool = Pool::Create(options).value();
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::size_t mappings_before = bench::MappingsIn(arena.start, arena.size).value();
  HugeLayout layout = ScatteredHugeObjects(*pool);
  const DefragResult r = pool->defragment();
  const PoolStats after = pool->stats();
  EXPECT_FALSE(after.userfaultfd_ready);
  EXPECT_GT(r.huge_migrated, 0u);
  EXPECT_EQ(r.moves_mremap, r.huge_migrated);
  EXPECT_EQ(r.moves_uffd, 0u);
  EXPECT_TRUE(AllIntact(*pool, layout.kept));
  EXPECT_LE(bench::MappingsIn(arena.start, arena.size).value(), mappings_before + 2 * after.moves_mremap);
}

// The child of a fork shares the parent's pages copy-on-write. The parent's defragmentation cannot take
// shared pages (UFFDIO_MOVE answers EBUSY) and copies them instead; the child, whose userfaultfd would name the
// parent's memory, moves by memcpy. Both keep every object.
TEST(PoolMoves, AfterForkBothProcessesKeepAWorkingPool) {
  PoolOptions zero_copy;
  zero_copy.zero_copy_min = Bytes(0);  // blocks too, so that the parent's moves meet the shared pages
  auto pool = Pool::Create(zero_copy).value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 21, 16u << 20);
  if (!pool->stats().userfaultfd_ready) GTEST_SKIP() << "UFFDIO_MOVE unavailable on this kernel";
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(10);
    if (pool->stats().userfaultfd_ready) _exit(11);
    if (!AllIntact(*pool, kept)) _exit(12);
    // Use it: free half, allocate more, compact and defragment.
    bool freed = false;
    std::vector<Obj> mine = FreeEveryOther(*pool, kept, &freed);
    if (!freed) _exit(13);
    for (std::size_t i = 0; i < 20000; ++i) mine.push_back({AllocFilled(*pool, 100 + i % 900, 9000 + i), 100 + i % 900, 9000 + i});
    for (std::size_t i = 0; i < mine.size(); i += 3) {
      if (!pool->free(mine[i].h).ok()) _exit(14);
      mine[i].size = 0;
    }
    std::erase_if(mine, [](const Obj& o) { return o.size == 0; });
    pool->compact();
    const DefragResult r = pool->defragment();
    if (r.moves_uffd != 0) _exit(15);
    if (r.moves_copy != r.blocks_migrated) _exit(16);
    if (!AllIntact(*pool, mine)) _exit(17);
    // A pool made in the child gets a userfaultfd of the child's own: its moves are zero-copy, in the
    // child's memory (the parent checks below that its own objects did not change).
    auto fresh = Pool::Create(zero_copy).value();
    if (!fresh->stats().userfaultfd_ready) _exit(18);
    std::vector<Obj> theirs = ScatteredDenseBlocks(*fresh, 41, 8u << 20);
    const DefragResult fr = fresh->defragment();
    if (fr.blocks_migrated == 0 || fr.moves_uffd != fr.blocks_migrated) _exit(19);
    if (!AllIntact(*fresh, theirs) || !AllIntact(*pool, mine)) _exit(20);
    _exit(0);
  }
  // The parent defragments while every page is shared with the child.
  const DefragResult r = pool->defragment();
  const PoolStats after = pool->stats();
  // Isolation writes a block's descriptor, which makes its first page the parent's own again (copy-on-write):
  // that page moves by UFFDIO_MOVE, the shared rest by memcpy — and a block of one page moves entirely.
  EXPECT_GT(r.blocks_migrated, 0u);
  EXPECT_EQ(r.moves_copy + r.moves_uffd, r.blocks_migrated);
  EXPECT_GT(r.moves_copy, r.blocks_migrated / 2);
  EXPECT_EQ(after.uffd_busy_fallbacks, r.moves_copy);
  EXPECT_TRUE(after.userfaultfd_ready);
  EXPECT_TRUE(AllIntact(*pool, kept));
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's pool failed at step " << WEXITSTATUS(status);
  EXPECT_TRUE(AllIntact(*pool, kept)) << "the child's moves touched the parent's memory";
  close(go[0]);
  close(go[1]);
  // The parent goes on using the pool (its pages stay marked shared until written, so moves of them still
  // copy; see move_engine_test for the page-level rule).
  bool freed = false;
  kept = FreeEveryOther(*pool, kept, &freed);
  ASSERT_TRUE(freed);
  for (std::size_t i = 0; i < 20000; ++i) kept.push_back({AllocFilled(*pool, 64, 20000 + i), 64, 20000 + i});
  pool->compact();
  pool->defragment();
  EXPECT_TRUE(AllIntact(*pool, kept));
}

// Per-thread state across fork: a thread of the parent holds a pin in its access record when the process
// forks. The child has no such thread, but the record came with the memory: the child's mover (its membarrier
// registration is inherited) never waits for the missing thread and keeps that object in place; everything
// else works.
TEST(PoolMoves, AForkedChildKeepsThePinsOfThreadsItDoesNotHave) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 23, 8u << 20);
  const Obj pinned_obj = kept[kept.size() / 3];
  std::atomic<bool> pinned{false}, release{false};
  std::thread holder([&] {
    Pinned p = pool->pin_owned(pinned_obj.h, Access::kRead).value();  // in this thread's record
    pinned = true;
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!pinned.load()) std::this_thread::yield();
  const std::byte* at = pool->pin(pinned_obj.h, Access::kRead).value().data();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::vector<Obj> mine;
    for (std::size_t i = 0; i < kept.size(); ++i) {
      if (i % 2 == 0 && kept[i].h.raw != pinned_obj.h.raw) {
        if (!pool->free(kept[i].h).ok()) _exit(10);
      } else {
        mine.push_back(kept[i]);
      }
    }
    const CompactResult c = pool->compact();
    pool->defragment();
    if (c.objects_moved == 0) _exit(12);
    if (pool->pin(pinned_obj.h, Access::kRead).value().data() != at) _exit(13);
    if (!AllIntact(*pool, mine)) _exit(14);
    for (std::size_t i = 0; i < 5000; ++i) mine.push_back({AllocFilled(*pool, 80, 70000 + i), 80, 70000 + i});
    pool->compact();
    if (!AllIntact(*pool, mine)) _exit(15);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's pool failed at step " << WEXITSTATUS(status);
  release = true;
  holder.join();
  EXPECT_TRUE(AllIntact(*pool, kept));
  EXPECT_TRUE(pool->free(pinned_obj.h).ok());
}

// fork() waits until the background compactor is between jobs, so the child never finds a lock that thread
// held: twenty forks while it compacts without pause, and every child uses its pool and exits.
TEST(PoolMoves, ForkWhileTheBackgroundCompactorRunsLeavesTheChildAWorkingPool) {
  PoolOptions options;
  options.background_interval = std::chrono::milliseconds(1);
  options.background_threshold = 0;  // compact at every wakeup
  auto pool = Pool::Create(options).value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 51, 8u << 20);
  for (int round = 0; round < 20; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      alarm(20);  // a deadlocked child dies instead of hanging the test
      if (pool->stats().background_running) _exit(30);
      std::vector<Handle> tmp;
      for (int i = 0; i < 1000; ++i) tmp.push_back(pool->allocate(100 + i).value());
      for (Handle h : tmp) {
        if (!pool->free(h).ok()) _exit(31);
      }
      pool->compact();
      pool->defragment();
      if (!AllIntact(*pool, kept)) _exit(32);
      pool.reset();  // no thread to join in the child: returns at once
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "round " << round << ": the child died (signal " << WTERMSIG(status) << ")";
    ASSERT_EQ(WEXITSTATUS(status), 0) << "round " << round;
  }
  EXPECT_TRUE(pool->stats().background_running);
  EXPECT_GT(pool->stats().background_runs, 0u);
  EXPECT_TRUE(AllIntact(*pool, kept));
}

// 100k block migrations through the pool. Objects of 4000 B fill one-page blocks alone, so freeing one frees
// its block, and 3584 of them fill exactly seven regions: every round allocates 50 objects (new blocks in the
// eighth region), frees 50 others at random (holes below), returns the caches and the spare block, and
// defragment() moves the top blocks down into the holes. Every object is checked every 100 rounds and at the
// end, and the mappings over the arena are counted before and after.
TEST(PoolMoves, HundredThousandBlockMigrationsKeepEveryObject) {
  auto pool = Pool::Create().value();
  constexpr std::size_t kSize = 4000;
  constexpr std::uint64_t kTarget = 100000;
  std::mt19937_64 rng(61);
  std::uint64_t next_seed = 1;
  std::vector<Obj> objs;
  auto alloc = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i, ++next_seed) objs.push_back({AllocFilled(*pool, kSize, next_seed), kSize, next_seed});
  };
  alloc(3584);
  for (const ClassStats& c : pool->stats().classes) {
    if (c.slot_size >= kSize && c.blocks > 0) {
      ASSERT_EQ(c.objects_per_block, 1u) << "the test needs one object per block";
    }
  }
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::size_t mappings_before = bench::MappingsIn(arena.start, arena.size).value();
  std::uint64_t migrated = 0, uffd = 0, rounds = 0;
  while (migrated < kTarget) {
    alloc(50);
    for (int k = 0; k < 50; ++k) {
      const std::size_t i = rng() % objs.size();
      ASSERT_TRUE(pool->free(objs[i].h).ok());
      objs[i] = objs.back();
      objs.pop_back();
    }
    pool->flush_thread_cache();  // the freed slots go back to their blocks, which are released
    pool->compact();             // and the class's spare block too
    const DefragResult r = pool->defragment();
    migrated += r.blocks_migrated;
    uffd += r.moves_uffd;
    if (++rounds % 100 == 0) {
      ASSERT_TRUE(AllIntact(*pool, objs)) << "after round " << rounds;
    }
    ASSERT_LT(rounds, 10000u) << "migrations stalled at " << migrated;
  }
  std::printf("%lu block migrations (%lu by UFFDIO_MOVE) in %lu rounds\n", (unsigned long)migrated,
              (unsigned long)uffd, (unsigned long)rounds);
  EXPECT_TRUE(AllIntact(*pool, objs));
  EXPECT_EQ(pool->stats().live_objects, objs.size());
  EXPECT_EQ(bench::MappingsIn(arena.start, arena.size).value(), mappings_before) << "moves must add no mapping";
}

// A move that cannot finish (UFFDIO_MOVE refused and no memory for the copy) fails cleanly: the block is
// put back where it was, whole, and the next defragment() moves it.
TEST(PoolMoves, AMoveThatCannotFinishPutsTheBlockBackWhole) {
  os::FaultInjectingOs fos;
  PoolOptions options;
  options.os = &fos;
  auto pool = Pool::Create(options).value();
  std::vector<Obj> kept = ScatteredDenseBlocks(*pool, 31, 8u << 20);
  fos.FailAfter(os::OsOp::kMovePages, 0, EBUSY);
  fos.FailAfter(os::OsOp::kPopulate, 0, ENOMEM);
  const DefragResult failed = pool->defragment();
  EXPECT_GT(failed.blocks_isolated, 0u);
  EXPECT_EQ(failed.blocks_migrated, 0u);
  EXPECT_EQ(failed.blocks_failed, failed.blocks_isolated);  // every one put back
  EXPECT_EQ(failed.regions_freed, 0u);
  EXPECT_TRUE(AllIntact(*pool, kept));
  fos.Clear(os::OsOp::kMovePages);
  fos.Clear(os::OsOp::kPopulate);
  const DefragResult ok = pool->defragment();
  EXPECT_GT(ok.blocks_migrated, 0u);
  EXPECT_GT(ok.regions_freed, 0u);
  EXPECT_TRUE(AllIntact(*pool, kept));
}

// Asked to, defragment() puts full regions on transparent huge pages (MADV_COLLAPSE) without adding a
// mapping, and does not collapse a region again until it has lost a page and filled again.
// MADV_COLLAPSE may refuse a region when no huge page can be had at the moment (other processes, or other
// tests running beside this one, hold the memory): a refusal is counted, and the region tried again by the
// next defragment(). So every full region is collapsed or counted refused, never skipped.
TEST(PoolMoves, FullRegionsAreCollapsedOntoHugePagesWhenAsked) {
  PoolOptions options;
  options.collapse_dense_regions = true;
  auto pool = Pool::Create(options).value();
  const Pool::AddressRange arena = pool->reserved_ranges()[0];
  const std::size_t mappings_before = bench::MappingsIn(arena.start, arena.size).value();
  std::vector<Obj> objs;
  for (std::size_t i = 0; i < (10u << 20) / 64; ++i) objs.push_back({AllocFilled(*pool, 64, i), 64, i});
  const DefragResult r = pool->defragment();
  const PoolStats s = pool->stats();
  if (r.regions_collapsed == 0 && s.collapse_failures > 0) GTEST_SKIP() << "MADV_COLLAPSE refused on this kernel";
  const std::uint64_t refused = s.collapse_failures;
  EXPECT_GE(r.regions_collapsed + refused, 3u);  // 10 MiB of 1-page blocks: at least 4 full regions
  EXPECT_EQ(s.regions_collapsed, r.regions_collapsed);
  EXPECT_GE(bench::AnonHugeBytesIn(arena.start, arena.size).value(), r.regions_collapsed * (std::uint64_t{2} << 20));
  EXPECT_EQ(bench::MappingsIn(arena.start, arena.size).value(), mappings_before);
  EXPECT_TRUE(AllIntact(*pool, objs));
  // A region on huge pages is not collapsed again; one refused is tried again.
  const DefragResult again = pool->defragment();
  EXPECT_LE(again.regions_collapsed, refused) << "collapsed regions are not collapsed again";
  if (refused == 0) {
    EXPECT_EQ(pool->stats().collapse_failures, 0u);
    EXPECT_EQ(again.regions_collapsed, 0u);
  }
  // Emptying a few blocks of the first region gives pages back: the region is no longer full. Once first fit
  // has filled it again, it is collapsed again (or refused, and counted).
  for (std::size_t i = 0; i < 512; ++i) ASSERT_TRUE(pool->free(objs[i].h).ok());
  pool->flush_thread_cache();
  pool->compact();  // releases the emptied blocks, the class's spare too
  EXPECT_LT(pool->stats().block_bytes, s.block_bytes);
  std::vector<Obj> more;
  for (std::size_t i = 0; i < 4096; ++i) more.push_back({AllocFilled(*pool, 64, 1u << 30 | i), 64, 1u << 30 | i});
  const std::uint64_t refused_before = pool->stats().collapse_failures;
  const std::uint64_t collapsed = pool->defragment().regions_collapsed;
  EXPECT_GE(collapsed + (pool->stats().collapse_failures - refused_before), 1u);
  EXPECT_TRUE(AllIntact(*pool, more));
}

}  // namespace
}  // namespace mova
