// Several threads allocate, free, pin and compact one pool at once; contents and counters stay right.
// Run under ThreadSanitizer by the test command.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/class_stats.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;
using testing::Obj;
using testing::StatsOf;

#ifdef MOVA_TSAN
constexpr int kOpsPerThread = 6000;
constexpr int kCompactionsRacingAnOwner = 100;
constexpr std::uint64_t kOwnerCalls = 5000;
#else
constexpr int kOpsPerThread = 60000;
constexpr int kCompactionsRacingAnOwner = 1000;
constexpr std::uint64_t kOwnerCalls = 50000;
#endif

// Objects handed between threads, so objects are freed by threads that did not allocate them.
class Exchange {
 public:
  void Put(const Obj& o) {
    MutexLock lock(&mu_);
    objs_.push_back(o);
  }
  bool Take(Obj* o) {
    MutexLock lock(&mu_);
    if (objs_.empty()) return false;
    *o = objs_.back();
    objs_.pop_back();
    return true;
  }
  std::vector<Obj> Drain() {
    MutexLock lock(&mu_);
    return std::move(objs_);
  }

 private:
  Mutex mu_;
  std::vector<Obj> objs_ ABSL_GUARDED_BY(mu_);
};

// Three workers allocate, free, hand objects over and pin (up to 10 objects at once, so beyond the pin slots of
// a thread's record: those pins are counted in the entries) while a compactor runs nonstop.
void AllocFreePinAndCompactAtOnce(const PoolOptions& options) {
  auto pool = Pool::Create(options).value();
  Exchange exchange;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> compactions_moved{0};

  std::thread compactor([&] {
    while (!stop.load()) {
      compactions_moved += pool->compact().objects_moved;
      std::this_thread::yield();
    }
  });

  constexpr int kThreads = 3;
  std::vector<std::vector<Obj>> owned(kThreads);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<Obj>& mine = owned[t];
      for (int op = 0; op < kOpsPerThread; ++op) {
        const int what = rng() % 10;
        if (what < 4 || mine.empty()) {
          const std::size_t size = 16 + rng() % (op % 50 == 0 ? 70000 : 600);
          const std::uint64_t seed = rng();
          mine.push_back({AllocFilled(*pool, size, seed), size, seed});
        } else if (what < 6) {
          const std::size_t i = rng() % mine.size();
          if (!Intact(*pool, mine[i].h, mine[i].size, mine[i].seed)) ++bad;
          if (!pool->free(mine[i].h).ok()) ++bad;
          mine[i] = mine.back();
          mine.pop_back();
        } else if (what < 7) {
          const std::size_t i = rng() % mine.size();
          exchange.Put(mine[i]);
          mine[i] = mine.back();
          mine.pop_back();
        } else if (what < 8) {
          Obj o;
          if (exchange.Take(&o)) {
            if (!Intact(*pool, o.h, o.size, o.seed)) ++bad;
            if (!pool->free(o.h).ok()) ++bad;
          }
        } else {
          // Hold pins across a little work while the compactor runs: the bytes must not change under them.
          std::vector<std::pair<Pinned, std::uint64_t>> pins;
          for (int k = 1 + static_cast<int>(rng() % 10); k > 0; --k) {
            const Obj& o = mine[rng() % mine.size()];
            // Its own objects: nobody else frees them, so pin_owned's contract holds; half the pins each way.
            absl::StatusOr<Pinned> p = rng() % 2 == 0 ? pool->pin(o.h, Access::kRead) : pool->pin_owned(o.h, Access::kRead);
            if (!p.ok() || !testing::Matches(p->bytes(), o.seed)) {
              ++bad;
              continue;
            }
            pins.emplace_back(std::move(*p), o.seed);
          }
          std::this_thread::yield();
          for (const auto& [p, seed] : pins) {
            if (!testing::Matches(p.bytes(), seed)) ++bad;
          }
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  stop = true;
  compactor.join();
  EXPECT_EQ(bad.load(), 0);

  std::vector<Obj> all = exchange.Drain();
  for (auto& v : owned) all.insert(all.end(), v.begin(), v.end());
  std::uint64_t live = 0;
  for (const Obj& o : all) {
    ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
    live += o.size;
  }
  // The workers have exited: their caches went back to the pool.
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.live_objects, all.size());
  EXPECT_EQ(s.live_bytes, live);
  for (const ClassStats& c : s.classes) { EXPECT_EQ(c.objects_cached, 0u); }
  EXPECT_GT(compactions_moved.load() + pool->compact().objects_moved, 0u);
  for (const Obj& o : all) { ASSERT_TRUE(pool->free(o.h).ok()); }
  pool->flush_thread_cache();
  pool->release_free_memory();  // the classes' spare blocks too
  const PoolStats end = pool->stats();
  EXPECT_EQ(end.live_objects, 0u);
  EXPECT_EQ(end.block_bytes, 0u);
  EXPECT_EQ(end.handles_in_use, 0u);
}

TEST(PoolConcurrency, AllocFreePinAndCompactAtOnce) { AllocFreePinAndCompactAtOnce(PoolOptions{}); }

TEST(PoolConcurrency, AllocFreePinAndCompactAtOnceWithoutMembarrier) {
  // Where the kernel has no expedited membarrier, pinners and freers fence and the mover does too.
  os::FaultInjectingOs fos;
  fos.FailAfter(os::OsOp::kRegisterMembarrier, 0, ENOSYS);
  PoolOptions o;
  o.os = &fos;
  AllocFreePinAndCompactAtOnce(o);
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 0);
}

// A thin heap (one object in eight kept) of 64-byte objects, so that compaction has objects to move.
std::vector<Obj> ThinHeap(Pool& pool, std::uint64_t seed_base) {
  std::vector<Obj> kept;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    const Obj o{AllocFilled(pool, 64, seed_base + i), 64, seed_base + i};
    if (i % 8 == 0) {
      kept.push_back(o);
    } else {
      EXPECT_TRUE(pool.free(o.h).ok());
    }
  }
  return kept;
}

// The mover never waits for a thread: one that holds a pin_owned pin and sleeps (idle), and one that pinned,
// handed its Pinned over and exited (the pins live in those threads' records). Their objects stay where they
// are while compaction and defragmentation move the rest; once the pins are dropped (one from another thread)
// they are freed like any other.
TEST(PoolConcurrency, IdleAndExitedThreadsHoldingPinsNeverStallTheMover) {
  auto pool = Pool::Create().value();
  std::vector<Obj> kept = ThinHeap(*pool, 100);
  const Obj idle_obj = kept[kept.size() / 2], gone_obj = kept[kept.size() / 2 + 1];

  Mutex mu;
  bool idle_pinned = false, release_idle = false;
  CondVar cv;
  std::thread idle([&] {
    Pinned p = pool->pin_owned(idle_obj.h, Access::kRead).value();
    MutexLock lock(&mu);
    idle_pinned = true;
    cv.SignalAll();
    while (!release_idle) cv.WaitWithTimeout(&mu, absl::Milliseconds(50));  // blocked, holding the pin, for as long as the mover works
  });
  Pinned handed;
  std::thread gone([&] { handed = pool->pin_owned(gone_obj.h, Access::kRead).value(); });
  gone.join();
  {
    MutexLock lock(&mu);
    while (!idle_pinned) cv.WaitWithTimeout(&mu, absl::Milliseconds(50));
  }
  const std::byte* idle_at = nullptr;
  {
    Pinned p = pool->pin(idle_obj.h, Access::kRead).value();
    idle_at = p.data();
  }
  const std::byte* gone_at = handed.data();

  const CompactResult c = pool->compact();
  const DefragResult d = pool->defragment();
  EXPECT_GT(c.objects_moved, 0u);
  EXPECT_EQ(pool->pin(idle_obj.h, Access::kRead).value().data(), idle_at);
  EXPECT_EQ(handed.data(), gone_at);
  for (const Obj& o : kept) EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  (void)d;

  handed.reset();  // dropped here: the pin lived in the exited thread's record
  {
    MutexLock lock(&mu);
    release_idle = true;
    cv.SignalAll();
  }
  idle.join();
  EXPECT_TRUE(pool->free(gone_obj.h).ok());
  EXPECT_TRUE(pool->free(idle_obj.h).ok());
  std::erase_if(kept, [&](const Obj& o) { return o.h.raw == idle_obj.h.raw || o.h.raw == gone_obj.h.raw; });
  pool->compact();
  for (const Obj& o : kept) EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

// A pin_owned Pinned taken in one thread and reset in another drops its pin there (the slot of the first
// thread's record); the object can then be freed.
TEST(PoolConcurrency, APinnedResetInAnotherThreadDropsItsPin) {
  auto pool = Pool::Create().value();
  const Obj o{AllocFilled(*pool, 100, 5), 100, 5};
  Pinned p = pool->pin_owned(o.h, Access::kRead).value();
  std::thread other([moved = std::move(p)]() mutable { moved.reset(); });
  other.join();
  EXPECT_TRUE(pool->free(o.h).ok());
}

// A barrier that fails (membarrier returning an error) leaves every claim given up: compaction moves nothing
// and loses nothing, and moves again once the barrier works.
TEST(PoolConcurrency, AFailingBarrierMovesNothingAndLosesNothing) {
  os::FaultInjectingOs fos;
  PoolOptions options;
  options.os = &fos;
  auto pool = Pool::Create(options).value();
  std::vector<Obj> kept = ThinHeap(*pool, 300);
  // Another thread that has used the pool (it holds an access record): the mover's barrier is a membarrier.
  std::atomic<bool> done{false}, ready{false};
  std::thread other([&] {
    ASSERT_TRUE(pool->free(pool->allocate(64).value()).ok());
    ready = true;
    while (!done) std::this_thread::yield();
  });
  while (!ready) std::this_thread::yield();
  fos.FailAfter(os::OsOp::kMembarrier, 0, EPERM);
  const CompactResult failed = pool->compact();
  EXPECT_EQ(failed.objects_moved, 0u);
  EXPECT_GT(failed.objects_skipped, 0u);
  EXPECT_GT(fos.failures(os::OsOp::kMembarrier), 0);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  fos.Clear(os::OsOp::kMembarrier);
  EXPECT_GT(pool->compact().objects_moved, 0u);
  done = true;
  other.join();
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  for (const Obj& o : kept) ASSERT_TRUE(pool->free(o.h).ok());
}

TEST(PoolConcurrency, DefragmentWhileThreadsAllocateFreeAndPin) {
  auto pool = Pool::Create().value();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> migrated{0}, huge_migrated{0};
  std::vector<std::vector<Obj>> owned(2);
  {
    // A scattered heap first (dense blocks over many regions, huge objects between them), so the mover has
    // blocks and huge objects to move while the workers run; the survivors are the first worker's.
    std::vector<Handle> spacers;
    for (int i = 0; i < 8; ++i) {
      owned[0].push_back({AllocFilled(*pool, 70000 + 1000 * i, 77 + i), 70000u + 1000 * i, 77u + i});
      spacers.push_back(pool->allocate(300000).value());
    }
    for (Handle h : spacers) ASSERT_TRUE(pool->free(h).ok());
    std::vector<Obj> dense = testing::ScatteredDenseBlocks(*pool, 99, 16u << 20);
    owned[0].insert(owned[0].end(), dense.begin(), dense.end());
  }
  std::thread mover([&] {
    while (!stop.load()) {
      const DefragResult r = pool->defragment();
      migrated += r.blocks_migrated;
      huge_migrated += r.huge_migrated;
      pool->compact();
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::vector<Obj>& mine = owned[t];
      for (int op = 0; op < kOpsPerThread; ++op) {
        const int what = rng() % 8;
        if (what < 4 || mine.empty()) {
          // One in 256 is a huge object (its own page run, moved whole).
          const std::size_t size = rng() % 256 == 0 ? 66000 + rng() % 100000 : 16 + rng() % 800;
          const std::uint64_t seed = rng();
          mine.push_back({AllocFilled(*pool, size, seed), size, seed});
        } else if (what < 7) {
          const std::size_t i = rng() % mine.size();
          if (!Intact(*pool, mine[i].h, mine[i].size, mine[i].seed)) ++bad;
          if (!pool->free(mine[i].h).ok()) ++bad;
          mine[i] = mine.back();
          mine.pop_back();
        } else {
          const Obj& o = mine[rng() % mine.size()];
          absl::StatusOr<Pinned> p = pool->pin(o.h, Access::kRead);
          std::this_thread::yield();
          if (!p.ok() || !testing::Matches(p->bytes(), o.seed)) ++bad;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  stop = true;
  mover.join();
  EXPECT_EQ(bad.load(), 0);
  for (auto& v : owned) {
    for (const Obj& o : v) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  }
  std::printf("blocks migrated while the workers ran: %lu (%lu huge objects)\n", static_cast<unsigned long>(migrated.load()),
              static_cast<unsigned long>(huge_migrated.load()));
  EXPECT_GT(migrated.load(), 0u);
}

TEST(PoolConcurrency, FreesRacingMovesAreNeverRefused) {
  // free checks a handle's size field against where its entry says the object is, before it retires the
  // entry. A mover can take the object away between the two, and (decay 0) give the old block's pages back
  // or to another class at once: a free that then believed the stale location refused a live handle as not
  // issued. The workers free without pinning first, each survivor of a thinned heap while the mover empties
  // those very blocks, and allocate other classes into what the mover gave back.
  PoolOptions options;
  options.decay = std::chrono::milliseconds{0};
  auto pool = Pool::Create(options).value();
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0}, bad{0};
  std::atomic<std::uint64_t> moved{0};
  std::thread mover([&] {
    while (!stop.load()) {
      moved += pool->compact().objects_moved;
      moved += pool->defragment().blocks_migrated;
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(300 + t);
      for (int round = 0; round < kOpsPerThread / 2000; ++round) {
        std::vector<Obj> objs;
        const std::size_t size = 24 + 40 * (rng() % 12);  // one class a round, a different one next round
        for (int i = 0; i < 2000; ++i) {
          const std::uint64_t seed = rng();
          objs.push_back({AllocFilled(*pool, size, seed), size, seed});
        }
        // Thin out to one in four: sparse blocks the mover empties while the rest are freed below.
        std::vector<Obj> keep;
        for (std::size_t i = 0; i < objs.size(); ++i) {
          if (i % 4 == 0) {
            keep.push_back(objs[i]);
          } else if (!pool->free(objs[i].h).ok()) {
            ++bad;
          }
        }
        for (const Obj& o : keep) {
          const absl::Status s = pool->free(o.h);
          if (s.code() == absl::StatusCode::kInvalidArgument) ++refused;
          if (!s.ok()) ++bad;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  stop = true;
  mover.join();
  EXPECT_EQ(refused.load(), 0) << "live handles refused as not issued";
  EXPECT_EQ(bad.load(), 0);
  pool->flush_thread_cache();
  EXPECT_EQ(pool->stats().live_objects, 0u);
  std::printf("moves while the workers freed: %lu\n", static_cast<unsigned long>(moved.load()));
}

TEST(PoolConcurrency, ManyPinnersOneObject) {
  auto pool = Pool::Create().value();
  Handle h = AllocFilled(*pool, 256, 42);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < kOpsPerThread / 4; ++i) {
        absl::StatusOr<Pinned> p = pool->pin(h, Access::kRead);
        if (!p.ok() || !testing::Matches(p->bytes(), 42)) ++bad;
      }
    });
  }
  std::thread c([&] {
    for (int i = 0; i < 50; ++i) pool->compact();
  });
  for (auto& t : ts) t.join();
  c.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(pool->free(h).ok());
}

TEST(PoolConcurrency, OneThreadUsingManyShortLivedPools) {
  // Each pool leaves a thread-local entry behind; entries of dead pools are pruned, and a pool created after
  // many others still works and gets its cache back when the thread ends.
  std::thread t([] {
    for (int i = 0; i < 300; ++i) {
      auto pool = Pool::Create().value();
      Handle h = pool->allocate(40 + i).value();
      ASSERT_TRUE(pool->free(h).ok());
    }
  });
  t.join();
  auto pool = Pool::Create().value();
  std::thread u([&] {
    for (int i = 0; i < 100; ++i) {
      auto other = Pool::Create().value();
      ASSERT_TRUE(other->free(other->allocate(8).value()).ok());
      ASSERT_TRUE(pool->free(pool->allocate(8).value()).ok());
    }
  });
  u.join();
  EXPECT_EQ(pool->stats().handles_in_use, 0u);
}

TEST(PoolConcurrency, ConcurrentDoubleFreeHasOneWinner) {
  auto pool = Pool::Create().value();
  for (int round = 0; round < 200; ++round) {
    Handle h = pool->allocate(64).value();
    std::atomic<int> ok{0}, stale{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) {
      ts.emplace_back([&] {
        absl::Status s = pool->free(h);
        if (s.ok()) ++ok;
        if (s.code() == absl::StatusCode::kNotFound) ++stale;
      });
    }
    for (auto& t : ts) t.join();
    ASSERT_EQ(ok.load(), 1);
    ASSERT_EQ(stale.load(), 2);
  }
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

// A thread takes no slot of a block another live thread's cache took slots from (both would write that block's
// back-map lines on every allocation): while one thread keeps its cache, another thread's refill of the same
// class makes a block of its own, though the first one's block has room for it. Once the first thread is gone,
// its block is anyone's again.
TEST(PoolConcurrency, TwoLiveThreadsAllocateIntoBlocksOfTheirOwn) {
  constexpr std::uint32_t kSize = 2048;  // a refill takes a few slots of a block of many
  // No direct compaction: b's new block, sparse beside a's, would let it move b's object into a's block.
  PoolOptions options;
  options.direct_compaction = std::chrono::microseconds(0);
  auto pool = Pool::Create(options).value();
  const ClassStats geometry = StatsOf(pool->stats(), kSize);
  ASSERT_GE(geometry.objects_per_block, 8u);
  Handle of_a{}, of_b{}, of_c{};
  std::atomic<bool> a_done{false}, b_done{false};
  std::thread a([&] {
    of_a = pool->allocate(kSize).value();
    a_done.store(true);
    while (!b_done.load()) std::this_thread::yield();  // a's cache lives while b allocates
  });
  while (!a_done.load()) std::this_thread::yield();
  std::thread b([&] { of_b = pool->allocate(kSize).value(); });
  b.join();
  EXPECT_EQ(StatsOf(pool->stats(), kSize).blocks, 2u);  // b's own, beside a's (which has room)
  b_done.store(true);
  a.join();

  // a and b are gone (their caches gave their slots back): c takes from their blocks and makes none.
  std::thread c([&] { of_c = pool->allocate(kSize).value(); });
  c.join();
  EXPECT_EQ(StatsOf(pool->stats(), kSize).blocks, 2u);
  EXPECT_EQ(StatsOf(pool->stats(), kSize).objects_in_use, 3u);
  for (Handle h : {of_a, of_b, of_c}) ASSERT_TRUE(pool->free(h).ok());
}

// Two threads churn their objects while the handle table is sparse, so their frees send entries back to the
// table (ThreadCache::returning) and their allocations take entries the other may just have returned, while
// compact() moves objects: every object keeps its contents, once the threads are gone every entry not live is
// back in the table, and table pages emptied.
TEST(PoolConcurrency, TwoThreadsChurningASparseTableKeepEveryObject) {
  auto pool = Pool::Create().value();
  constexpr int kThreads = 2;
  constexpr std::uint64_t kEach = 40000;  // 16 B objects: 157 table pages for both
  std::atomic<int> filled{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<Obj>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::uint64_t seed = (std::uint64_t{1} << 40) * (t + 1);
      std::vector<Obj> objs;
      for (std::uint64_t i = 0; i < kEach; ++i, ++seed) objs.push_back({AllocFilled(*pool, 16, seed), 16, seed});
      for (const Obj& x : objs) {
        if (rng() % 10 == 0) {
          kept[t].push_back(x);
        } else {
          ASSERT_TRUE(pool->free(x.h).ok());
        }
      }
      filled.fetch_add(1);
      while (filled.load() < kThreads) std::this_thread::yield();  // both thinned: the table is sparse
      for (std::size_t k = 0; k < 8 * kept[t].size(); ++k, ++seed) {
        Obj& x = kept[t][rng() % kept[t].size()];
        ASSERT_TRUE(Intact(*pool, x.h, x.size, x.seed));
        ASSERT_TRUE(pool->free(x.h).ok());
        x = {AllocFilled(*pool, 16 + rng() % 48, seed), 0, seed};
        x.size = pool->pin(x.h, Access::kRead).value().size();
      }
    });
  }
  std::thread mover([&] {
    while (!stop.load()) {
      pool->compact();
      std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) t.join();
  stop.store(true);
  mover.join();
  std::size_t live = 0;
  for (const std::vector<Obj>& objs : kept) {
    for (const Obj& x : objs) ASSERT_TRUE(Intact(*pool, x.h, x.size, x.seed));
    live += objs.size();
  }
  pool->flush_thread_cache();
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.live_objects, live);
  EXPECT_EQ(s.handles_in_use, live);
  // The path was taken: pages emptied (reusing freed entries in place, each of the ~150 pages keeps some of
  // the 8,000 survivors, and nothing here moves an entry).
  EXPECT_LT(s.handle_table_bytes, s.handle_table_pages_peak * kPageSize * 9 / 10);
  for (const std::vector<Obj>& objs : kept) {
    for (const Obj& x : objs) ASSERT_TRUE(pool->free(x.h).ok());
  }
}

// Threads that thinned their objects and went idle (parked, still alive) hold freed slots in their caches,
// one in many blocks; compact() empties those caches for them (stolen: no thread is in a call), so the blocks
// empty as if the threads had flushed: 2.25 MiB of blocks for 2.03 MiB live here, against 9.25 MiB without
// the steal.
TEST(PoolConcurrency, CachesOfIdleThreadsAreEmptiedForCompaction) {
  auto pool = Pool::Create().value();
  constexpr int kThreads = 4;
  Mutex mu;
  CondVar cv;
  int thinned = 0;
  bool go_home = false;
  std::vector<std::vector<Obj>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 20000; ++i) {
        const std::size_t size = 16 + rng() % 497;
        const std::uint64_t seed = 1000000ull * t + i;
        const Obj o{AllocFilled(*pool, size, seed), size, seed};
        if (i % 10 == 0) {
          kept[t].push_back(o);
        } else {
          ASSERT_TRUE(pool->free(o.h).ok());
        }
      }
      MutexLock lock(&mu);
      ++thinned;
      cv.SignalAll();
      while (!go_home) cv.WaitWithTimeout(&mu, absl::Milliseconds(50));  // idle: no call into the pool
    });
  }
  {
    MutexLock lock(&mu);
    while (thinned < kThreads) cv.WaitWithTimeout(&mu, absl::Milliseconds(50));
  }
  const std::uint64_t stolen_before = pool->stats().thread_caches_stolen;  // by direct compactions, if any
  pool->compact();
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.thread_caches_stolen - stolen_before, static_cast<std::uint64_t>(kThreads));
  for (const ClassStats& c : s.classes) { EXPECT_EQ(c.objects_cached, 0u); }
  EXPECT_LT(static_cast<double>(s.block_bytes), 1.25 * static_cast<double>(s.live_bytes))
      << s.block_bytes << " block bytes for " << s.live_bytes << " live";
  {
    MutexLock lock(&mu);
    go_home = true;
    cv.SignalAll();
  }
  for (std::thread& t : threads) t.join();
  // The owners come back to emptied caches and go on: their objects intact, and freed.
  for (const std::vector<Obj>& objs : kept) {
    for (const Obj& o : objs) {
      ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
      ASSERT_TRUE(pool->free(o.h).ok());
    }
  }
  pool->flush_thread_cache();  // this thread's: the owners' came back when they exited
  const PoolStats end = pool->stats();
  EXPECT_EQ(end.live_objects, 0u);
  EXPECT_EQ(end.handles_in_use, 0u);
}

// A thread between calls has its cache emptied by every compaction another thread runs (a steal), and one
// in a call does not: the owner allocating, checking and freeing without pause while compact() runs over and
// over keeps every object's contents, and the counters add up at the end.
TEST(PoolConcurrency, StealsRacingTheOwnersCallsKeepEveryObject) {
  auto pool = Pool::Create().value();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> live_at_end{0};
  std::atomic<std::uint64_t> ops{0};
  std::thread owner([&] {
    std::mt19937_64 rng(5);
    std::vector<Obj> mine;
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      ops.store(i, std::memory_order_relaxed);
      if (mine.size() < 500 || rng() % 2 == 0) {
        const std::size_t size = 16 + rng() % 300;
        mine.push_back(Obj{AllocFilled(*pool, size, i), size, i});
      } else {
        const std::size_t k = rng() % mine.size();
        if (!Intact(*pool, mine[k].h, mine[k].size, mine[k].seed)) bad.fetch_add(1);
        if (!pool->free(mine[k].h).ok()) bad.fetch_add(1);
        mine[k] = mine.back();
        mine.pop_back();
      }
    }
    for (const Obj& o : mine) {
      if (!Intact(*pool, o.h, o.size, o.seed)) bad.fetch_add(1);
    }
    live_at_end.store(mine.size());
    for (const Obj& o : mine) {
      if (!pool->free(o.h).ok()) bad.fetch_add(1);
    }
  });
  // Compactions until the owner has made its calls (and at least as many compactions as there are here).
  for (int i = 0; i < kCompactionsRacingAnOwner || ops.load(std::memory_order_relaxed) < kOwnerCalls; ++i) {
    pool->compact();
  }
  stop.store(true);
  owner.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(live_at_end.load(), 0u);
  const PoolStats s = pool->stats();
  EXPECT_GT(s.thread_caches_stolen, 0u);  // some compactions found the owner between calls
  EXPECT_EQ(s.live_objects, 0u);
  EXPECT_EQ(s.live_bytes, 0u);
}

TEST(PoolConcurrency, PoolsOutliveAndPredeceaseThreads) {
  // A thread that used a pool that is already gone exits cleanly, and one that outlives its use returns
  // its cache.
  auto keep = Pool::Create().value();
  std::thread t([&] {
    auto gone = Pool::Create().value();
    Handle a = gone->allocate(100).value();
    ASSERT_TRUE(gone->free(a).ok());
    gone.reset();
    Handle b = keep->allocate(100).value();
    ASSERT_TRUE(keep->free(b).ok());
  });
  t.join();
  const PoolStats s = keep->stats();
  EXPECT_EQ(s.live_objects, 0u);
  EXPECT_EQ(s.handles_in_use, 0u);  // the exited thread's cached entries came back
  for (const ClassStats& c : s.classes) { EXPECT_EQ(c.objects_cached, 0u); }
}

}  // namespace
}  // namespace mova
