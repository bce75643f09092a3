// The handle table: densest-first reuse, fully free pages given back, generations, exhaustion, OS faults.
#include "handles/handle_table.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <vector>

#include "bench/rss.h"
#include "os/fault_injecting_os.h"

namespace mova::handles {
namespace {

constexpr std::uint32_t kPer = HandleTable::kEntriesPerPage;

std::vector<std::uint32_t> AcquireN(HandleTable& t, std::size_t n) {
  std::vector<std::uint32_t> out(n);
  std::size_t got = 0;
  while (got < n) {
    absl::StatusOr<std::size_t> k = t.Acquire(std::span<std::uint32_t>(out.data() + got, n - got));
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
  auto t = HandleTable::Create(os::SystemOs(), 4 * kPer).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 3 * kPer);
  EXPECT_EQ(std::set<std::uint32_t>(a.begin(), a.end()).size(), a.size());
  EXPECT_EQ(t->stats().entries_in_use, 3 * kPer);
  EXPECT_EQ(t->stats().pages_opened, 3u);
  for (std::uint32_t i : a) { EXPECT_TRUE(t->Issued(i)); }
  EXPECT_FALSE(t->Issued(3 * kPer));
}

TEST(HandleTable, ReusesTheDensestPageFirst) {
  auto t = HandleTable::Create(os::SystemOs(), 8 * kPer).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 3 * kPer);
  // Page 0 keeps 1 entry, page 1 keeps kPer - 10, page 2 keeps 100.
  std::vector<std::uint32_t> drop;
  for (std::uint32_t i = 1; i < kPer; ++i) drop.push_back(a[i]);
  for (std::uint32_t i = 0; i < 10; ++i) drop.push_back(a[kPer + i]);
  for (std::uint32_t i = 100; i < kPer; ++i) drop.push_back(a[2 * kPer + i]);
  Release(*t, drop);
  std::vector<std::uint32_t> again = AcquireN(*t, 12);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(again[i] / kPer, 1u) << i;  // the densest page fills first
  EXPECT_EQ(again[10] / kPer, 2u);                                      // then the next densest
  EXPECT_EQ(t->stats().pages_opened, 3u);                              // and no new page was opened
}

TEST(HandleTable, GivesFullyFreePagesBackAndRestartsGenerationsAbove) {
  auto t = HandleTable::Create(os::SystemOs(), 64 * kPer).value();
  std::vector<std::uint32_t> a = AcquireN(*t, 32 * kPer);
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  const std::uint16_t old_gen = GenOf(t->entry(a[0]).load());
  const std::uint64_t table_bytes = std::uint64_t{32} * kPer * sizeof(Word);
  const std::uint64_t resident_full = bench::ResidentBytesIn(&t->entry(0), table_bytes).value();
  EXPECT_EQ(resident_full, table_bytes);
  Release(*t, a);
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
  EXPECT_EQ(Pin(t->entry(b[0]), old_gen, &w), EntryResult::kStale);
}

TEST(HandleTable, ExhaustionIsAnError) {
  auto t = HandleTable::Create(os::SystemOs(), kPer).value();
  std::vector<std::uint32_t> a = AcquireN(*t, kPer);
  std::uint32_t one;
  absl::StatusOr<std::size_t> r = t->Acquire(std::span<std::uint32_t>(&one, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  Release(*t, std::span<const std::uint32_t>(a.data(), 1));
  EXPECT_TRUE(t->Acquire(std::span<std::uint32_t>(&one, 1)).ok());
}

TEST(HandleTable, PopulateFailureIsReportedAndRecoverable) {
  os::FaultInjectingOs fos;
  auto t = HandleTable::Create(fos, 4 * kPer).value();
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
  auto t = HandleTable::Create(fos, 4 * kPer).value();
  std::vector<std::uint32_t> a = AcquireN(*t, kPer);
  for (std::uint32_t i : a) (void)Publish(t->entry(i), 16);
  fos.FailAfter(os::OsOp::kDiscard, 0, EINVAL);
  Release(*t, a);
  EXPECT_EQ(fos.failures(os::OsOp::kDiscard), 1);
  EXPECT_EQ(t->stats().pages_resident, 1u);  // kept, still counted
  std::vector<std::uint32_t> b = AcquireN(*t, kPer);
  EXPECT_EQ(t->stats().pages_opened, 1u);    // and reused
}

}  // namespace
}  // namespace mova::handles
