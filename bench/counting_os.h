// bench/counting_os.h — an Os that forwards every call to another and counts them: how the benchmarks tell how
// many system calls a pool made (every mmap / madvise / mremap / userfaultfd / membarrier call of mova goes
// through an Os).
//
// Types: CountingOs. Thread-safe (relaxed atomic counters).
#ifndef MOVA_BENCH_COUNTING_OS_H_
#define MOVA_BENCH_COUNTING_OS_H_

#include <atomic>
#include <cstdint>

#include "os/os.h"

namespace mova::bench {

class CountingOs final : public os::Os {
 public:
  explicit CountingOs(os::Os& real = os::SystemOs()) : real_(real) {}
  // Calls made, of every kind.
  std::uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }

  absl::StatusOr<std::byte*> Reserve(Bytes size, Bytes alignment) override { return (Count(), real_.Reserve(size, alignment)); }
  absl::Status Unreserve(std::byte* addr, Bytes size) override { return (Count(), real_.Unreserve(addr, size)); }
  absl::Status Populate(std::byte* addr, Bytes size) override { return (Count(), real_.Populate(addr, size)); }
  absl::Status Discard(std::byte* addr, Bytes size) override { return (Count(), real_.Discard(addr, size)); }
  absl::Status PopulateRanges(std::span<const os::PageSpan> ranges, os::RangeProgress* progress) override {
    absl::Status s = real_.PopulateRanges(ranges, progress);
    calls_.fetch_add(progress->calls, std::memory_order_relaxed);  // one batched call populates many ranges
    return s;
  }
  absl::Status DiscardRanges(std::span<const os::PageSpan> ranges, os::RangeProgress* progress) override {
    absl::Status s = real_.DiscardRanges(ranges, progress);
    calls_.fetch_add(progress->calls, std::memory_order_relaxed);  // one batched call discards many ranges
    return s;
  }
  absl::Status ExcludeFromCoreDumps(std::byte* addr, Bytes size) override {
    return (Count(), real_.ExcludeFromCoreDumps(addr, size));
  }
  absl::Status CollapseHugepages(std::byte* addr, Bytes size) override {
    return (Count(), real_.CollapseHugepages(addr, size));
  }
  absl::Status Remap(std::byte* dst, std::byte* src, Bytes size) override { return (Count(), real_.Remap(dst, src, size)); }
  absl::StatusOr<int> OpenUserfaultfd() override { return (Count(), real_.OpenUserfaultfd()); }
  absl::Status RegisterUserfaultfd(int uffd, std::byte* addr, Bytes size) override {
    return (Count(), real_.RegisterUserfaultfd(uffd, addr, size));
  }
  absl::Status MovePages(int uffd, std::byte* dst, std::byte* src, Bytes size, Bytes* moved) override {
    return (Count(), real_.MovePages(uffd, dst, src, size, moved));
  }
  absl::StatusOr<int> OpenFaultUserfaultfd() override { return (Count(), real_.OpenFaultUserfaultfd()); }
  absl::Status RegisterMissingFaults(int uffd, std::byte* addr, Bytes size) override {
    return (Count(), real_.RegisterMissingFaults(uffd, addr, size));
  }
  absl::Status PopulateRegistered(int uffd, std::byte* addr, Bytes size) override {
    return (Count(), real_.PopulateRegistered(uffd, addr, size));
  }
  absl::StatusOr<std::uintptr_t> WaitForFault(int uffd, std::chrono::milliseconds timeout) override {
    return (Count(), real_.WaitForFault(uffd, timeout));
  }
  void CloseFaultUserfaultfd(int uffd) override {
    Count();
    real_.CloseFaultUserfaultfd(uffd);
  }
  void CloseUserfaultfd(int uffd) override {
    Count();
    real_.CloseUserfaultfd(uffd);
  }
  absl::StatusOr<std::vector<bool>> PagesPresent(const std::byte* addr, Pages count) override {
    return (Count(), real_.PagesPresent(addr, count));
  }
  absl::Status RegisterMembarrier() override { return (Count(), real_.RegisterMembarrier()); }
  absl::Status Membarrier() override { return (Count(), real_.Membarrier()); }
  os::MemoryPressure ReadMemoryPressure() override { return (Count(), real_.ReadMemoryPressure()); }

 private:
  void Count() { calls_.fetch_add(1, std::memory_order_relaxed); }
  os::Os& real_;
  std::atomic<std::uint64_t> calls_{0};
};

}  // namespace mova::bench

#endif  // MOVA_BENCH_COUNTING_OS_H_
