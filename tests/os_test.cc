// The OS seam's batched discard and populate (Os::DiscardRanges, Os::PopulateRanges), on the real kernel and
// through the fault injector: exactly the ranges named lose (gain) their pages, in one call per 1024 ranges
// where the kernel batches, one per range where it does not, and an error says how many ranges were done
// before it. PagesPresent, with the pagemap and with mincore where the pagemap cannot be read. And the
// memory-pressure reading: its parsers, and the real files where the kernel has them.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/rss.h"
#include "gtest/gtest.h"
#include "os/fault_injecting_os.h"
#include "os/os.h"

namespace mova::os {
namespace {

// A reserved range of `pages` pages, fully touched (0x5a) or never touched, given back at the end.
class ReservedPages {
 public:
  explicit ReservedPages(std::size_t pages, bool touched = true) : pages_(pages) {
    base_ = SystemOs().Reserve(Bytes(pages * kPageSize), Bytes(kPageSize)).value();
    if (touched) std::memset(base_, 0x5a, pages * kPageSize);
  }
  ~ReservedPages() { (void)SystemOs().Unreserve(base_, Bytes(pages_ * kPageSize)); }
  std::byte* page(std::size_t i) const { return base_ + i * kPageSize; }
  bool resident(std::size_t i) const { return bench::ResidentBytesIn(page(i), kPageSize).value() == kPageSize; }

 private:
  std::size_t pages_;
  std::byte* base_;
};

// Ranges of one page at every odd page, the even pages kept.
std::vector<PageSpan> OddPages(const ReservedPages& t, std::size_t ranges) {
  std::vector<PageSpan> spans;
  for (std::size_t i = 0; i < ranges; ++i) spans.push_back(PageSpan{t.page(2 * i + 1), Bytes(kPageSize)});
  return spans;
}

TEST(Os, DiscardRangesDiscardsExactlyTheRangesNamed) {
  constexpr std::size_t kRanges = 1500;  // more than one batch of 1024
  ReservedPages t(2 * kRanges);
  const std::vector<PageSpan> spans = OddPages(t, kRanges);
  RangeProgress progress;
  ASSERT_TRUE(SystemOs().DiscardRanges(spans, &progress).ok());
  EXPECT_EQ(progress.ranges_done, kRanges);
  // Two batched calls where the kernel has process_madvise on PIDFD_SELF (6.15+), one madvise a range elsewhere.
  EXPECT_TRUE(progress.calls == 2 || progress.calls == kRanges) << progress.calls;
  for (std::size_t i = 0; i < 2 * kRanges; ++i) {
    ASSERT_EQ(t.resident(i), i % 2 == 0) << "page " << i;
    if (i % 2 == 1) {
      ASSERT_EQ(std::to_integer<int>(*t.page(i)), 0) << "a discarded page reads zeros";
    }
  }
  for (std::size_t i = 0; i < 2 * kRanges; i += 2) ASSERT_EQ(std::to_integer<int>(*t.page(i)), 0x5a);
}

TEST(Os, PopulateRangesPopulatesExactlyTheRangesNamed) {
  constexpr std::size_t kRanges = 1500;  // more than one batch of 1024
  ReservedPages t(2 * kRanges, /*touched=*/false);
  const std::vector<PageSpan> spans = OddPages(t, kRanges);
  RangeProgress progress;
  ASSERT_TRUE(SystemOs().PopulateRanges(spans, &progress).ok());
  EXPECT_EQ(progress.ranges_done, kRanges);
  // Two batched calls where the kernel has process_madvise on PIDFD_SELF (6.15+), one madvise a range elsewhere.
  EXPECT_TRUE(progress.calls == 2 || progress.calls == kRanges) << progress.calls;
  for (std::size_t i = 0; i < 2 * kRanges; ++i) ASSERT_EQ(t.resident(i), i % 2 == 1) << "page " << i;
  for (std::size_t i = 1; i < 2 * kRanges; i += 2) ASSERT_EQ(std::to_integer<int>(*t.page(i)), 0) << "zeroed";
  RangeProgress none{7, 7};
  ASSERT_TRUE(SystemOs().PopulateRanges({}, &none).ok());
  EXPECT_EQ(none.ranges_done, 0u);
  EXPECT_EQ(none.calls, 0u);
}

// A bad range in the middle of a populate batch: the ranges before it are populated and counted, it is
// reported, and the ranges after it stay without pages.
TEST(Os, ABadRangeStopsAPopulateBatchAndSaysWhere) {
  ReservedPages t(8, /*touched=*/false);
  ASSERT_TRUE(SystemOs().Unreserve(t.page(5), Bytes(kPageSize)).ok());  // nothing mapped there
  const std::vector<PageSpan> spans = OddPages(t, 4);
  RangeProgress progress;
  const absl::Status s = SystemOs().PopulateRanges(spans, &progress);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;  // ENOMEM: not mapped
  EXPECT_EQ(progress.ranges_done, 2u);
  EXPECT_TRUE(t.resident(1));
  EXPECT_TRUE(t.resident(3));
  EXPECT_FALSE(t.resident(7));
}

// Pages with contents and holes told apart, through the pagemap and, where it cannot be read (no file, or a
// read that fails or comes short), through mincore: a page written is present, one never touched or discarded
// is a hole.
TEST(Os, PagesPresentTellsPagesFromHolesWithTheirPagemapOrWithout) {
  constexpr std::size_t kPages = 8;
  std::byte* base = SystemOs().Reserve(Bytes(kPages * kPageSize), Bytes(kPageSize)).value();
  for (std::size_t i : {0u, 3u, 5u, 7u}) base[i * kPageSize] = std::byte{1};
  ASSERT_TRUE(SystemOs().Discard(base + 5 * kPageSize, Bytes(kPageSize)).ok());
  const std::vector<bool> expected = {true, false, false, true, false, false, false, true};
  EXPECT_EQ(SystemOs().PagesPresent(base, Pages(kPages)).value(), expected);
  EXPECT_EQ(PagesPresentFrom(-1, base, Pages(kPages)).value(), expected);  // no pagemap
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);  // reads nothing: a short read
  ASSERT_GE(null_fd, 0);
  EXPECT_EQ(PagesPresentFrom(null_fd, base, Pages(kPages)).value(), expected);
  close(null_fd);
  int pipe_fds[2];  // pread fails (ESPIPE)
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_EQ(PagesPresentFrom(pipe_fds[0], base, Pages(kPages)).value(), expected);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  // Neither way: the range is not mapped, and mincore's error is the answer.
  ASSERT_TRUE(SystemOs().Unreserve(base, Bytes(kPages * kPageSize)).ok());
  EXPECT_FALSE(PagesPresentFrom(-1, base, Pages(kPages)).ok());
  EXPECT_EQ(PagesPresentFrom(-1, base, Pages(0)).value(), std::vector<bool>{});
}

TEST(Os, DiscardRangesOfNothingMakesNoCall) {
  RangeProgress progress{7, 7};
  ASSERT_TRUE(SystemOs().DiscardRanges({}, &progress).ok());
  EXPECT_EQ(progress.ranges_done, 0u);
  EXPECT_EQ(progress.calls, 0u);
}

// A bad range in the middle of a batch: the ranges before it are discarded and counted, it is reported, and
// the ranges after it keep their pages.
TEST(Os, ABadRangeStopsTheBatchAndSaysWhere) {
  ReservedPages t(8);
  const std::vector<PageSpan> spans = {{t.page(1), Bytes(kPageSize)},
                                       {t.page(3), Bytes(kPageSize)},
                                       {t.page(5) + 1, Bytes(kPageSize)},  // not page-aligned
                                       {t.page(7), Bytes(kPageSize)}};
  RangeProgress progress;
  const absl::Status s = SystemOs().DiscardRanges(spans, &progress);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(progress.ranges_done, 2u);
  EXPECT_FALSE(t.resident(1));
  EXPECT_FALSE(t.resident(3));
  EXPECT_TRUE(t.resident(5));
  EXPECT_TRUE(t.resident(7));
}

// The injector counts a call per range (kDiscard, kPopulate) and fails the range it was told to, after doing
// the ones before it for real.
TEST(Os, InjectedRangeFailureLandsOnTheRangeItNames) {
  struct Case {
    OsOp op;
    absl::Status (FaultInjectingOs::*run)(std::span<const PageSpan>, RangeProgress*);
    bool resident_when_done;  // what a range the call did holds: a discard takes the pages, a populate makes them
  };
  for (const Case& c : {Case{OsOp::kDiscard, &FaultInjectingOs::DiscardRanges, false},
                        Case{OsOp::kPopulate, &FaultInjectingOs::PopulateRanges, true}}) {
    SCOPED_TRACE(c.resident_when_done ? "populate" : "discard");
    ReservedPages t(8, /*touched=*/!c.resident_when_done);
    const std::vector<PageSpan> spans = OddPages(t, 4);
    FaultInjectingOs fos;
    fos.FailAfter(c.op, 2, ENOMEM);
    RangeProgress progress;
    const absl::Status s = (fos.*c.run)(spans, &progress);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_EQ(progress.ranges_done, 2u);
    EXPECT_EQ(fos.calls(c.op), 3);
    EXPECT_EQ(fos.failures(c.op), 1);
    EXPECT_EQ(t.resident(1), c.resident_when_done);
    EXPECT_EQ(t.resident(3), c.resident_when_done);
    EXPECT_EQ(t.resident(5), !c.resident_when_done);
    EXPECT_EQ(t.resident(7), !c.resident_when_done);
  }
}

// The stale-touch watch's calls: a range registered for missing faults is populated through the descriptor
// without faulting; a touch of a missing page waits and is reported at its exact address, and populating the
// page lets the toucher go on.
TEST(Os, MissingFaultsAreReportedAtTheAddressTouched) {
  Os& os = SystemOs();
  absl::StatusOr<int> fd = os.OpenFaultUserfaultfd();
  if (!fd.ok()) GTEST_SKIP() << fd.status();
  const Bytes size(16 * 4096);
  std::byte* range = os.Reserve(size, Bytes(4096)).value();
  ASSERT_TRUE(os.RegisterMissingFaults(*fd, range, size).ok());
  EXPECT_EQ(os.WaitForFault(*fd, std::chrono::milliseconds(1)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(os.PopulateRegistered(*fd, range, Bytes(2 * 4096)).ok());
  range[100] = std::byte{7};  // present: no fault
  ASSERT_TRUE(os.PopulateRegistered(*fd, range, Bytes(3 * 4096)).ok());  // present pages are kept
  EXPECT_EQ(range[100], std::byte{7});
  std::atomic<int> seen{-1};
  std::thread toucher([&] { seen.store(static_cast<int>(*static_cast<volatile std::byte*>(range + 5 * 4096 + 123))); });
  absl::StatusOr<std::uintptr_t> touched = os.WaitForFault(*fd, std::chrono::milliseconds(5000));
  ASSERT_TRUE(touched.ok()) << touched.status();
  const std::uintptr_t page = reinterpret_cast<std::uintptr_t>(range + 5 * 4096);
  EXPECT_GE(*touched, page);
  EXPECT_LT(*touched, page + 4096);
  EXPECT_EQ(seen.load(), -1);  // it waits
  ASSERT_TRUE(os.PopulateRegistered(*fd, range + 5 * 4096, Bytes(4096)).ok());
  toucher.join();
  EXPECT_EQ(seen.load(), 0);
  ASSERT_TRUE(os.Unreserve(range, size).ok());
  os.CloseFaultUserfaultfd(*fd);
}

TEST(Os, MemoryPressureFilesParse) {
  EXPECT_EQ(ParsePsiSomeAvg10("some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n"
                              "full avg10=1.00 avg60=0.00 avg300=0.00 total=5\n"),
            12.5);
  EXPECT_EQ(ParsePsiSomeAvg10("full avg10=9.00 avg60=0.00 avg300=0.00 total=5\n"
                              "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            0);
  EXPECT_EQ(ParsePsiSomeAvg10(""), -1);
  EXPECT_EQ(ParsePsiSomeAvg10("some avg10=x avg60=0.00\n"), -1);
  EXPECT_EQ(ParsePsiSomeAvg10("some avg60=1.00\n"), -1);
  EXPECT_EQ(ParseCgroupBytes("1073741824\n"), 1073741824u);
  EXPECT_EQ(ParseCgroupBytes("max\n"), 0u);
  EXPECT_EQ(ParseCgroupBytes(""), 0u);
  EXPECT_EQ(ParseCgroupBytes("12k\n"), 0u);
  // The real reading: PSI is a percentage where the kernel has it; a cgroup limit, where one is set, is above
  // what is charged to it or near it.
  const MemoryPressure m = SystemOs().ReadMemoryPressure();
  EXPECT_TRUE(m.some_avg10 == -1 || (m.some_avg10 >= 0 && m.some_avg10 <= 100)) << m.some_avg10;
  if (m.cgroup_max > 0) {
    EXPECT_GT(m.cgroup_current, 0u);
  }
}

}  // namespace
}  // namespace mova::os
