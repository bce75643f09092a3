// The movable-block framework's rules, driven by a small in-memory driver: isolation, bounded retries,
// putback, freed-while-isolated, no target, busy locks (and when sync modes wait for them), refusals of blocks
// nobody isolated, and racing isolators. Runs under TSan too.
#include "compactor/block_migrator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <vector>

namespace mova::compactor {
namespace {

struct FakeBlock {
  MovableBlock mb;
  int id = 0;
  std::vector<std::uint8_t> data;
  std::atomic<int> pins{0};
  std::atomic<bool> released{false};
};

// A driver whose blocks are byte vectors; `where` plays the references (handles) that migration rewrites.
class FakeDriver final : public MovableOps, public TargetSource {
 public:
  FakeBlock* NewBlock(int id, std::uint8_t fill) {
    FakeBlock* b = Make();
    b->id = id;
    b->data.assign(256, fill);
    b->mb.Register(this, b);
    where[id] = b;
    return b;
  }
  // The owner frees a block (Unregister drops its reference).
  void Free(FakeBlock* b) { b->mb.Unregister(); }

  bool Isolate(MovableBlock& m, MigrateMode) override {
    ++isolate_calls;
    return Of(m)->pins.load() == 0;
  }
  MigrateResult Migrate(MovableBlock& dst, MovableBlock& src, MigrateMode) override {
    ++migrate_calls;
    FakeBlock* s = Of(src);
    MigrateResult r = MigrateResult::kSuccess;
    if (auto it = script.find(s->id); it != script.end() && !it->second.empty()) {
      r = it->second.front();
      it->second.pop_front();
    }
    if (r != MigrateResult::kSuccess) return r;
    FakeBlock* d = by_mb_.at(&dst);
    d->id = s->id;
    d->data = s->data;
    d->mb.Register(this, d);
    where[s->id] = d;  // references now point into dst
    --targets_out;
    s->mb.Unregister();  // the driver frees src; the migrator's reference keeps it until it lets go
    return MigrateResult::kSuccess;
  }
  void Putback(MovableBlock&) override { ++putback_calls; }
  void Release(MovableBlock& m) override {
    ++release_calls;
    Of(m)->released = true;
  }

  MovableBlock* GetTarget(MovableBlock&) override {
    if (no_room) return nullptr;
    FakeBlock* t = Make();  // not movable yet: Migrate registers it once it holds src's contents
    ++targets_out;
    return &t->mb;
  }
  void PutTarget(MovableBlock*) override { --targets_out; }

  std::map<int, std::deque<MigrateResult>> script;
  std::map<int, FakeBlock*> where;
  std::atomic<int> isolate_calls{0}, migrate_calls{0}, putback_calls{0}, release_calls{0};
  int targets_out = 0;
  bool no_room = false;

 private:
  static FakeBlock* Of(MovableBlock& m) { return static_cast<FakeBlock*>(m.owner()); }
  FakeBlock* Make() {
    blocks_.push_back(std::make_unique<FakeBlock>());
    by_mb_[&blocks_.back()->mb] = blocks_.back().get();
    return blocks_.back().get();
  }
  std::deque<std::unique_ptr<FakeBlock>> blocks_;
  std::map<MovableBlock*, FakeBlock*> by_mb_;
};

TEST(BlockMigrator, IsolationRules) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* pinned = d.NewBlock(1, 1);
  pinned->pins = 1;
  EXPECT_FALSE(m.Isolate(pinned->mb, MigrateMode::kSync));  // pinned: the driver refuses
  EXPECT_FALSE(pinned->mb.isolated());

  FakeBlock* busy = d.NewBlock(2, 2);
  ASSERT_TRUE(busy->mb.TryLock());                           // the driver is changing it
  const int calls = d.isolate_calls;
  EXPECT_FALSE(m.Isolate(busy->mb, MigrateMode::kSync));     // one trylock, skipped, the driver not asked
  EXPECT_EQ(d.isolate_calls, calls);
  busy->mb.Unlock();

  FakeBlock* ok = d.NewBlock(3, 3);
  EXPECT_TRUE(m.Isolate(ok->mb, MigrateMode::kSync));
  EXPECT_TRUE(ok->mb.isolated());
  EXPECT_FALSE(m.Isolate(ok->mb, MigrateMode::kSync));       // already isolated

  FakeBlock* gone = d.NewBlock(4, 4);
  d.Free(gone);                                              // unregistered: no references left
  EXPECT_FALSE(m.Isolate(gone->mb, MigrateMode::kSync));
  EXPECT_TRUE(gone->released);

  m.Putback(ok->mb);
  EXPECT_FALSE(ok->mb.isolated());
  EXPECT_EQ(d.putback_calls, 1);
  const MigrationStats s = m.stats();
  EXPECT_EQ(s.scanned, 5u);
  EXPECT_EQ(s.isolated, 1u);
  EXPECT_EQ(s.isolate_failed, 4u);
  EXPECT_EQ(s.scanned, s.isolated + s.isolate_failed);
}

TEST(BlockMigrator, SuccessMovesContentsAndReleasesTheSource) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(7, 0x5A);
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  MovableBlock* list[] = {&b->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 1u);
  EXPECT_NE(d.where[7], b);
  EXPECT_EQ(d.where[7]->data, std::vector<std::uint8_t>(256, 0x5A));
  EXPECT_TRUE(d.where[7]->mb.movable());
  EXPECT_TRUE(b->released);  // the driver freed it and the migrator let go
  EXPECT_EQ(d.putback_calls, 0);
  EXPECT_EQ(d.targets_out, 0);
  EXPECT_EQ(m.stats().migrated, 1u);
}

TEST(BlockMigrator, AgainIsRetriedForBoundedPassesThenPutBack) {
  for (MigrateMode mode : {MigrateMode::kSync, MigrateMode::kSyncLight, MigrateMode::kAsync}) {
    FakeDriver d;
    BlockMigrator m;
    FakeBlock* b = d.NewBlock(1, 1);
    d.script[1] = std::deque<MigrateResult>(50, MigrateResult::kAgain);
    ASSERT_TRUE(m.Isolate(b->mb, mode));
    MovableBlock* list[] = {&b->mb};
    EXPECT_EQ(m.Migrate(list, d, mode), 0u);
    EXPECT_EQ(d.migrate_calls, mode == MigrateMode::kAsync ? kAsyncPasses : kSyncPasses);
    EXPECT_EQ(d.putback_calls, 1);
    EXPECT_FALSE(b->mb.isolated());
    EXPECT_TRUE(b->mb.movable());
    EXPECT_FALSE(b->released);
    EXPECT_EQ(d.targets_out, 0);  // every unused target went back
    EXPECT_EQ(m.stats().failed, 1u);
    EXPECT_EQ(m.stats().retries, static_cast<std::uint64_t>(d.migrate_calls.load()));
  }
}

TEST(BlockMigrator, AgainThenSuccessMigrates) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(1, 9);
  d.script[1] = {MigrateResult::kAgain, MigrateResult::kAgain, MigrateResult::kAgain};
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  MovableBlock* list[] = {&b->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 1u);
  EXPECT_EQ(d.migrate_calls, 4);
  EXPECT_EQ(d.putback_calls, 0);
}

TEST(BlockMigrator, FailIsPutBackAtOnce) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(1, 1);
  FakeBlock* c = d.NewBlock(2, 2);
  d.script[1] = {MigrateResult::kFail};
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  ASSERT_TRUE(m.Isolate(c->mb, MigrateMode::kSync));
  MovableBlock* list[] = {&b->mb, &c->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 1u);  // the other one still moves
  EXPECT_EQ(d.migrate_calls, 2);                           // no retry of the failed one
  EXPECT_EQ(d.putback_calls, 1);
  EXPECT_EQ(d.where[1], b);
  EXPECT_NE(d.where[2], c);
  EXPECT_EQ(m.stats().failed, 1u);
  EXPECT_EQ(m.stats().migrated, 1u);
}

TEST(BlockMigrator, FreedAfterIsolationCountsAsMigratedWithoutPutback) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(1, 1);
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  d.Free(b);                 // the owner frees its block while it is isolated
  EXPECT_FALSE(b->released);  // the migrator's reference keeps it
  MovableBlock* list[] = {&b->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 1u);
  EXPECT_EQ(d.migrate_calls, 0);
  EXPECT_EQ(d.putback_calls, 0);
  EXPECT_TRUE(b->released);
  EXPECT_EQ(d.release_calls, 1);
  EXPECT_EQ(m.stats().freed_isolated, 1u);
  EXPECT_EQ(m.stats().migrated, 1u);
}

TEST(BlockMigrator, PutbackOfAFreedBlockDoesNotCallTheDriver) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(1, 1);
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  d.Free(b);
  m.Putback(b->mb);
  EXPECT_EQ(d.putback_calls, 0);
  EXPECT_TRUE(b->released);
}

TEST(BlockMigrator, NoTargetPutsBack) {
  FakeDriver d;
  d.no_room = true;
  BlockMigrator m;
  FakeBlock* b = d.NewBlock(1, 1);
  ASSERT_TRUE(m.Isolate(b->mb, MigrateMode::kSync));
  MovableBlock* list[] = {&b->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 0u);
  EXPECT_EQ(d.migrate_calls, 0);
  EXPECT_EQ(d.putback_calls, 1);
  EXPECT_EQ(m.stats().failed, 1u);
}

// Async mode never waits for a busy block lock; sync modes try it once a pass before kForcePass (a busy
// block is retried like Again, so it does not hold up the blocks behind it) and wait for it from then on (the
// kernel's `force`). The lock's holder lets go only once the migrator has retried kForcePass times, so a
// migrator that waited earlier, or never, fails the test.
TEST(BlockMigrator, AsyncNeverWaitsForABusyBlockSyncWaitsFromTheForcePass) {
  for (MigrateMode mode : {MigrateMode::kAsync, MigrateMode::kSyncLight, MigrateMode::kSync}) {
    FakeDriver d;
    BlockMigrator m;
    FakeBlock* b = d.NewBlock(1, 1);
    FakeBlock* free_one = d.NewBlock(2, 2);
    ASSERT_TRUE(m.Isolate(b->mb, mode));
    ASSERT_TRUE(m.Isolate(free_one->mb, mode));
    ASSERT_TRUE(b->mb.TryLock());  // a driver holds the block lock for a while
    std::atomic<bool> done{false};
    std::thread holder([&] {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!done && m.stats().retries < static_cast<std::uint64_t>(kForcePass) &&
             std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the migrator now waits
      b->mb.Unlock();
    });
    MovableBlock* list[] = {&b->mb, &free_one->mb};
    const std::size_t moved = m.Migrate(list, d, mode);
    done = true;
    holder.join();
    if (mode == MigrateMode::kAsync) {
      EXPECT_EQ(moved, 1u);  // the other block; three passes found this one busy, then it was put back
      EXPECT_EQ(d.migrate_calls, 1);
      EXPECT_EQ(d.putback_calls, 1);
      EXPECT_EQ(m.stats().retries, static_cast<std::uint64_t>(kAsyncPasses));
    } else {
      EXPECT_EQ(moved, 2u);  // the other block at once; this one after waiting in pass kForcePass
      EXPECT_EQ(d.migrate_calls, 2);
      EXPECT_EQ(d.putback_calls, 0);
      EXPECT_EQ(m.stats().retries, static_cast<std::uint64_t>(kForcePass));
    }
  }
}

// Putback and Migrate of a block nobody isolated are refused: the driver is not called and no reference
// is dropped (the kernel's VM_BUG_ON_PAGE(!PageIsolated)).
TEST(BlockMigrator, PutbackAndMigrateRefuseABlockThatIsNotIsolated) {
  FakeDriver d;
  BlockMigrator m;
  FakeBlock* never = d.NewBlock(1, 1);
  EXPECT_FALSE(m.Putback(never->mb));
  EXPECT_EQ(d.putback_calls, 0);
  FakeBlock* isolated = d.NewBlock(2, 2);
  ASSERT_TRUE(m.Isolate(isolated->mb, MigrateMode::kSync));
  MovableBlock* list[] = {&never->mb, &isolated->mb};
  EXPECT_EQ(m.Migrate(list, d, MigrateMode::kSync), 1u);  // only the isolated one
  EXPECT_EQ(d.migrate_calls, 1);
  EXPECT_EQ(d.where[1], never);                          // not moved
  EXPECT_FALSE(m.Putback(isolated->mb));                 // migrated: no longer isolated
  EXPECT_EQ(d.putback_calls, 0);
  EXPECT_EQ(m.stats().refused, 3u);
  // The driver's reference is intact: freeing the block releases it, once.
  EXPECT_FALSE(never->released);
  d.Free(never);
  EXPECT_TRUE(never->released);
  EXPECT_EQ(d.release_calls, 2);  // and the migrated source, earlier
}

TEST(BlockMigrator, ConcurrentIsolationOfOneBlockHasOneWinner) {
  FakeDriver d;
  constexpr int kBlocks = 2000;
  std::vector<FakeBlock*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(d.NewBlock(i, 0));
  BlockMigrator a, b;
  std::vector<char> won_a(kBlocks), won_b(kBlocks);
  std::thread ta([&] {
    for (int i = 0; i < kBlocks; ++i) won_a[i] = a.Isolate(blocks[i]->mb, MigrateMode::kAsync);
  });
  std::thread tb([&] {
    for (int i = kBlocks - 1; i >= 0; --i) won_b[i] = b.Isolate(blocks[i]->mb, MigrateMode::kAsync);
  });
  ta.join();
  tb.join();
  for (int i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(won_a[i] + won_b[i], 1) << i;  // exactly one compactor isolated it
    (won_a[i] ? a : b).Putback(blocks[i]->mb);
  }
  EXPECT_EQ(a.stats().isolated + b.stats().isolated, static_cast<std::uint64_t>(kBlocks));
  EXPECT_EQ(d.putback_calls, kBlocks);
}

}  // namespace
}  // namespace mova::compactor
