// The arena: first-fit placement in 2 MiB regions, runs across regions, limits, decay, OS faults.
#include "alloc/arena.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "bench/rss.h"
#include "os/fault_injecting_os.h"

namespace mova::alloc {
namespace {

std::unique_ptr<Arena> Make(os::Os& os, std::size_t regions, std::chrono::milliseconds decay = {},
                            std::size_t limit = ~std::size_t{0}) {
  return Arena::Create(os, ArenaOptions{Bytes(regions * kRegionSize), Bytes(limit), decay, {}}).value();
}

TEST(Arena, BaseIsRegionAligned) {
  auto a = Make(os::SystemOs(), 4);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a->base()) % kRegionSize, 0u);
  EXPECT_EQ(a->capacity().value(), 4 * kRegionSize);
}

TEST(Arena, FirstFitReusesLowAddressesAndPopulates) {
  auto a = Make(os::SystemOs(), 4);
  PageRun r1 = a->Allocate(Pages(3)).value();
  PageRun r2 = a->Allocate(Pages(5)).value();
  EXPECT_EQ(r1.first, 0u);
  EXPECT_EQ(r2.first, 3u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(r2.first), 5 * kPageSize).value(), 5 * kPageSize);
  a->Free(r1);
  PageRun r3 = a->Allocate(Pages(2)).value();
  EXPECT_EQ(r3.first, 0u);
  EXPECT_EQ(a->stats().used_pages, 7u);
}

TEST(Arena, FreedPagesLeaveTheResidentSetAtOnceWithoutDecay) {
  auto a = Make(os::SystemOs(), 2);
  PageRun r = a->Allocate(Pages(64)).value();
  std::memset(a->PageAddress(r.first), 0xAB, 64 * kPageSize);
  a->Free(r);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(r.first), 64 * kPageSize).value(), 0u);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(a->stats().pages_discarded, 64u);
}

constexpr std::uint64_t kAhead = Arena::kPopulateAhead;

TEST(Arena, DecayKeepsPagesUntilTheDelayPasses) {
  auto a = Make(os::SystemOs(), 2, std::chrono::milliseconds(50));
  PageRun r = a->Allocate(Pages(16)).value();
  EXPECT_EQ(a->stats().dirty_pages, kAhead);  // populated ahead for the next runs
  std::memset(a->PageAddress(r.first), 1, 16 * kPageSize);
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 16u + kAhead);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(r.first), (16 + kAhead) * kPageSize).value(),
            (16 + kAhead) * kPageSize);
  // One interval later: the pages were not dirty all through an interval yet, so they stay.
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  a->PurgeDirty(/*force=*/false);
  EXPECT_EQ(a->stats().dirty_pages, 16u + kAhead);
  // Two: nothing reused them during a whole interval, so they go.
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  a->PurgeDirty(/*force=*/false);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(r.first), (16 + kAhead) * kPageSize).value(), 0u);
}

// Pages that churn keeps reusing are not discarded: each interval only as many go as stayed unused through it,
// from the top of the arena down.
TEST(Arena, DecayDiscardsOnlyWhatAnIntervalDidNotReuse) {
  auto a = Make(os::SystemOs(), 4, std::chrono::milliseconds(40));
  PageRun low = a->Allocate(Pages(kPagesPerRegion)).value();   // region 0
  PageRun high = a->Allocate(Pages(kPagesPerRegion)).value();  // region 1
  a->Free(low);
  a->Free(high);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  a->PurgeDirty(/*force=*/false);  // starts an interval with 2 regions dirty
  ASSERT_EQ(a->stats().dirty_pages, 2 * kPagesPerRegion);
  // During the interval a workload reuses region 0's pages and frees them again.
  for (int i = 0; i < 3; ++i) {
    PageRun again = a->Allocate(Pages(kPagesPerRegion)).value();
    ASSERT_EQ(again.first, low.first);
    a->Free(again);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const std::uint64_t runs = a->stats().discard_runs;
  a->PurgeDirty(/*force=*/false);
  // Region 1 stayed unused all interval long: it goes, as one run; region 0, reused, stays.
  EXPECT_EQ(a->stats().discard_runs - runs, 1u);
  EXPECT_EQ(a->stats().dirty_pages, kPagesPerRegion);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(high.first), kRegionSize).value(), 0u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(low.first), kRegionSize).value(), kRegionSize);
}

// The decay purge an allocation or a free finds due is one step of it (a region's pages here), not the whole
// interval's: the calls of the next milliseconds take the rest, a step each, one Os call per step.
TEST(Arena, AnAllocationMakesOneStepOfADuePurge) {
  auto a = Make(os::SystemOs(), 8, std::chrono::milliseconds(40));
  std::vector<PageRun> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(a->Allocate(Pages(kPagesPerRegion)).value());
  for (const PageRun& r : runs) a->Free(r);
  const std::uint64_t dirty = a->stats().dirty_pages;
  ASSERT_GE(dirty, 4 * kPagesPerRegion);
  // One arena call at a time, each of which may make one step: an allocation of a page (a dirty one, reused)
  // or the free of it. (An allocate-and-free pair could make two steps when the thread is preempted for
  // kPurgeStepSpacing between its calls.)
  std::optional<PageRun> held;
  int arena_calls = 0;
  auto call = [&] {
    if (held.has_value()) {
      a->Free(*held);
      held.reset();
    } else {
      held = a->Allocate(Pages(1)).value();
    }
    ++arena_calls;
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  call();
  call();  // an interval begins
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const std::uint64_t calls = a->stats().discard_calls, discarded = a->stats().pages_discarded;
  auto gone = [&] { return a->stats().pages_discarded - discarded; };
  arena_calls = 0;
  call();  // the interval has passed: its unused pages are due, and this call makes one step
  EXPECT_EQ(a->stats().discard_calls, calls + 1);
  EXPECT_LT(gone(), 2 * kPagesPerRegion) << "more than a step at once";
  EXPECT_GE(gone(), Arena::kPurgeStep);
  while (gone() < dirty - 1 && arena_calls < 32) {  // all but the page a call may hold
    std::this_thread::sleep_for(2 * Arena::kPurgeStepSpacing);
    call();
  }
  EXPECT_GE(gone(), dirty - 1);
  EXPECT_GE(arena_calls, 3);
  EXPECT_LE(a->stats().discard_calls - calls, static_cast<std::uint64_t>(arena_calls));
  if (held.has_value()) a->Free(*held);
}

// PurgeDirty, asked for, discards everything due at once.
TEST(Arena, PurgeDirtyDiscardsAWholeDuePurgeAtOnce) {
  auto a = Make(os::SystemOs(), 8, std::chrono::milliseconds(40));
  std::vector<PageRun> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(a->Allocate(Pages(kPagesPerRegion)).value());
  for (const PageRun& r : runs) a->Free(r);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  a->PurgeDirty(/*force=*/false);  // an interval begins
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const std::uint64_t calls = a->stats().discard_calls;
  a->PurgeDirty(/*force=*/false);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(a->stats().discard_calls, calls + 1);
}

TEST(Arena, ReusingDirtyPagesClearsThem) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  PageRun r = a->Allocate(Pages(8)).value();
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 8u + kAhead);
  const std::uint64_t populates = a->stats().populate_calls;
  PageRun again = a->Allocate(Pages(8)).value();
  EXPECT_EQ(again.first, r.first);
  EXPECT_EQ(a->stats().dirty_pages, kAhead);
  EXPECT_EQ(a->stats().used_pages, 8u);
  EXPECT_EQ(a->stats().populate_calls, populates);  // resident already: no syscall
}

// With a decay delay, a class growing block by block populates kPopulateAhead pages per call, not one block.
TEST(Arena, PopulatesAheadInFewCalls) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  static_assert(3 * (kAhead + 1) <= kPagesPerRegion, "populating ahead stops at the region's end");
  for (std::uint64_t i = 0; i < 3 * (kAhead + 1); ++i) ASSERT_TRUE(a->Allocate(Pages(1)).ok());
  EXPECT_EQ(a->stats().populate_calls, 3u);
  EXPECT_EQ(a->stats().dirty_pages, 0u);  // every page populated ahead was used
  // Without a decay delay nothing is populated beyond the run.
  auto b = Make(os::SystemOs(), 2);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b->Allocate(Pages(1)).ok());
  EXPECT_EQ(b->stats().populate_calls, 10u);
  EXPECT_EQ(b->stats().dirty_pages, 0u);
  // Nor past the memory limit.
  auto c = Make(os::SystemOs(), 2, std::chrono::hours(1), 4 * kPageSize);
  ASSERT_TRUE(c->Allocate(Pages(1)).ok());
  EXPECT_EQ(c->stats().dirty_pages, 3u);
}

// Pages still resident are reused before a lower run whose pages would have to be populated.
TEST(Arena, ResidentPagesAreReusedBeforeALowerCleanRun) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  PageRun low = a->Allocate(Pages(4)).value();
  (void)a->Allocate(Pages(4)).value();
  PageRun high = a->Allocate(Pages(4)).value();
  (void)a->Allocate(Pages(1)).value();
  a->Free(low);
  a->PurgeDirty(/*force=*/true);  // low's pages (and those populated ahead) go back
  a->Free(high);                  // high's stay resident
  const std::uint64_t populates = a->stats().populate_calls;
  EXPECT_EQ(a->Allocate(Pages(4)).value().first, high.first);
  EXPECT_EQ(a->stats().populate_calls, populates);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(a->Allocate(Pages(4)).value().first, low.first);  // none resident: first fit
  EXPECT_EQ(a->stats().populate_calls, populates + 1);
}

// Free runs of 2 pages (P) and of 1 page (Q), each between used pages, none resident.
struct HolesOfTwoLengths {
  std::vector<PageRun> twos, ones;
};
HolesOfTwoLengths MakeHoles(Arena& a, int count) {
  HolesOfTwoLengths h;
  for (int i = 0; i < count; ++i) {
    h.twos.push_back(a.Allocate(Pages(2)).value());
    (void)a.Allocate(Pages(1)).value();
    h.ones.push_back(a.Allocate(Pages(1)).value());
    (void)a.Allocate(Pages(1)).value();
  }
  for (int i = 0; i < count; ++i) {
    a.Free(h.twos[i]);
    a.Free(h.ones[i]);
  }
  a.PurgeDirty(/*force=*/true);
  return h;
}
bool Resident(const Arena& a, PageRun r) {
  return bench::ResidentBytesIn(a.PageAddress(r.first), r.count * kPageSize).value() == r.count * kPageSize;
}
bool BatchesRanges() {  // whether this kernel populates many ranges in one call (process_madvise)
  static const bool batches = [] {
    std::byte* p = os::SystemOs().Reserve(Bytes(4 * kPageSize), Bytes(kPageSize)).value();
    const std::vector<os::PageSpan> spans = {{p, Bytes(kPageSize)}, {p + 2 * kPageSize, Bytes(kPageSize)}};
    os::RangeProgress progress;
    EXPECT_TRUE(os::SystemOs().PopulateRanges(spans, &progress).ok());
    (void)os::SystemOs().Unreserve(p, Bytes(4 * kPageSize));
    return progress.calls == 1;
  }();
  return batches;
}

// An allocation that must populate populates, in the same call, the next free runs that can hold one as long
// (first fit hands them to the next allocations of that length), up to kPopulateAhead pages; shorter runs are
// left alone; the next allocations of that length then make no call.
TEST(Arena, APopulatingAllocationPopulatesTheNextRunsOfItsLengthInOneCall) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  constexpr int kHoles = 20;
  const HolesOfTwoLengths h = MakeHoles(*a, kHoles);
  const std::uint64_t populates = a->stats().populate_calls;
  EXPECT_EQ(a->Allocate(Pages(2)).value().first, h.twos[0].first);
  // The other 19 runs of 2 pages, then the free pages after the last used one: 20 ranges in one call.
  EXPECT_EQ(a->stats().populate_calls, populates + (BatchesRanges() ? 1 : kHoles));
  EXPECT_EQ(a->stats().dirty_pages, kAhead);
  for (int i = 1; i < kHoles; ++i) EXPECT_TRUE(Resident(*a, h.twos[i])) << i;
  for (int i = 0; i < kHoles; ++i) EXPECT_FALSE(Resident(*a, h.ones[i])) << i;
  for (int i = 1; i < kHoles; ++i) EXPECT_EQ(a->Allocate(Pages(2)).value().first, h.twos[i].first);
  EXPECT_EQ(a->stats().populate_calls, populates + (BatchesRanges() ? 1 : kHoles));
}

// A populate that fails part way through its ranges allocates nothing and gives back what it populated.
TEST(Arena, APopulateFailingInItsRangesAheadAllocatesNothingAndKeepsNoPage) {
  os::FaultInjectingOs fos;
  auto a = Make(fos, 2, std::chrono::hours(1));
  const HolesOfTwoLengths h = MakeHoles(*a, 8);
  const std::uint64_t used = a->stats().used_pages;
  fos.FailAfter(os::OsOp::kPopulate, 3, ENOMEM);  // the run's own range and two ahead, then a failure
  EXPECT_EQ(a->Allocate(Pages(2)).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a->stats().used_pages, used);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(Resident(*a, h.twos[i])) << i;
  fos.Clear(os::OsOp::kPopulate);
  EXPECT_EQ(a->Allocate(Pages(2)).value().first, h.twos[0].first);
}

// Dirty runs too short for an allocation that must populate go back at once when they hold more than
// 1/kShortDirtyShare of the pages in use, and stay (for the decay purge) while they hold less.
TEST(Arena, DirtyRunsTooShortForAPopulatingAllocationGoBackPastTheirShare) {
  for (const bool past_share : {false, true}) {
    auto a = Make(os::SystemOs(), 16, std::chrono::hours(1));
    // Without the share, enough pages in use that 100 short dirty pages are within it.
    if (!past_share) (void)a->Allocate(Pages(100 * Arena::kShortDirtyShare)).value();
    std::vector<PageRun> ones;
    for (int i = 0; i < 200; ++i) ones.push_back(a->Allocate(Pages(1)).value());
    a->PurgeDirty(/*force=*/true);
    for (int i = 0; i < 200; i += 2) a->Free(ones[i]);  // 100 dirty runs of one page
    ASSERT_EQ(a->stats().dirty_pages, 100u);
    ASSERT_TRUE(a->Allocate(Pages(4)).ok());  // no dirty run of 4: it populates
    for (int i = 0; i < 200; i += 2) EXPECT_EQ(Resident(*a, ones[i]), !past_share) << i;
    EXPECT_EQ(a->stats().dirty_pages, kAhead + (past_share ? 0 : 100)) << past_share;
  }
}

// A purge discards each maximal free run holding dirty pages in one call, merged across region boundaries,
// however the frees interleaved.
TEST(Arena, PurgeDiscardsLargeRunsInFewCalls) {
  auto a = Make(os::SystemOs(), 4, std::chrono::hours(1));
  std::vector<PageRun> runs;
  for (std::size_t i = 0; i < 2 * kPagesPerRegion; ++i) runs.push_back(a->Allocate(Pages(1)).value());
  PageRun keep = a->Allocate(Pages(1)).value();  // in region 2: ends the run
  for (std::size_t i = 0; i < runs.size(); i += 2) a->Free(runs[i]);
  for (std::size_t i = 1; i < runs.size(); i += 2) a->Free(runs[i]);
  const Arena::Stats before = a->stats();
  a->PurgeDirty(/*force=*/true);
  EXPECT_EQ(a->stats().discard_runs - before.discard_runs, 2u);  // regions 0-1 in one run; region 2's after `keep`
  const std::uint64_t calls = a->stats().discard_calls - before.discard_calls;
  EXPECT_TRUE(calls == 1 || calls == 2) << calls;  // both runs in one process_madvise, where the kernel has it
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(0), 2 * kRegionSize).value(), 0u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(keep.first), kPageSize).value(), kPageSize);
  a->Free(keep);
}

// A deferral with a deadline (a budgeted compaction step) discards from the top down, a chunk at a time, until
// its deadline: one already passed discards one chunk, and says dirty pages are left; a later one discards the
// rest. A discard that keeps failing ends the loop at once instead of spinning until the deadline.
TEST(Arena, ABudgetedDeferralDiscardsFromTheTopUntilItsDeadline) {
  auto a = Make(os::SystemOs(), 8, std::chrono::hours(1));
  std::vector<PageRun> runs;
  for (std::size_t i = 0; i < 4 * kPagesPerRegion; ++i) runs.push_back(a->Allocate(Pages(1)).value());
  PageRun keep = a->Allocate(Pages(1)).value();  // region 4: the runs below stay apart from the free tail
  {
    Arena::DeferDiscards d(*a, absl::InfinitePast());
    for (const PageRun& r : runs) a->Free(r);
    const std::uint64_t dirty = a->stats().dirty_pages;
    EXPECT_GE(dirty, 4 * kPagesPerRegion);
    EXPECT_FALSE(d.Finish());
    EXPECT_LT(a->stats().dirty_pages, dirty);
    EXPECT_GE(a->stats().dirty_pages, dirty - 2 * kPagesPerRegion);  // one chunk: the top regions' pages
  }
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(0), kRegionSize).value(), kRegionSize);  // the bottom waits
  {
    Arena::DeferDiscards d(*a, absl::Now() + absl::Hours(1));
    EXPECT_TRUE(d.Finish());
  }
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(0), 4 * kRegionSize).value(), 0u);
  a->Free(keep);

  os::FaultInjectingOs fos;
  auto b = Make(fos, 4, std::chrono::hours(1));
  PageRun r = b->Allocate(Pages(64)).value();
  PageRun fence = b->Allocate(Pages(1)).value();
  fos.FailAfter(os::OsOp::kDiscard, 0, EINVAL);
  const absl::Time start = absl::Now();
  {
    Arena::DeferDiscards d(*b, absl::Now() + absl::Seconds(30));
    b->Free(r);
    EXPECT_TRUE(d.Finish());  // nothing more would go now
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_GT(b->stats().dirty_pages, 0u);
  EXPECT_GT(b->stats().discard_failures, 0u);
  fos.Clear(os::OsOp::kDiscard);
  b->PurgeDirty(/*force=*/true);
  EXPECT_EQ(b->stats().dirty_pages, 0u);
  b->Free(fence);
}

// Dirty pages count against the memory limit: when an allocation would take resident pages over it, the
// dirty ones go back first.
TEST(Arena, TheMemoryLimitReclaimsDirtyPages) {
  auto a = Make(os::SystemOs(), 4, std::chrono::hours(1), 64 * kPageSize);
  PageRun r = a->Allocate(Pages(40)).value();
  EXPECT_EQ(a->stats().dirty_pages, 24u);  // populated ahead only up to the limit
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 64u);
  // 50 more would take used + dirty over the limit: the dirty pages go back first.
  PageRun s = a->Allocate(Pages(50)).value();
  EXPECT_LE(a->stats().used_pages + a->stats().dirty_pages, 64u);
  EXPECT_EQ(a->stats().dirty_pages, 14u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(0), kRegionSize).value(), 64 * kPageSize);
  a->Free(s);
}

TEST(Arena, RunsLargerThanARegionSpanWholeRegions) {
  auto a = Make(os::SystemOs(), 8);
  PageRun small = a->Allocate(Pages(1)).value();
  PageRun big = a->Allocate(Pages(kPagesPerRegion * 2 + 10)).value();
  EXPECT_EQ(big.first % kPagesPerRegion, 0u);
  EXPECT_GE(big.first, kPagesPerRegion);  // region 0 is partly used
  PageRun tail_user = a->Allocate(Pages(4)).value();
  EXPECT_EQ(tail_user.first, 1u);  // first fit still prefers region 0
  a->Free(big);
  a->Free(small);
  a->Free(tail_user);
  EXPECT_EQ(a->stats().used_pages, 0u);
}

TEST(Arena, AddressSpaceExhaustionIsAnError) {
  auto a = Make(os::SystemOs(), 1);
  PageRun r = a->Allocate(Pages(kPagesPerRegion)).value();
  absl::StatusOr<PageRun> more = a->Allocate(Pages(1));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(more.status().message().find("address space"), std::string::npos);
  a->Free(r);
  EXPECT_TRUE(a->Allocate(Pages(1)).ok());
}

TEST(Arena, MemoryLimitIsAnError) {
  auto a = Make(os::SystemOs(), 4, {}, 10 * kPageSize);
  PageRun r = a->Allocate(Pages(8)).value();
  absl::StatusOr<PageRun> more = a->Allocate(Pages(3));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(more.status().message().find("memory limit"), std::string::npos);
  EXPECT_TRUE(a->Allocate(Pages(2)).ok());
  a->Free(r);
}

TEST(Arena, PopulateFailureAllocatesNothing) {
  os::FaultInjectingOs fos;
  auto a = Make(fos, 2);
  fos.FailAfter(os::OsOp::kPopulate, 0, ENOMEM);
  absl::StatusOr<PageRun> r = a->Allocate(Pages(4));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a->stats().used_pages, 0u);
  fos.Clear(os::OsOp::kPopulate);
  EXPECT_EQ(a->Allocate(Pages(4)).value().first, 0u);
}

TEST(Arena, DiscardFailureKeepsPagesDirtyAndRetries) {
  os::FaultInjectingOs fos;
  auto a = Make(fos, 2);
  PageRun r = a->Allocate(Pages(4)).value();
  fos.FailAfter(os::OsOp::kDiscard, 0, EINVAL);
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 4u);
  EXPECT_EQ(a->stats().discard_failures, 1u);
  fos.Clear(os::OsOp::kDiscard);
  a->PurgeDirty(/*force=*/true);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
}

// Scattered free runs go to the OS together; a run whose discard fails keeps its pages dirty, the runs after
// it are still tried, and each failed run is counted.
TEST(Arena, APurgeDiscardsScatteredRunsTogetherAndKeepsWhatFailed) {
  os::FaultInjectingOs fos;
  auto a = Make(fos, 2, std::chrono::hours(1));
  std::vector<PageRun> runs;
  for (int i = 0; i < 8; ++i) runs.push_back(a->Allocate(Pages(1)).value());
  // Five free runs with dirty pages: four between used pages, and the pages populated ahead after the last.
  for (int i = 0; i < 8; i += 2) a->Free(runs[i]);
  fos.FailAfter(os::OsOp::kDiscard, 1, EINVAL);
  a->PurgeDirty(/*force=*/true);
  EXPECT_EQ(a->stats().discard_runs, 1u);
  EXPECT_EQ(a->stats().discard_failures, 4u);
  EXPECT_EQ(a->stats().dirty_pages, 3 + Arena::kPopulateAhead - 7);
  fos.Clear(os::OsOp::kDiscard);
  a->PurgeDirty(/*force=*/true);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(a->stats().discard_runs, 5u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(runs[i].first), kPageSize).value(), i % 2 == 0 ? 0u : kPageSize)
        << "page " << i;
  }
  for (int i = 1; i < 8; i += 2) a->Free(runs[i]);
}

TEST(Arena, ReservationFailureIsReported) {
  os::FaultInjectingOs fos;
  fos.FailAfter(os::OsOp::kReserve, 0, ENOMEM);
  absl::StatusOr<std::unique_ptr<Arena>> a =
      Arena::Create(fos, ArenaOptions{Bytes(kRegionSize), Bytes(~std::size_t{0}), {}, {}});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
}

// A move's destination holds no pages, even where freed pages were still resident (decay): UFFDIO_MOVE
// refuses a destination page that is present.
TEST(Arena, EmptyBackingDiscardsDirtyPagesAndPopulatesNothing) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  PageRun r = a->Allocate(Pages(8)).value();
  std::memset(a->PageAddress(r.first), 1, 8 * kPageSize);
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 8u + kAhead);
  PageRun e = a->AllocateBelow(Pages(8), 1, Backing::kEmpty).value();
  EXPECT_EQ(e.first, r.first);  // first fit: the same pages
  EXPECT_EQ(a->stats().dirty_pages, kAhead);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(e.first), 8 * kPageSize).value(), 0u);
  // Moved out, the run goes back without anything to discard.
  a->FreeMovedOut(e);
  EXPECT_EQ(a->stats().used_pages, 0u);
  EXPECT_EQ(a->stats().dirty_pages, kAhead);
}

TEST(Arena, MoveRunMovesPagesAndRefusesRunsOfDifferentLengths) {
  auto a = Make(os::SystemOs(), 2);
  PageRun src = a->Allocate(Pages(4)).value();
  std::memset(a->PageAddress(src.first), 7, 4 * kPageSize);
  PageRun dst = a->AllocateBelow(Pages(4), 2, Backing::kEmpty).value();
  absl::StatusOr<compactor::MoveOutcome> out = a->MoveRun(dst, src, compactor::MoveKind::kBlock);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(std::to_integer<int>(a->PageAddress(dst.first)[4 * kPageSize - 1]), 7);
  EXPECT_EQ(a->move_stats().uffd_moves + a->move_stats().copy_moves, 1u);
  EXPECT_TRUE(absl::IsInvalidArgument(a->MoveRun(PageRun{dst.first, 3}, src, compactor::MoveKind::kBlock).status()));
}

// A driver whose descriptor lives in its block's first bytes keeps it readable at the source after the move.
TEST(Arena, MoveRunKeepsTheSourceHeadReadable) {
  auto a = Make(os::SystemOs(), 2);
  PageRun src = a->Allocate(Pages(2)).value();
  std::memset(a->PageAddress(src.first), 9, 2 * kPageSize);
  PageRun dst = a->AllocateBelow(Pages(2), 2, Backing::kEmpty).value();
  ASSERT_TRUE(a->MoveRun(dst, src, compactor::MoveKind::kBlock, Bytes(Arena::kMaxKeptHead)).ok());
  for (std::size_t i = 0; i < Arena::kMaxKeptHead; ++i) ASSERT_EQ(std::to_integer<int>(a->PageAddress(src.first)[i]), 9);
  EXPECT_EQ(std::to_integer<int>(a->PageAddress(dst.first)[2 * kPageSize - 1]), 9);
  PageRun back = a->AllocateBelow(Pages(2), 2, Backing::kEmpty).value();
  EXPECT_TRUE(absl::IsInvalidArgument(
      a->MoveRun(back, dst, compactor::MoveKind::kBlock, Bytes(Arena::kMaxKeptHead + 1)).status()));
}

TEST(Arena, FullRegionsAreCollapsedOnceAndAKernelWithoutCollapseStopsTheScan) {
  os::FaultInjectingOs fos;
  auto a = Make(fos, 4);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->Allocate(Pages(kPagesPerRegion)).ok());  // three full regions
  fos.FailAfter(os::OsOp::kCollapseHugepages, 0, EINVAL);
  Arena::CollapseResult r = a->CollapseFullRegions();
  EXPECT_EQ(r.collapsed, 0u);
  EXPECT_EQ(r.failed, 1u);  // stopped after the first refusal
  EXPECT_EQ(fos.calls(os::OsOp::kCollapseHugepages), 1);
  fos.FailAfter(os::OsOp::kCollapseHugepages, 1, EAGAIN);  // one succeeds, then no huge page to be had
  r = a->CollapseFullRegions();
  EXPECT_EQ(r.collapsed, 1u);
  EXPECT_EQ(r.failed, 2u);  // transient: the others are tried too
  fos.Clear(os::OsOp::kCollapseHugepages);
  r = a->CollapseFullRegions();
  EXPECT_EQ(r.collapsed, 2u);  // the first is not collapsed twice
  EXPECT_EQ(a->CollapseFullRegions().collapsed, 0u);
  EXPECT_EQ(a->stats().regions_collapsed, 3u);
  EXPECT_EQ(a->stats().collapse_failures, 3u);
}

// A region shadow (region_shadow.h) as the pool's page map uses it: 1 KiB per region, so a page of it
// describes four regions.
constexpr std::size_t kShadowPerRegion = 1024;
constexpr std::size_t kRegionsPerUnit = kPageSize / kShadowPerRegion;

struct ShadowedArena {
  ShadowedArena(os::Os& os, std::size_t regions) : os(os), regions(regions) {
    arena = Make(os, regions);
    shadow = os::SystemOs().Reserve(Bytes(regions * kShadowPerRegion), Bytes(kPageSize)).value();
    EXPECT_TRUE(arena->AttachRegionShadow(shadow, Bytes(kShadowPerRegion)).ok());
  }
  ~ShadowedArena() {
    arena.reset();
    (void)os::SystemOs().Unreserve(shadow, Bytes(regions * kShadowPerRegion));
  }
  // What the shadow's owner does for a run it was handed: writes the run's regions' parts.
  PageRun Take(std::size_t region) {
    const PageRun r = arena->Allocate(Pages(kPagesPerRegion)).value();
    EXPECT_EQ(r.first, region * kPagesPerRegion);
    std::memset(shadow + region * kShadowPerRegion, 0xA0 + static_cast<int>(region), kShadowPerRegion);
    return r;
  }
  std::uint64_t Resident(std::size_t unit) const {
    return bench::ResidentBytesIn(shadow + unit * kPageSize, kPageSize).value();
  }
  os::Os& os;
  const std::size_t regions;
  std::unique_ptr<Arena> arena;
  std::byte* shadow = nullptr;
};

// The shadow's page of four regions goes back in the same call that discards the last of their pages, and
// only once all four are free; the other units keep their bytes; a run handed out there again marks it anew.
TEST(Arena, ARegionShadowsPageGoesBackWithTheLastPagesOfItsRegions) {
  os::FaultInjectingOs fos;
  ShadowedArena sa(fos, 12);
  std::vector<PageRun> runs;
  for (std::size_t r = 0; r < 8; ++r) runs.push_back(sa.Take(r));  // units 0 and 1
  EXPECT_EQ(sa.arena->stats().shadow_bytes, 2 * kPageSize);
  EXPECT_EQ(sa.Resident(0), kPageSize);
  EXPECT_EQ(sa.Resident(1), kPageSize);
  for (std::size_t r = 4; r < 7; ++r) sa.arena->Free(runs[r]);
  EXPECT_EQ(sa.Resident(1), kPageSize) << "region 7 is still in use";
  EXPECT_EQ(sa.arena->stats().shadow_units_given_back, 0u);
  const std::int64_t calls = fos.calls(os::OsOp::kDiscard);
  const std::uint64_t discard_calls = sa.arena->stats().discard_calls;
  sa.arena->Free(runs[7]);
  EXPECT_EQ(fos.calls(os::OsOp::kDiscard) - calls, 2) << "the region's run and the shadow's unit";
  EXPECT_EQ(sa.arena->stats().discard_calls, discard_calls + 1) << "in one Os call";
  EXPECT_EQ(sa.Resident(1), 0u);
  EXPECT_EQ(sa.Resident(0), kPageSize);
  for (std::size_t r = 0; r < 4; ++r) {
    EXPECT_EQ(static_cast<int>(sa.shadow[r * kShadowPerRegion + 17]), 0xA0 + static_cast<int>(r));
  }
  const Arena::Stats st = sa.arena->stats();
  EXPECT_EQ(st.shadow_bytes, kPageSize);
  EXPECT_EQ(st.shadow_units_given_back, 1u);
  EXPECT_EQ(st.discard_failures, 0u);
  EXPECT_EQ(st.discard_runs, 4u) << "a run per free; shadow units are not counted as runs";
  // Reused: the unit is resident again once its owner writes it.
  runs[4] = sa.Take(4);
  EXPECT_EQ(sa.arena->stats().shadow_bytes, 2 * kPageSize);
  EXPECT_EQ(sa.Resident(1), kPageSize);
  for (std::size_t r = 0; r < 5; ++r) sa.arena->Free(runs[r]);
  EXPECT_EQ(sa.arena->stats().shadow_bytes, 0u);
  EXPECT_EQ(sa.Resident(0) + sa.Resident(1), 0u);
}

// A unit whose discard fails stays resident and counted, without failing what carried it (the free, its run
// discarded); a forced purge with no dirty page left gives it back on its own.
TEST(Arena, ARegionShadowUnitWhoseDiscardFailedStaysAndGoesWithTheNextForcedPurge) {
  os::FaultInjectingOs fos;
  ShadowedArena sa(fos, 4);
  const PageRun r0 = sa.Take(0);
  fos.FailAfter(os::OsOp::kDiscard, 1, EINVAL, /*times=*/1);  // the run goes, the unit fails
  sa.arena->Free(r0);
  Arena::Stats st = sa.arena->stats();
  EXPECT_EQ(st.dirty_pages, 0u);
  EXPECT_EQ(st.discard_failures, 1u);
  EXPECT_EQ(st.shadow_bytes, kPageSize);
  EXPECT_EQ(sa.Resident(0), kPageSize);
  sa.arena->PurgeDirty(/*force=*/false);  // nothing dirty, not forced: no call
  EXPECT_EQ(sa.arena->stats().discard_calls, st.discard_calls);
  sa.arena->PurgeDirty(/*force=*/true);
  st = sa.arena->stats();
  EXPECT_EQ(st.shadow_bytes, 0u);
  EXPECT_EQ(st.shadow_units_given_back, 1u);
  EXPECT_EQ(sa.Resident(0), 0u);
  sa.arena->PurgeDirty(/*force=*/true);  // nothing left to give back: no call
  EXPECT_EQ(sa.arena->stats().discard_calls, st.discard_calls);
}

TEST(Arena, ARegionShadowIsAttachedOnceBeforeAnyRunAndMustFitPages) {
  auto a = Make(os::SystemOs(), 4);
  std::byte* shadow = os::SystemOs().Reserve(Bytes(8 * kPageSize), Bytes(kPageSize)).value();
  EXPECT_EQ(a->AttachRegionShadow(shadow + 64, Bytes(1024)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->AttachRegionShadow(shadow, Bytes(3000)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->AttachRegionShadow(shadow, Bytes(0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(a->AttachRegionShadow(shadow, Bytes(2 * kPageSize)).ok());  // whole pages per region
  EXPECT_EQ(a->AttachRegionShadow(shadow, Bytes(1024)).code(), absl::StatusCode::kFailedPrecondition);
  auto b = Make(os::SystemOs(), 4);
  ASSERT_TRUE(b->Allocate(Pages(1)).ok());
  EXPECT_EQ(b->AttachRegionShadow(shadow, Bytes(1024)).code(), absl::StatusCode::kFailedPrecondition);
  a.reset();
  (void)os::SystemOs().Unreserve(shadow, Bytes(8 * kPageSize));
}

// Two pages of shadow per region: a region's part goes back as soon as that region is free.
TEST(Arena, ARegionShadowOfWholePagesGoesBackRegionByRegion) {
  auto a = Make(os::SystemOs(), 4);
  constexpr std::size_t kPart = 2 * kPageSize;
  std::byte* shadow = os::SystemOs().Reserve(Bytes(4 * kPart), Bytes(kPageSize)).value();
  ASSERT_TRUE(a->AttachRegionShadow(shadow, Bytes(kPart)).ok());
  const PageRun r0 = a->Allocate(Pages(kPagesPerRegion)).value();
  const PageRun r1 = a->Allocate(Pages(kPagesPerRegion)).value();
  std::memset(shadow, 1, 2 * kPart);
  EXPECT_EQ(a->stats().shadow_bytes, 2 * kPart);
  a->Free(r1);
  EXPECT_EQ(bench::ResidentBytesIn(shadow + kPart, kPart).value(), 0u);
  EXPECT_EQ(bench::ResidentBytesIn(shadow, kPart).value(), kPart);
  EXPECT_EQ(a->stats().shadow_bytes, kPart);
  a->Free(r0);
  EXPECT_EQ(a->stats().shadow_bytes, 0u);
  a.reset();
  (void)os::SystemOs().Unreserve(shadow, Bytes(4 * kPart));
}

}  // namespace
}  // namespace mova::alloc
