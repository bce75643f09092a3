// The arena: first-fit placement in 2 MiB regions, runs across regions, limits, decay, OS faults.
#include "alloc/arena.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "bench/rss.h"
#include "os/fault_injecting_os.h"

namespace mova::alloc {
namespace {

std::unique_ptr<Arena> Make(os::Os& os, std::size_t regions, std::chrono::milliseconds decay = {},
                            std::size_t limit = ~std::size_t{0}) {
  return Arena::Create(os, ArenaOptions{Bytes(regions * kRegionSize), Bytes(limit), decay}).value();
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

TEST(Arena, DecayKeepsPagesUntilTheDelayPasses) {
  auto a = Make(os::SystemOs(), 2, std::chrono::milliseconds(50));
  PageRun r = a->Allocate(Pages(16)).value();
  std::memset(a->PageAddress(r.first), 1, 16 * kPageSize);
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 16u);
  EXPECT_EQ(bench::ResidentBytesIn(a->PageAddress(r.first), 16 * kPageSize).value(), 16 * kPageSize);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  PageRun other = a->Allocate(Pages(1)).value();  // any allocation purges what has decayed
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  a->Free(other);
  a->PurgeDirty(/*force=*/true);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
}

TEST(Arena, ReusingDirtyPagesClearsThem) {
  auto a = Make(os::SystemOs(), 2, std::chrono::hours(1));
  PageRun r = a->Allocate(Pages(8)).value();
  a->Free(r);
  EXPECT_EQ(a->stats().dirty_pages, 8u);
  PageRun again = a->Allocate(Pages(8)).value();
  EXPECT_EQ(again.first, r.first);
  EXPECT_EQ(a->stats().dirty_pages, 0u);
  EXPECT_EQ(a->stats().used_pages, 8u);
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

TEST(Arena, ReservationFailureIsReported) {
  os::FaultInjectingOs fos;
  fos.FailAfter(os::OsOp::kReserve, 0, ENOMEM);
  absl::StatusOr<std::unique_ptr<Arena>> a =
      Arena::Create(fos, ArenaOptions{Bytes(kRegionSize), Bytes(~std::size_t{0}), {}});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace mova::alloc
