// The handle table: densest-first reuse, fully free pages given back, generations, exhaustion, OS faults.
#include "handles/handle_table.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <algorithm>
#include <set>
#include <vector>

#include "bench/rss.h"
#include "os/fault_injecting_os.h"

namespace mova::handles {
namespace {

constexpr std::uint32_t kPer = HandleTable::kEntriesPerPage;
constexpr std::uint64_t kSalt = 0x1234567;

std::vector<std::uint32_t> AcquireN(HandleTable& t, std::size_t n,
                                    HandleTable::Order order = HandleTable::Order::kLinesFirst) {
  std::vector<std::uint32_t> out(n);
  std::size_t got = 0;
  while (got < n) {
    absl::StatusOr<std::size_t> k = t.Acquire(std::span<std::uint32_t>(out.data() + got, n - got), order);
    EXPECT_TRUE(k.ok()) << k.status();
    if (!k.ok()) break;
    got += *k;
  }
  return out;
}

// Frees entries the way the pool does: mark free (even generation), then return.
void Release(HandleTable& t, std::span<const std::uint32_t> idx) {
  for (std::uint32_t i : idx) {
    Word w = 0;
    const std::uint16_t gen = GenOf(t.entry(i).load());
    if (IsLiveGen(gen)) { ASSERT_EQ(Retire(t.entry(i), gen, &w), EntryResult::kOk); }
  }
  t.Return(idx);
}

TEST(HandleTable, HandsOutDistinctEntriesAndCountsThem) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 3 * kPer - 1);  // index 0 is never handed out
  EXPECT_EQ(std::set<std::uint32_t>(a.begin(), a.end()).size(), a.size());
  EXPECT_EQ(std::count(a.begin(), a.end(), 0u), 0);
  EXPECT_EQ(t->stats().entries_in_use, 3 * kPer - 1);
  EXPECT_EQ(t->stats().pages_opened, 3u);
  for (std::uint32_t i : a) { EXPECT_TRUE(t->Issued(i)); }
  EXPECT_FALSE(t->Issued(0));
  EXPECT_FALSE(t->Issued(3 * kPer));
}

TEST(HandleTable, ReusesTheDensestPageFirst) {
  auto t = HandleTable::Create(os::SystemOs(), 8 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 3 * kPer - 1);
  std::sort(a.begin(), a.end());  // a[i] == i + 1
  // Page 0 keeps 1 entry, page 1 keeps kPer - 10, page 2 keeps 100.
  std::vector<std::uint32_t> drop;
  for (std::uint32_t i = 2; i < kPer; ++i) drop.push_back(i);
  for (std::uint32_t i = 0; i < 10; ++i) drop.push_back(kPer + i);
  for (std::uint32_t i = 100; i < kPer; ++i) drop.push_back(2 * kPer + i);
  Release(*t, drop);
  std::vector<std::uint32_t> again = AcquireN(*t, 12);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(again[i] / kPer, 1u) << i;  // the densest page fills first
  EXPECT_EQ(again[10] / kPer, 2u);                                      // then the next densest
  EXPECT_EQ(t->stats().pages_opened, 3u);                              // and no new page was opened
}

// The cache line of entry i.
std::uint32_t LineOf(std::uint32_t i) { return i / HandleTable::kEntriesPerLine; }

bool ShareALine(std::span<const std::uint32_t> a, std::span<const std::uint32_t> b) {
  std::set<std::uint32_t> lines;
  for (std::uint32_t i : a) lines.insert(LineOf(i));
  for (std::uint32_t i : b) {
    if (lines.count(LineOf(i)) != 0) return true;
  }
  return false;
}

TEST(HandleTable, HandsOutWholeCacheLinesWhileAnyIsFree) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  // Page 0's first line is never whole (index 0 is not issued): a request under a line takes it.
  std::vector<std::uint32_t> first = AcquireN(*t, HandleTable::kEntriesPerLine - 1);
  for (std::uint32_t i : first) EXPECT_EQ(LineOf(i), 0u);
  // Two threads' refills: whole lines each, none shared.
  std::vector<std::uint32_t> a = AcquireN(*t, 32), b = AcquireN(*t, 32);
  EXPECT_FALSE(ShareALine(a, b));
  std::set<std::uint32_t> lines_of_b;
  for (std::uint32_t i : b) lines_of_b.insert(LineOf(i));
  EXPECT_EQ(lines_of_b.size(), 32u / HandleTable::kEntriesPerLine);
  // One returns every other entry (partly used lines, its other entries still in use): the next refill
  // takes whole free lines, not the returned halves.
  std::vector<std::uint32_t> half, kept;
  for (std::size_t i = 0; i < a.size(); ++i) (i % 2 == 0 ? half : kept).push_back(a[i]);
  Release(*t, half);
  std::vector<std::uint32_t> c = AcquireN(*t, 32);
  EXPECT_FALSE(ShareALine(c, kept));
  EXPECT_FALSE(ShareALine(c, b));
  // A request smaller than a line is served from partly used lines first, keeping whole lines whole.
  std::vector<std::uint32_t> d = AcquireN(*t, 3);
  for (std::uint32_t i : d) EXPECT_TRUE(std::count(half.begin(), half.end(), i) == 1) << i;
  const HandleTable::Stats before = t->stats();
  // With no whole line free anywhere, single entries are handed out rather than a new page opened.
  const std::size_t whole = kPer - 1 - before.entries_in_use - (half.size() - d.size());
  std::vector<std::uint32_t> rest = AcquireN(*t, whole);  // page 0's whole lines
  EXPECT_EQ(t->stats().pages_opened, before.pages_opened);
  std::vector<std::uint32_t> tail = AcquireN(*t, half.size() - 3);
  for (std::uint32_t i : tail) EXPECT_TRUE(std::count(half.begin(), half.end(), i) == 1) << i;
  EXPECT_EQ(t->stats().pages_opened, 1u);
  EXPECT_EQ(t->stats().entries_in_use, kPer - 1);
}

TEST(HandleTable, GivesFullyFreePagesBackAndRestartsGenerationsAbove) {
  auto t = HandleTable::Create(os::SystemOs(), 64 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 32 * kPer - 1);
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  const std::uint16_t old_gen = GenOf(t->entry(a[0]).load());
  const Handle old_handle = t->MakeHandle(a[0], old_gen, 99);
  const std::uint64_t table_bytes = std::uint64_t{32} * kPer * sizeof(Word);
  const std::uint64_t resident_full = bench::ResidentBytesIn(&t->entry(0), table_bytes).value();
  EXPECT_EQ(resident_full, table_bytes);
  Release(*t, a);
  // The first kIdlePages pages to empty stay resident for reuse; the others go back as they empty, and the
  // idle ones when compaction or release_free_memory asks.
  EXPECT_EQ(t->stats().pages_resident, HandleTable::kIdlePages);
  EXPECT_EQ(t->stats().pages_discarded, 32u - HandleTable::kIdlePages);
  t->ReleaseSpare();
  EXPECT_EQ(t->stats().pages_resident, 0u);
  EXPECT_EQ(t->stats().pages_discarded, 32u);
  EXPECT_EQ(bench::ResidentBytesIn(&t->entry(0), table_bytes).value(), 0u);  // really gone, per mincore
  // A reopened page issues generations above the ones it issued before: old handles stay stale.
  std::vector<std::uint32_t> b = AcquireN(*t, 1);
  EXPECT_LT(b[0], 32 * kPer);  // a discarded page is reused before a new one is opened
  EXPECT_EQ(t->stats().pages_opened, 32u);
  const std::uint16_t new_gen = Publish(t->entry(b[0]), 16);
  EXPECT_GT(new_gen, old_gen);
  Word w = 0;
  EXPECT_EQ(PinCounted(t->entry(b[0]), old_gen, &w), EntryResult::kStale);
  // Discarded without a re-key: an old handle of a page given back is still known as stale.
  EXPECT_EQ(t->stats().pages_rekeyed, 0u);
  EXPECT_EQ(t->Classify(old_handle), HandleVerdict::kStale);
}

// The bookkeeping of a page given back (its free bitmap, counts and list links: ~90 B a page) goes back with
// it: with compaction or release_free_memory, in one discard for the runs of state pages no resident page
// uses. A discard of them that fails keeps them counted; the pages reopen lowest first, states written afresh.
TEST(HandleTable, StatesOfPagesGivenBackGoBackTooAndReopenedPagesStartAfresh) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 256 * kPer, kSalt).value();
  const std::uint32_t kPages = 200;
  std::vector<std::uint32_t> a = AcquireN(*t, kPages * kPer - 1);
  std::sort(a.begin(), a.end());
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  const std::uint16_t old_gen = GenOf(t->entry(a.back()).load());
  const Handle old_handle = t->MakeHandle(a.back(), old_gen, 7);
  const std::uint64_t states_full = t->stats().states_bytes;
  EXPECT_GE(states_full, 4 * kPageSize);  // ~90 B for each of 200 pages
  // Empty every page but page 0; ask for what compaction asks, first with the states' discard failing (the
  // idle pages, the last to empty and so one run, are given back first, in one range).
  const std::span<const std::uint32_t> rest = std::span<const std::uint32_t>(a).subspan(kPer - 1);
  Release(*t, rest);
  fos.FailAfter(os::OsOp::kDiscard, 1, EINVAL, /*times=*/1);
  t->ReleaseSpare();
  EXPECT_EQ(fos.failures(os::OsOp::kDiscard), 1);
  EXPECT_EQ(t->stats().pages_resident - t->stats().pages_populated_ahead, 1u);
  EXPECT_EQ(t->stats().states_bytes, states_full);  // kept, and still counted
  t->ReleaseSpare();
  const std::uint64_t states_after = t->stats().states_bytes;
  EXPECT_LE(states_after + 3 * kPageSize, states_full);
  // Reopened lowest first, before any new page; their entries free, their generations above every old one.
  std::vector<std::uint32_t> b = AcquireN(*t, 100 * kPer);
  EXPECT_EQ(t->stats().pages_opened, kPages);
  EXPECT_EQ(*std::max_element(b.begin(), b.end()) / kPer, 100u);
  EXPECT_EQ(std::set<std::uint32_t>(b.begin(), b.end()).size(), b.size());
  for (std::uint32_t i : b) ASSERT_FALSE(IsLiveGen(GenOf(t->entry(i).load()))) << i;
  EXPECT_GT(t->stats().states_bytes, states_after);  // touched again
  std::vector<std::uint32_t> c = AcquireN(*t, 99 * kPer);  // the rest of the pages given back, page 199 last
  EXPECT_EQ(t->stats().pages_opened, kPages);
  const std::uint16_t new_gen = Publish(t->entry(a.back()), 16);
  EXPECT_GT(new_gen, old_gen);
  EXPECT_EQ(t->Classify(old_handle), HandleVerdict::kStale);
  EXPECT_EQ(t->stats().entries_in_use, kPages * kPer - 1);
}

// A page emptied and filled again, over and over, costs no syscall; an idle page is reused before a page
// given back (which would need a populate) or a new one.
TEST(HandleTable, AnEmptiedPageIsReusedWithoutASyscall) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 64 * kPer, kSalt).value();
  const int populates = fos.calls(os::OsOp::kPopulate);
  std::set<std::uint32_t> seen;
  std::uint16_t last_gen = 0;
  for (int round = 0; round < 100; ++round) {
    std::vector<std::uint32_t> a = AcquireN(*t, 3 * kPer);
    for (std::uint32_t i : a) {
      const std::uint16_t gen = Publish(t->entry(i), 16);
      if (i == a[0]) {
        if (round > 0) {
          EXPECT_GT(gen, last_gen);  // generations go on growing: old handles stay stale
        }
        last_gen = gen;
      }
      seen.insert(i);
    }
    Release(*t, a);
  }
  EXPECT_EQ(fos.calls(os::OsOp::kDiscard), 0);
  EXPECT_EQ(fos.calls(os::OsOp::kPopulate), populates + 1);  // the first kOpenAhead pages, once
  EXPECT_EQ(t->stats().pages_opened, 4u);
  EXPECT_LE(seen.size(), 4 * kPer);
  // More emptied pages than kIdlePages: whenever a page empties with kIdlePages idle, the older half of them
  // go back together, in one DiscardRanges call (one range here: pages that emptied one after the other).
  std::vector<std::uint32_t> b = AcquireN(*t, 40 * kPer);
  Release(*t, b);
  const std::uint64_t idle = t->stats().pages_resident - t->stats().pages_populated_ahead;
  EXPECT_GT(idle, HandleTable::kIdlePages / 2);
  EXPECT_LE(idle, HandleTable::kIdlePages);
  EXPECT_EQ(t->stats().pages_discarded, t->stats().pages_opened - idle);
  EXPECT_EQ(fos.calls(os::OsOp::kDiscard) * (HandleTable::kIdlePages / 2), t->stats().pages_discarded);
  // The idle ones go back with ReleaseSpare.
  t->ReleaseSpare();
  EXPECT_EQ(t->stats().pages_discarded, t->stats().pages_opened);
}

// Sparse(): fewer than half of the resident pages' entries in use, in a table of at least kSparsePages
// resident pages; what a thread reads to send freed entries back to the table instead of reusing them.
TEST(HandleTable, IsSparseWhenLessThanHalfOfItsResidentEntriesAreInUse) {
  auto t = HandleTable::Create(os::SystemOs(), 256 * kPer, kSalt).value();
  const std::uint32_t kPages = HandleTable::kSparsePages;
  std::vector<std::uint32_t> a = AcquireN(*t, kPages * kPer - 1);
  std::sort(a.begin(), a.end());
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  EXPECT_FALSE(t->Sparse());
  // Free two in three of every page: each page stays resident, a third in use.
  std::vector<std::uint32_t> freed, kept;
  for (std::size_t k = 0; k < a.size(); ++k) (k % 3 == 0 ? kept : freed).push_back(a[k]);
  Release(*t, freed);
  EXPECT_EQ(t->stats().pages_resident - t->stats().pages_populated_ahead, kPages);
  EXPECT_TRUE(t->Sparse());
  // Half and more in use again: not sparse.
  std::vector<std::uint32_t> back = AcquireN(*t, freed.size() / 4);
  EXPECT_FALSE(t->Sparse());
  // A table of fewer pages is never sparse: its pages cost less than sending entries through it.
  Release(*t, back);
  EXPECT_TRUE(t->Sparse());
  Release(*t, std::span<const std::uint32_t>(kept).subspan(0, kept.size() - kPer));
  t->ReleaseSpare();
  EXPECT_LT(t->stats().pages_resident - t->stats().pages_populated_ahead, kPages);
  EXPECT_FALSE(t->Sparse());
}

TEST(HandleTable, ExhaustionIsAnError) {
  auto t = HandleTable::Create(os::SystemOs(), kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, kPer);
  std::uint32_t one;
  absl::StatusOr<std::size_t> r = t->Acquire(std::span<std::uint32_t>(&one, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  Release(*t, std::span<const std::uint32_t>(a.data(), 1));
  EXPECT_TRUE(t->Acquire(std::span<std::uint32_t>(&one, 1)).ok());
}

TEST(HandleTable, PopulateFailureIsReportedAndRecoverable) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 4 * kPer, kSalt).value();
  fos.FailAfter(os::OsOp::kPopulate, 0, ENOMEM);
  std::uint32_t one;
  absl::StatusOr<std::size_t> r = t->Acquire(std::span<std::uint32_t>(&one, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->stats().pages_opened, 0u);
  fos.Clear(os::OsOp::kPopulate);
  EXPECT_TRUE(t->Acquire(std::span<std::uint32_t>(&one, 1)).ok());
  EXPECT_EQ(t->stats().pages_opened, 1u);
}

TEST(HandleTable, DiscardFailureKeepsThePageUsable) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, kPer - 1);  // all of page 0
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  fos.FailAfter(os::OsOp::kDiscard, 0, EINVAL, /*times=*/1);
  Release(*t, a);
  EXPECT_EQ(fos.calls(os::OsOp::kDiscard), 0);  // idle
  t->ReleaseSpare();
  EXPECT_EQ(fos.failures(os::OsOp::kDiscard), 1);
  EXPECT_EQ(t->stats().pages_resident - t->stats().pages_populated_ahead, 1u);  // kept, still counted
  std::vector<std::uint32_t> b = AcquireN(*t, kPer - 1);
  EXPECT_EQ(t->stats().pages_opened, 1u);    // and reused
}

// Among pages about as sparse as each other (within a quarter page), the plan empties the highest first: the
// pages that stay are the lowest, and their states share one page of states, the others going back at the
// end. A plan by entry count alone kept the page that held a few entries more, wherever it was.
TEST(HandleTable, AnEvacuationKeepsTheLowestOfPagesAlikeAndTheirStatesShareAPage) {
  auto t = HandleTable::Create(os::SystemOs(), 128 * kPer, kSalt).value();
  constexpr std::uint32_t kPages = 96;  // states of 46 pages to a page: three pages of states
  std::vector<std::uint32_t> all = AcquireN(*t, kPages * kPer - 1);
  std::sort(all.begin(), all.end());
  for (std::uint32_t i : all) (void)Publish(t->entry(i), 16);
  // Every page keeps 10 entries, page 60 keeps 40: all in the sparsest quarter.
  std::vector<std::uint32_t> kept, freed;
  for (std::uint32_t i : all) {
    const std::uint32_t p = i / kPer, k = i % kPer;
    (k < 11 || (p == 60 && k < 41) ? kept : freed).push_back(i);
  }
  Release(*t, freed);
  t->ReleaseSpare();
  std::vector<std::uint32_t> owned(kPages, kPer);  // every entry owned
  const std::vector<std::uint32_t> plan = t->PlanEvacuation(owned);
  const std::set<std::uint32_t> leaving(plan.begin(), plan.end());
  ASSERT_FALSE(leaving.empty());
  EXPECT_TRUE(leaving.contains(60));
  EXPECT_FALSE(leaving.contains(0));
  // The pages that stay are the lowest ones, and few: their free entries take what the others hold.
  const std::uint32_t staying = kPages - static_cast<std::uint32_t>(leaving.size());
  EXPECT_LE(staying, 3u);
  for (std::uint32_t p = 0; p < kPages; ++p) EXPECT_EQ(leaving.contains(p), p >= staying) << p;
  // The owners move the entries (here: freed, and as many taken on the pages that stay); the pages that left
  // go back, and with them every page of states but the first.
  const std::uint64_t states_before = t->stats().states_bytes;
  t->BeginEvacuation(plan);
  std::vector<std::uint32_t> moving;
  for (std::uint32_t i : kept) {
    if (leaving.contains(i / kPer)) moving.push_back(i);
  }
  const std::vector<std::uint32_t> dest = AcquireN(*t, moving.size(), HandleTable::Order::kDense);
  for (std::uint32_t i : dest) EXPECT_LT(i / kPer, staying) << i;
  Release(*t, moving);
  EXPECT_EQ(t->EndEvacuation(), leaving.size());
  EXPECT_EQ(t->stats().pages_resident - t->stats().pages_populated_ahead, staying);
  EXPECT_EQ(t->stats().states_bytes + 2 * kPageSize, states_before);
}

// Pages emptied by an evacuation go back in one DiscardRanges call at its end, a run each; when the call
// fails part way, the runs it did not discard stay resident and usable, their entries free.
TEST(HandleTable, EvacuatedPagesGoBackTogetherAndARunThatFailedStaysUsable) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 64 * kPer, kSalt).value();
  std::vector<std::uint32_t> all = AcquireN(*t, 8 * kPer - 1);  // pages 0..7, full
  std::sort(all.begin(), all.end());
  for (std::uint32_t i : all) (void)Publish(t->entry(i), 16);
  auto on_page = [&](std::uint32_t p) {
    std::vector<std::uint32_t> v;
    for (std::uint32_t i : all) {
      if (i / kPer == p) v.push_back(i);
    }
    return v;
  };
  // Room on page 1; pages 2, 4 and 6 keep one entry each (three runs, none adjacent).
  const std::vector<std::uint32_t> p1 = on_page(1);
  Release(*t, std::span<const std::uint32_t>(p1).first(kPer / 2));
  std::vector<std::uint32_t> last;
  for (std::uint32_t p : {2u, 4u, 6u}) {
    const std::vector<std::uint32_t> v = on_page(p);
    Release(*t, std::span<const std::uint32_t>(v).first(v.size() - 1));
    last.push_back(v.back());
  }
  std::vector<std::uint32_t> owned(8);
  for (std::uint32_t p = 0; p < 8; ++p) owned[p] = kPer;  // every entry owned
  const std::vector<std::uint32_t> plan = t->PlanEvacuation(owned);
  ASSERT_EQ(std::set<std::uint32_t>(plan.begin(), plan.end()), (std::set<std::uint32_t>{2, 4, 6}));
  const std::uint64_t resident = t->stats().pages_resident;
  t->BeginEvacuation(plan);
  Release(*t, last);  // their owners moved them: the three pages empty, their discards wait for the end
  EXPECT_EQ(fos.calls(os::OsOp::kDiscard), 0);
  fos.FailAfter(os::OsOp::kDiscard, 1, EINVAL, /*times=*/1);  // the second run fails
  EXPECT_EQ(t->EndEvacuation(), 1u);
  EXPECT_EQ(fos.failures(os::OsOp::kDiscard), 1);
  EXPECT_EQ(t->stats().pages_resident, resident - 1);
  EXPECT_EQ(t->stats().pages_evacuated, 1u);
  auto entries_of = [&](std::uint32_t p) { return reinterpret_cast<const std::byte*>(&t->entry(p * kPer)); };
  EXPECT_EQ(bench::ResidentBytesIn(entries_of(2), kPageSize).value(), 0u);
  EXPECT_EQ(bench::ResidentBytesIn(entries_of(4), kPageSize).value(), kPageSize);
  EXPECT_EQ(bench::ResidentBytesIn(entries_of(6), kPageSize).value(), kPageSize);
  // The kept pages hand their entries out again, free and at generations no handle of theirs had.
  for (std::uint32_t p : {4u, 6u}) {
    for (std::uint32_t i = p * kPer; i < (p + 1) * kPer; ++i) EXPECT_FALSE(IsLiveGen(GenOf(t->entry(i).load()))) << i;
  }
  const std::uint64_t in_use = t->stats().entries_in_use;
  std::vector<std::uint32_t> more = AcquireN(*t, 3 * kPer);
  EXPECT_EQ(t->stats().entries_in_use, in_use + 3 * kPer);
}

// A growing table makes one Populate call per kOpenAhead new pages, and counts what it populated ahead.
TEST(HandleTable, NewPagesArePopulatedInBatches) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 64 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 40 * kPer - 1);  // 40 pages
  EXPECT_EQ(t->stats().pages_opened, 40u);
  EXPECT_EQ(fos.calls(os::OsOp::kPopulate), 3);  // pages 0-15, 16-31, 32-47
  EXPECT_EQ(t->stats().pages_populated_ahead, 8u);
  EXPECT_EQ(t->stats().pages_resident, 48u);
  const std::uint64_t table_bytes = std::uint64_t{64} * kPer * sizeof(Word);
  EXPECT_EQ(bench::ResidentBytesIn(&t->entry(0), table_bytes).value(), 48 * kPageSize);
  t->ReleaseSpare();  // what compaction does: the pages populated ahead go back
  EXPECT_EQ(t->stats().pages_populated_ahead, 0u);
  EXPECT_EQ(t->stats().pages_resident, 40u);
  EXPECT_EQ(bench::ResidentBytesIn(&t->entry(0), table_bytes).value(), 40 * kPageSize);
  std::vector<std::uint32_t> b = AcquireN(*t, kPer);  // a new page is populated again when needed
  EXPECT_EQ(t->stats().pages_opened, 41u);
}

TEST(HandleTable, CapacityIsExactlyMaxEntries) {
  auto t = HandleTable::Create(os::SystemOs(), 600, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 600);
  std::uint32_t one;
  absl::StatusOr<std::size_t> r = t->Acquire(std::span<std::uint32_t>(&one, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("600"), std::string::npos) << r.status();
  EXPECT_EQ(t->stats().entries_in_use, 600u);
  Release(*t, std::span<const std::uint32_t>(a.data(), 1));
  EXPECT_EQ(t->Acquire(std::span<std::uint32_t>(&one, 1)).value(), 1u);
  EXPECT_EQ(HandleTable::Create(os::SystemOs(), 0, kSalt).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HandleTable::Create(os::SystemOs(), 1u << 28, kSalt).status().code(), absl::StatusCode::kInvalidArgument);
}

// One life of entry `i`: published, sealed into a handle, retired, returned.
Handle OneLife(HandleTable& t, std::uint32_t i, std::uint16_t size_field) {
  const std::uint16_t gen = Publish(t.entry(i), 16);
  const Handle h = t.MakeHandle(i, gen, size_field);
  Word w = 0;
  EXPECT_EQ(Retire(t.entry(i), gen, &w), EntryResult::kOk);
  t.Return(std::span<const std::uint32_t>(&i, 1));
  return h;
}

bool Accepted(const HandleTable& t, Handle h) {
  const HandleRef r = t.Open(h);
  return r.entry != nullptr && GenOf(r.entry->load()) == r.gen;
}

TEST(HandleTable, HandlesOpenToTheirEntryAndAChangedSizeFieldNever) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 3);
  const std::uint16_t gen = Publish(t->entry(a[1]), 16);
  const Handle h = t->MakeHandle(a[1], gen, 1234);
  EXPECT_EQ(h.index(), a[1]);
  EXPECT_EQ(h.size_field(), 1234);
  const HandleRef r = t->Open(h);
  ASSERT_EQ(r.entry, &t->entry(a[1]));
  EXPECT_EQ(r.gen, gen);
  // Every other size field opens to another generation: the size is sealed into the check.
  for (std::uint32_t size = 0; size <= 0xFFFF; ++size) {
    if (size == 1234) continue;
    const Handle forged = Handle::Make(h.index(), h.check(), static_cast<std::uint16_t>(size));
    ASSERT_FALSE(Accepted(*t, forged)) << size;
  }
  // Another index of the same page, same check: refused too (it opens with another mask).
  for (std::uint32_t other : {a[0], a[2]}) {
    (void)Publish(t->entry(other), 16);
    EXPECT_FALSE(Accepted(*t, Handle::Make(other, h.check(), h.size_field())));
  }
  EXPECT_EQ(t->Open(kNullHandle).entry, nullptr);
}

// Open's bound is the reserved range, not the pages opened so far (inline_read.h): a handle into a page never
// opened — its check made to open to a live generation under the page's key, which is 0 until the page opens —
// gets its entry, whose word reads as 0 (reserved memory, never written), and is refused by the generation
// compare, with nothing touched. Past the range, Open refuses before any load.
TEST(HandleTable, AHandleIntoAPageNeverOpenedOpensToAFreeWordAndIsRefused) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 2);
  (void)Publish(t->entry(a[0]), 16);
  const std::uint32_t index = 5 * kPer + 7;  // page 5 of the table's 10: never opened
  ASSERT_LT(index, t->capacity());
  const Handle forged = Handle::Make(index, Seal(1, 0, 3, index % kPer), 3);
  const HandleRef r = t->Open(forged);
  ASSERT_EQ(r.entry, &t->entry(index));
  EXPECT_EQ(r.gen, 1);
  EXPECT_EQ(r.entry->load(), Word{0});
  EXPECT_FALSE(Accepted(*t, forged));
  Word w;
  EXPECT_EQ(Retire(*r.entry, r.gen, &w), EntryResult::kStale);
  EXPECT_EQ(r.entry->load(), Word{0});
  EXPECT_EQ(t->Classify(forged), HandleVerdict::kNotIssued);
  const std::uint32_t past = t->capacity();
  EXPECT_EQ(t->Open(Handle::Make(past, Seal(1, 0, 3, past % kPer), 3)).entry, nullptr);
  EXPECT_EQ(t->Open(Handle::Make(0, 0, 3)).entry, nullptr);  // index 0: never issued
}

TEST(HandleTable, TablesWithDifferentSaltsRefuseEachOthersHandles) {
  // Pools get salts that differ by a multiple of kPoolMul: a thousand consecutive ones.
  auto mine = HandleTable::Create(os::SystemOs(), kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*mine, 8);
  for (std::uint32_t i : a) (void)Publish(mine->entry(i), 16);
  for (std::uint64_t k = 1; k <= 1000; ++k) {
    auto theirs = HandleTable::Create(os::SystemOs(), kPer, kSalt + k * kPoolMul).value();
    std::vector<std::uint32_t> b = AcquireN(*theirs, 8);
    for (std::size_t j = 0; j < b.size(); ++j) {
      ASSERT_EQ(b[j], a[j]);  // same indices, same (first) generation
      const Handle their_handle = theirs->MakeHandle(b[j], Publish(theirs->entry(b[j]), 16), 63);
      const Handle my_handle = mine->MakeHandle(a[j], GenOf(mine->entry(a[j]).load()), 63);
      ASSERT_NE(their_handle, my_handle);
      ASSERT_FALSE(Accepted(*mine, their_handle)) << k;
      ASSERT_FALSE(Accepted(*theirs, my_handle)) << k;
    }
  }
}

TEST(HandleTable, EntriesRestAfterTheirLastGenerationAndTheirPageIsRekeyed) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> keep = AcquireN(*t, 1);  // keeps page 0 in use
  (void)Publish(t->entry(keep[0]), 16);
  std::uint32_t i = AcquireN(*t, 1)[0];
  ASSERT_EQ(i / kPer, 0u);
  t->Return(std::span<const std::uint32_t>(&i, 1));
  // Every life of one entry, until it rests: each handle it issued is refused as stale afterwards.
  std::vector<Handle> lives;
  for (;;) {
    std::uint32_t got = AcquireN(*t, 1)[0];
    if (got != i) {  // i rested; another entry is handed out instead
      t->Return(std::span<const std::uint32_t>(&got, 1));
      break;
    }
    lives.push_back(OneLife(*t, i, 7));
    ASSERT_LE(lives.size(), 32767u);
  }
  EXPECT_EQ(lives.size(), 32767u);
  EXPECT_EQ(GenOf(t->entry(i).load()), kRestGen);
  EXPECT_EQ(t->stats().entries_rested, 1u);
  for (const Handle& h : lives) {
    ASSERT_FALSE(Accepted(*t, h));
    ASSERT_EQ(t->Classify(h), HandleVerdict::kStale) << h.raw;
  }
  // The page empties: it takes a new key, the rested entry comes back, generations restart.
  Release(*t, keep);
  EXPECT_EQ(t->stats().pages_rekeyed, 1u);
  EXPECT_EQ(t->stats().entries_rested, 0u);
  bool reused = false;
  std::vector<std::uint32_t> again = AcquireN(*t, kPer - 1);
  for (std::uint32_t j : again) {
    const std::uint16_t gen = Publish(t->entry(j), 16);
    EXPECT_EQ(gen, 1);
    reused |= j == i;
  }
  EXPECT_TRUE(reused);
  // Handles of the old key: none opens to a live generation (each could, with a chance of about 2^-20;
  // with this salt none does).
  for (const Handle& h : lives) ASSERT_FALSE(Accepted(*t, h)) << h.raw;
}

TEST(HandleTable, ClassifiesRefusedHandles) {
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer, kSalt).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 2);
  const Handle live = t->MakeHandle(a[0], Publish(t->entry(a[0]), 16), 5);
  (void)Publish(t->entry(a[1]), 16);
  Word w;
  const std::uint16_t gen = GenOf(t->entry(a[0]).load());
  ASSERT_EQ(Retire(t->entry(a[0]), gen, &w), EntryResult::kOk);
  EXPECT_EQ(t->Classify(live), HandleVerdict::kStale);
  // A generation from the future of this entry is a forgery.
  const Handle future = t->MakeHandle(a[0], static_cast<std::uint16_t>(gen + 4), 5);
  EXPECT_EQ(t->Classify(future), HandleVerdict::kNotIssued);
  EXPECT_EQ(t->Classify(Handle::Make(3 * kPer, 1, 5)), HandleVerdict::kNotIssued);
  EXPECT_EQ(t->Classify(kNullHandle), HandleVerdict::kNotIssued);
}

}  // namespace
}  // namespace mova::handles
