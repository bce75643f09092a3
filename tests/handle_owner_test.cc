// Handle-table compaction with owners (mova/handle_owner.h): each of the kernel's rules — isolation refused
// (pinned, or by the owner), kAgain retried a bounded number of passes, kFail put back at once, an object
// freed while isolated counted as migrated — old handles stale after a move, contents through 100k entry
// migrations, the table's resident bytes after compaction, huge objects, OwnedIndex, and readers racing
// handle compaction (under ThreadSanitizer).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "mova/handle_owner.h"
#include "mova/owned_index.h"
#include "mova/pool.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::Fill;
using testing::Matches;

constexpr std::size_t kEntriesPerPage = 4096 / 8;

// An owner of a fixed array of cells, with hooks a test may replace.
class CellArray final : public HandleOwner {
 public:
  CellArray(Pool& pool, std::size_t n) : pool_(pool), cells_(n) { pool_.register_owner(*this); }
  ~CellArray() override { pool_.unregister_owner(*this); }

  HandleCell& operator[](std::size_t i) { return cells_[i]; }
  std::size_t size() const { return cells_.size(); }

  void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) override {
    VisitInBatches(cells_, [](HandleCell& c) { return &c; }, visit);
  }
  bool Isolate(HandleCell& cell, Handle h) override {
    if (refuse_all.load()) return false;
    return isolate ? isolate(cell, h) : true;
  }
  MigrateAnswer Migrate(HandleCell& cell, Handle from, Handle to) override {
    ++migrate_calls;
    return migrate ? migrate(cell, from, to) : HandleOwner::Migrate(cell, from, to);
  }
  void Putback(HandleCell& cell, Handle h) override {
    (void)cell;
    put_back.push_back(h);
  }

  std::function<bool(HandleCell&, Handle)> isolate;
  std::function<MigrateAnswer(HandleCell&, Handle, Handle)> migrate;
  std::atomic<bool> refuse_all{false};  // for tests whose compactions run on another thread
  int migrate_calls = 0;
  std::vector<Handle> put_back;

 private:
  Pool& pool_;
  std::vector<HandleCell> cells_;
};

std::uint64_t SeedOf(std::size_t i) { return i * 2654435761u + 17; }
std::size_t SizeOf(std::size_t i) { return 16 + (i * 37) % 200; }

void FillCell(Pool& pool, HandleCell& cell, std::size_t i) {
  Handle h = pool.allocate(SizeOf(i)).value();
  Fill(pool.pin(h, Access::kWrite).value().mutable_bytes(), SeedOf(i));
  cell.store(h);
}

bool CellIntact(Pool& pool, const HandleCell& cell, std::size_t i) {
  absl::StatusOr<Pinned> p = pool.pin(cell, Access::kRead);
  return p.ok() && p->size() == SizeOf(i) && Matches(p->bytes(), SeedOf(i));
}

// n owned objects, then all freed but one in `keep_every` (pages of the table left sparse).
std::vector<std::size_t> ThinnedCells(Pool& pool, CellArray& cells, std::size_t keep_every, std::uint32_t seed) {
  for (std::size_t i = 0; i < cells.size(); ++i) FillCell(pool, cells[i], i);
  std::mt19937 rng(seed);
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (rng() % keep_every == 0) {
      kept.push_back(i);
    } else {
      EXPECT_TRUE(pool.free(cells[i]).ok());
      EXPECT_TRUE(cells[i].load().is_null());
    }
  }
  pool.flush_thread_cache();
  return kept;
}

TEST(HandleOwner, CompactionMovesOwnedEntriesIntoDensePagesAndGivesTheRestBack) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 64 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 1);
  std::vector<Handle> old;
  for (std::size_t i : kept) old.push_back(cells[i].load());
  const PoolStats before = pool->stats();

  const HandleCompactResult r = pool->compact_handles();
  const PoolStats after = pool->stats();
  EXPECT_EQ(r.cells_owned, kept.size());
  EXPECT_GT(r.pages_evacuated, 0u);
  EXPECT_GT(r.entries_migrated, 0u);
  EXPECT_EQ(r.entries_migrated + r.put_back, r.entries_isolated);
  EXPECT_EQ(r.freed_while_isolated, 0u);
  EXPECT_EQ(r.pages_released, r.pages_evacuated);
  EXPECT_EQ(after.handles_migrated, r.entries_migrated);
  EXPECT_EQ(after.handle_pages_evacuated, r.pages_released);
  EXPECT_EQ(after.handles_owned, kept.size());
  EXPECT_EQ(after.live_objects, kept.size());
  // Dense: the table's resident bytes within 1.15 × 8 B per live handle, plus a page for this thread's cache.
  EXPECT_LT(after.handle_table_bytes, before.handle_table_bytes / 4);
  EXPECT_LE(static_cast<double>(after.handle_table_bytes), 1.15 * 8 * static_cast<double>(kept.size()) + 4096)
      << "before " << before.handle_table_bytes;
  for (std::size_t k = 0; k < kept.size(); ++k) {
    ASSERT_TRUE(CellIntact(*pool, cells[kept[k]], kept[k])) << k;
    if (cells[kept[k]].load() != old[k]) {
      // The old handle is stale, as after a free.
      EXPECT_EQ(pool->pin(old[k], Access::kRead).status().code(), absl::StatusCode::kNotFound);
      EXPECT_EQ(pool->free(old[k]).code(), absl::StatusCode::kNotFound);
    }
  }
  // A second compaction finds nothing worth moving.
  EXPECT_EQ(pool->compact_handles().entries_migrated, 0u);
  for (std::size_t i : kept) ASSERT_TRUE(pool->free(cells[i]).ok());
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

// With a budget too small for more than one batch, each call moves something and says it is not complete; a
// sequence of calls ends with a complete one, and the table ends as dense as one whole call leaves it.
TEST(HandleOwner, BudgetedCallsEndWithACompleteOne) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 64 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 11);
  int calls = 0, incomplete = 0;
  std::uint64_t migrated = 0, counted = 0;
  for (bool complete = false; !complete; ++calls) {
    ASSERT_LT(calls, 1000);
    const HandleCompactResult r = pool->compact_handles(PassBudget{std::chrono::microseconds(1)});
    complete = r.complete;
    if (!complete) {
      ++incomplete;
      // A call out of budget still counts a batch of cells, or (once the count is complete) moves a batch.
      EXPECT_GT(r.entries_migrated + r.cells_counted, 0u) << "a call made no progress";
    }
    counted += r.cells_counted;
    migrated += r.entries_migrated;
  }
  EXPECT_GT(incomplete, 0);
  // The count went on across the calls instead of starting again, and served every call of the sequence:
  // each cell was counted once.
  EXPECT_EQ(counted, cells.size());
  EXPECT_EQ(pool->stats().handles_migrated, migrated);
  EXPECT_LE(static_cast<double>(pool->stats().handle_table_bytes), 1.15 * 8 * static_cast<double>(kept.size()) + 4096);
  for (std::size_t i : kept) ASSERT_TRUE(CellIntact(*pool, cells[i], i));
  // An owner that fails everything: budgeted calls still come to a complete one (a call stops early only
  // after counting a batch, or after a move, and nothing ever moves: the call that plans visits every cell).
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (cells[i].load().is_null()) FillCell(*pool, cells[i], i);
  }
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i % 16 != 0) {
      ASSERT_TRUE(pool->free(cells[i]).ok());
    }
  }
  pool->flush_thread_cache();
  cells.migrate = [](HandleCell&, Handle, Handle) { return MigrateAnswer::kFail; };
  HandleCompactResult failing;
  int failing_calls = 0;
  do {
    failing = pool->compact_handles(PassBudget{std::chrono::microseconds(1)});
    ASSERT_LE(++failing_calls, static_cast<int>(cells.size() / HandleOwner::kVisitBatch) + 1);
    EXPECT_EQ(failing.entries_migrated, 0u);
  } while (!failing.complete);
  EXPECT_GT(failing.put_back, 0u);
}

TEST(HandleOwner, CellsThatChangeBetweenBudgetedCallsAreSafe) {
  // A count made across calls sees each cell as it was when visited. Between the calls the test frees kept
  // objects, allocates new ones into emptied cells and takes handles out of their cells (unowned now): the
  // plan is then off, and what it tried cannot empty every page it chose, but nothing is lost and every
  // handle still opens.
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 64 * kEntriesPerPage);
  std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 5);
  std::mt19937 rng(6);
  std::vector<Handle> unowned;
  int calls = 0;
  for (bool complete = false; !complete; ++calls) {
    ASSERT_LT(calls, 2000);
    complete = pool->compact_handles(PassBudget{std::chrono::microseconds(1)}).complete;
    const std::size_t pick = kept[rng() % kept.size()];
    switch (rng() % 3) {
      case 0:  // freed
        if (!cells[pick].load().is_null()) {
          ASSERT_TRUE(pool->free(cells[pick]).ok());
        }
        break;
      case 1: {  // an emptied cell filled again
        const std::size_t i = rng() % cells.size();
        if (cells[i].load().is_null()) {
          FillCell(*pool, cells[i], i);
          kept.push_back(i);
        }
        break;
      }
      default:  // taken out of its cell
        if (!cells[pick].load().is_null()) unowned.push_back(cells[pick].exchange(kNullHandle));
        break;
    }
  }
  std::uint64_t live = unowned.size();
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (cells[i].load().is_null()) continue;
    ASSERT_TRUE(CellIntact(*pool, cells[i], i)) << i;
    ++live;
  }
  for (Handle h : unowned) ASSERT_TRUE(pool->size_of(h).ok());
  EXPECT_EQ(pool->stats().live_objects, live);
  // A whole (unbudgeted) call counts afresh and still compacts what the changes left.
  const HandleCompactResult r = pool->compact_handles();
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.cells_owned, live - unowned.size());
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (!cells[i].load().is_null()) {
      ASSERT_TRUE(CellIntact(*pool, cells[i], i)) << i;
    }
  }
}

TEST(HandleOwner, UnownedEntriesStayWhereTheyAre) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 8 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 2);
  // Take every other kept handle out of its cell: unowned now, held by the test.
  std::vector<std::pair<Handle, std::size_t>> unowned;
  for (std::size_t k = 0; k < kept.size(); k += 2) unowned.emplace_back(cells[kept[k]].exchange(kNullHandle), kept[k]);
  pool->compact_handles();
  for (auto& [h, i] : unowned) {
    absl::StatusOr<Pinned> p = pool->pin(h, Access::kRead);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(Matches(p->bytes(), SeedOf(i)));
  }
}

TEST(HandleOwner, IsolationFailsOnPinnedObjectsAndWhenTheOwnerRefuses) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 16 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 3);
  ASSERT_GT(kept.size(), 20u);
  // One held by a counted pin, one by a pin_owned pin, and the owner refuses a third: the last three, on the
  // highest pages, which an evacuation empties first.
  const std::size_t n = kept.size();
  const std::size_t a = kept[n - 1], b = kept[n - 2], c = kept[n - 3];
  const Handle counted = cells[a].load(), owned_pin = cells[b].load(), refused = cells[c].load();
  Pinned p1 = pool->pin(counted, Access::kRead).value();
  Pinned p2 = pool->pin_owned(owned_pin, Access::kRead).value();
  cells.isolate = [&](HandleCell&, Handle h) { return h != refused; };
  const HandleCompactResult r = pool->compact_handles();
  EXPECT_GE(r.isolate_failed, 3u);
  EXPECT_GT(r.entries_migrated, 0u);
  // They stay; only what was isolated is ever put back, and nothing was.
  EXPECT_EQ(cells[a].load(), counted);
  EXPECT_EQ(cells[b].load(), owned_pin);
  EXPECT_EQ(cells[c].load(), refused);
  EXPECT_TRUE(cells.put_back.empty());
  EXPECT_TRUE(Matches(p1.bytes(), SeedOf(a)));
  EXPECT_TRUE(Matches(p2.bytes(), SeedOf(b)));
  p1.reset();
  p2.reset();
  cells.isolate = nullptr;
  EXPECT_GT(pool->compact_handles().entries_migrated, 0u);
  for (std::size_t i : kept) ASSERT_TRUE(CellIntact(*pool, cells[i], i));
}

TEST(HandleOwner, AgainIsRetriedEachPassThenPutBack) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 4 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 32, 4);
  // The first entry asked answers kAgain once, then succeeds; a second answers kAgain always.
  Handle once{}, always{};
  int once_calls = 0, always_calls = 0;
  cells.migrate = [&](HandleCell& cell, Handle from, Handle to) {
    if (once.is_null()) once = from;
    if (from == once && once_calls++ == 0) return MigrateAnswer::kAgain;
    if (always.is_null() && from != once) always = from;
    if (from == always) {
      ++always_calls;
      return MigrateAnswer::kAgain;
    }
    return cell.compare_exchange(from, to) ? MigrateAnswer::kSuccess : MigrateAnswer::kAgain;
  };
  const HandleCompactResult r = pool->compact_handles();
  EXPECT_EQ(once_calls, 2);
  EXPECT_EQ(always_calls, HandleOwner::kMigratePasses);
  ASSERT_EQ(cells.put_back.size(), 1u);
  EXPECT_EQ(cells.put_back[0], always);
  EXPECT_EQ(r.put_back, 1u);
  EXPECT_GE(r.again, 1u + HandleOwner::kMigratePasses);
  EXPECT_EQ(r.entries_migrated + r.put_back, r.entries_isolated);
  // The one put back is still live under its old handle; the other moved.
  EXPECT_TRUE(pool->pin(always, Access::kRead).ok());
  EXPECT_EQ(pool->pin(once, Access::kRead).status().code(), absl::StatusCode::kNotFound);
  for (std::size_t i : kept) ASSERT_TRUE(CellIntact(*pool, cells[i], i));
}

TEST(HandleOwner, FailIsPutBackAtOnce) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 4 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 32, 5);
  cells.migrate = [&](HandleCell&, Handle, Handle) { return MigrateAnswer::kFail; };
  const HandleCompactResult r = pool->compact_handles();
  EXPECT_GT(r.entries_isolated, 0u);
  EXPECT_EQ(r.entries_migrated, 0u);
  EXPECT_EQ(r.put_back, r.entries_isolated);
  EXPECT_EQ(cells.migrate_calls, static_cast<int>(r.entries_isolated));  // one call each: no retry
  EXPECT_EQ(cells.put_back.size(), r.entries_isolated);
  // Nothing moved, nothing given back, every handle as it was.
  EXPECT_EQ(r.pages_released, 0u);
  for (std::size_t i : kept) ASSERT_TRUE(CellIntact(*pool, cells[i], i));
}

TEST(HandleOwner, AnObjectFreedWhileIsolatedCountsAsMigrated) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 4 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 32, 6);
  // The first entry asked answers kAgain (its claim then ends); the second's call frees the first, which is
  // still isolated, waiting for the next pass.
  HandleCell* first = nullptr;
  Handle first_handle{};
  cells.migrate = [&](HandleCell& cell, Handle from, Handle to) {
    if (first == nullptr) {
      first = &cell;
      first_handle = from;
      return MigrateAnswer::kAgain;
    }
    if (!first_handle.is_null()) {
      EXPECT_TRUE(pool->free(*first).ok());
      first_handle = kNullHandle;
    }
    return cell.compare_exchange(from, to) ? MigrateAnswer::kSuccess : MigrateAnswer::kAgain;
  };
  const HandleCompactResult r = pool->compact_handles();
  EXPECT_EQ(r.freed_while_isolated, 1u);
  EXPECT_EQ(r.put_back, 0u);
  EXPECT_TRUE(cells.put_back.empty());
  EXPECT_EQ(r.entries_migrated, r.entries_isolated);
  EXPECT_EQ(pool->stats().handles_freed_while_isolated, 1u);
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->load().is_null());
  for (std::size_t i : kept) {
    if (&cells[i] != first) {
      ASSERT_TRUE(CellIntact(*pool, cells[i], i));
    }
  }
}

TEST(HandleOwner, StaleOldHandleDiesInCheckedMode) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "death tests are run in the other builds";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOptions o;
  o.checked = true;
  auto pool = Pool::Create(o).value();
  CellArray cells(*pool, 4 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 32, 7);
  std::vector<Handle> old;
  for (std::size_t i : kept) old.push_back(cells[i].load());
  ASSERT_GT(pool->compact_handles().entries_migrated, 0u);
  for (std::size_t k = 0; k < kept.size(); ++k) {
    // Through the cell, checked mode finds nothing wrong.
    ASSERT_TRUE(CellIntact(*pool, cells[kept[k]], kept[k]));
    if (cells[kept[k]].load() == old[k]) continue;
    EXPECT_DEATH((void)pool->pin(old[k], Access::kRead), "is stale");
    break;
  }
}

TEST(HandleOwner, HugeObjectsMoveTheirEntriesAndStillDefragment) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 2 * kEntriesPerPage);
  for (std::size_t i = 0; i < cells.size(); ++i) FillCell(*pool, cells[i], i);
  // Huge objects in a sparse page's entries: free the small ones around them.
  std::vector<std::size_t> huge;
  for (std::size_t i = 0; i < cells.size(); i += 97) {
    ASSERT_TRUE(pool->free(cells[i]).ok());
    Handle h = pool->allocate(100000 + i).value();
    Fill(pool->pin(h, Access::kWrite).value().mutable_bytes(), SeedOf(i));
    cells[i].store(h);
    huge.push_back(i);
  }
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i % 97 != 0 && i % 5 != 0) {
      ASSERT_TRUE(pool->free(cells[i]).ok());
    }
  }
  pool->flush_thread_cache();
  EXPECT_GT(pool->compact_handles().entries_migrated, 0u);
  pool->defragment();  // reads each huge object's entry through its header
  for (std::size_t i : huge) {
    absl::StatusOr<Pinned> p = pool->pin(cells[i], Access::kRead);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->size(), 100000 + i);
    EXPECT_TRUE(Matches(p->bytes(), SeedOf(i)));
  }
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (!cells[i].load().is_null()) {
      ASSERT_TRUE(pool->free(cells[i]).ok());
    }
  }
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

TEST(HandleOwner, ContentsSurviveOneHundredThousandMigrations) {
  auto pool = Pool::Create().value();
  CellArray cells(*pool, 64 * kEntriesPerPage);
  std::vector<std::uint64_t> seed(cells.size(), 0);
  std::mt19937_64 rng(8);
  std::uint64_t next = 1;
  auto refill = [&](std::size_t i) {
    seed[i] = next++;
    Handle h = pool->allocate(16 + seed[i] % 100).value();
    Fill(pool->pin(h, Access::kWrite).value().mutable_bytes(), seed[i]);
    cells[i].store(h);
  };
  for (std::size_t i = 0; i < cells.size(); ++i) refill(i);
  std::uint64_t migrated = 0;
  for (int round = 0; migrated < 100000 && round < 400; ++round) {
    // Free 15 of 16 at random, compact the table, refill (new entries land in the holes).
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (rng() % 16 != 0) {
        ASSERT_TRUE(pool->free(cells[i]).ok());
      }
    }
    pool->flush_thread_cache();
    migrated += pool->compact_handles().entries_migrated;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (cells[i].load().is_null()) {
        refill(i);
        continue;
      }
      absl::StatusOr<Pinned> p = pool->pin(cells[i], Access::kRead);
      ASSERT_TRUE(p.ok());
      ASSERT_EQ(p->size(), 16 + seed[i] % 100);
      ASSERT_TRUE(Matches(p->bytes(), seed[i])) << "round " << round << " cell " << i;
    }
  }
  EXPECT_GE(migrated, 100000u);
  EXPECT_EQ(pool->stats().handles_migrated, migrated);
}

TEST(HandleOwner, CompactRunsHandleCompactionAndUnregisteredOwnersAreNotVisited) {
  auto pool = Pool::Create().value();
  auto cells = std::make_unique<CellArray>(*pool, 8 * kEntriesPerPage);
  const std::vector<std::size_t> kept = ThinnedCells(*pool, *cells, 16, 9);
  const CompactResult r = pool->compact();
  EXPECT_GT(r.handles_migrated, 0u);
  EXPECT_GT(r.handle_pages_released, 0u);
  EXPECT_GE(pool->stats().handle_compactions, 1u);
  std::vector<Handle> held;
  for (std::size_t i : kept) held.push_back((*cells)[i].exchange(kNullHandle));
  cells.reset();  // unregistered: a compaction after this must not visit it
  EXPECT_EQ(pool->compact_handles().cells_owned, 0u);
  for (Handle h : held) ASSERT_TRUE(pool->free(h).ok());
}

// The background compactor notices a sparse table with an owner registered and compacts it by itself.
TEST(HandleOwnerConcurrency, TheBackgroundCompactorCompactsASparseTable) {
  PoolOptions o;
  o.background_interval = std::chrono::milliseconds(2);
  auto pool = Pool::Create(o).value();
  CellArray cells(*pool, 256 * kEntriesPerPage);
  // Objects dense, table sparse: the owner refuses to move anything until the blocks are compact.
  cells.refuse_all = true;
  const std::vector<std::size_t> kept = ThinnedCells(*pool, cells, 16, 10);
  pool->compact();
  pool->defragment();
  // Let the passes the thinning started finish (a futile handle pass is not repeated while the table stays
  // as it is): then nothing but the table is left for a pass to do.
  // Quiet: no pass under way (as many ended as started; a pass's cycles can rest longer than the 50 ms a
  // count must stay still, under ThreadSanitizer), and none ended for 50 ms.
  const auto quiet_by = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (std::uint64_t runs = ~0ull;;) {
    const PoolStats q = pool->stats();
    if (q.background_runs == q.background_runs_complete && runs == q.background_runs_complete) break;
    ASSERT_LT(std::chrono::steady_clock::now(), quiet_by) << "the background compactor never rests";
    runs = q.background_runs_complete;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  cells.refuse_all = false;
  // Counted from here: the futile passes before may have given back table pages that held no live entry.
  const PoolStats before = pool->stats();
  // A change to the table wakes the trigger again.
  std::vector<std::size_t> still = kept;
  ASSERT_TRUE(pool->free(cells[still.back()]).ok());
  still.pop_back();
  pool->flush_thread_cache();
  // Under ThreadSanitizer this takes about 10 s: each 1 ms cycle counts every owned cell first.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  PoolStats s = pool->stats();
  // The pass moves in cycles of background_cycle (1 ms): wait until entries moved and a page went back.
  while ((s.handles_migrated == before.handles_migrated ||
          s.handle_pages_evacuated == before.handle_pages_evacuated) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s = pool->stats();
  }
  EXPECT_GT(s.background_by_handles, before.background_by_handles) << FormatStatsText(s);
  EXPECT_GT(s.handles_migrated, before.handles_migrated);
  EXPECT_GT(s.handle_pages_evacuated, before.handle_pages_evacuated);
  for (std::size_t i : still) ASSERT_TRUE(CellIntact(*pool, cells[i], i));
}

TEST(OwnedIndex, MapsKeysToObjectsAndFreesThem) {
  auto pool = Pool::Create().value();
  {
    OwnedIndex<std::string> index(*pool);
    for (int i = 0; i < 5000; ++i) {
      Handle h = pool->allocate(SizeOf(i)).value();
      Fill(pool->pin(h, Access::kWrite).value().mutable_bytes(), SeedOf(i));
      ASSERT_TRUE(index.insert("k" + std::to_string(i), h));
    }
    Handle dup = pool->allocate(8).value();
    EXPECT_FALSE(index.insert("k1", dup));  // not taken
    ASSERT_TRUE(pool->free(dup).ok());
    EXPECT_EQ(index.size(), 5000u);
    for (int i = 0; i < 5000; i += 3) ASSERT_TRUE(index.erase("k" + std::to_string(i)).ok());
    EXPECT_EQ(index.erase("k0").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(index.pin("nope", Access::kRead).status().code(), absl::StatusCode::kNotFound);
    EXPECT_FALSE(index.contains("k3"));
    EXPECT_TRUE(index.contains("k4"));
    // Replacing a value frees the old object.
    const std::uint64_t live = pool->stats().live_objects;
    Handle repl = pool->allocate(SizeOf(4)).value();
    Fill(pool->pin(repl, Access::kWrite).value().mutable_bytes(), SeedOf(4));
    ASSERT_TRUE(index.insert_or_assign("k4", repl).ok());
    EXPECT_EQ(pool->stats().live_objects, live);
    pool->flush_thread_cache();
    const HandleCompactResult r = pool->compact_handles();
    EXPECT_EQ(r.cells_owned, index.size());
    for (int i = 0; i < 5000; ++i) {
      if (i % 3 == 0) continue;
      absl::StatusOr<Pinned> p = index.pin("k" + std::to_string(i), Access::kRead);
      ASSERT_TRUE(p.ok());
      EXPECT_TRUE(Matches(p->bytes(), SeedOf(i)));
    }
    std::optional<Handle> out = index.extract("k5");
    ASSERT_TRUE(out.has_value());
    EXPECT_TRUE(pool->free(*out).ok());
  }
  EXPECT_EQ(pool->stats().live_objects, 0u);  // the destructor freed the rest
}

// Readers pin through the index while a writer churns it and the table is compacted over and over: every
// read finds the right bytes (each value starts with its key's number), and nothing waits forever.
TEST(HandleOwnerConcurrency, ReadersRaceHandleCompaction) {
  auto pool = Pool::Create().value();
  OwnedIndex<std::uint32_t> index(*pool);
  constexpr std::uint32_t kKeys = 20000;
  constexpr std::uint32_t kChurned = 16000;  // keys [0, kChurned) are erased and put back
  auto put = [&](std::uint32_t k) {
    Handle h = pool->allocate(16 + k % 64).value();
    {
      Pinned p = pool->pin(h, Access::kWrite).value();
      std::memcpy(p.mutable_data(), &k, sizeof k);
    }
    (void)index.insert_or_assign(k, h);
  };
  for (std::uint32_t k = 0; k < kKeys; ++k) put(k);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(t);
      while (!stop.load(std::memory_order_relaxed)) {
        // pin_owned's contract: nobody frees the object while it is pinned, so that reader reads only the
        // keys the writer never erases (they still move).
        const std::uint32_t k = t == 0 ? rng() % kKeys : kChurned + rng() % (kKeys - kChurned);
        absl::StatusOr<Pinned> p = t == 0 ? index.pin(k, Access::kRead) : index.pin_owned(k, Access::kRead);
        if (!p.ok()) {
          // Only "no such key" (the writer erased it); never a stale or refused handle.
          if (p.status().code() != absl::StatusCode::kNotFound ||
              !absl::StrContains(p.status().message(), "no such key")) {
            ADD_FAILURE() << p.status();
            bad.fetch_add(1);
          }
          continue;
        }
        std::uint32_t got;
        std::memcpy(&got, p->data(), sizeof got);
        if (got != k) {
          ADD_FAILURE() << "key " << k << " read " << got;
          bad.fetch_add(1);
        }
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      pool->flush_thread_cache();
    });
  }
  std::mt19937 rng(99);
  std::uint64_t migrated = 0;
  for (int round = 0; round < 30; ++round) {
    for (std::uint32_t k = 0; k < kChurned; ++k) {
      if (rng() % 8 != 0) (void)index.erase(k);  // refused while the reader pins it: the key stays
    }
    migrated += pool->compact_handles().entries_migrated;
    for (std::uint32_t k = 0; k < kKeys; ++k) {
      if (!index.contains(k)) put(k);
    }
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GT(migrated, 0u);
}

}  // namespace
}  // namespace mova
