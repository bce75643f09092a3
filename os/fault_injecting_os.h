// os/fault_injecting_os.h — an Os that forwards to another and fails chosen calls.
//
// Types: FaultInjectingOs, OsOp. Used by tests to drive every error path through the real seam:
// `FailAfter(OsOp::kPopulate, 3, ENOMEM)` lets three Populate calls through and fails the rest until
// `Clear()`. Calls are counted per operation. `SetHook(op, f)` runs f at the start of every call of `op` (a
// test holds a caller inside the call that way: a mover inside its barrier, say). Thread-safe (one mutex; it is a test tool, not a fast path).
#ifndef MOVA_OS_FAULT_INJECTING_OS_H_
#define MOVA_OS_FAULT_INJECTING_OS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"
#include "os/os.h"

namespace mova::os {

enum class OsOp : int {
  kReserve = 0,
  kUnreserve,
  kPopulate,
  kDiscard,
  kCollapseHugepages,
  kExcludeFromCoreDumps,
  kRemap,
  kOpenUserfaultfd,
  kRegisterUserfaultfd,
  kMovePages,
  kOpenFaultUserfaultfd,
  kRegisterMissingFaults,
  kPopulateRegistered,
  kRegisterMembarrier,
  kMembarrier,
  kPagesPresent,
  kCount
};

class FaultInjectingOs final : public Os {
 public:
  explicit FaultInjectingOs(Os& real = SystemOs()) : real_(real) {}

  // Lets `successes` more calls of `op` through, then fails the next `times` with `err` (mapped to a status as
  // the real calls are, by StatusFromErrno; -1: every later one until Clear(op)), then lets calls through
  // again. A failed MovePages moves nothing.
  void FailAfter(OsOp op, std::int64_t successes, int err, std::int64_t times = -1);
  // As FailAfter, but each failed MovePages first moves the pages and then answers `err` with nothing counted
  // as moved: what Linux 6.18's UFFDIO_MOVE did about once in 400,000 calls here (EEXIST after moving them all).
  void MisreportMovesAfter(std::int64_t successes, int err, std::int64_t times = -1);
  void Clear(OsOp op);
  // Runs `hook` (without this object's lock) at the start of every later call of `op`; an empty one removes it.
  void SetHook(OsOp op, std::function<void()> hook);
  std::int64_t calls(OsOp op) const;     // calls made, failed ones included
  std::int64_t failures(OsOp op) const;  // calls failed by injection

  absl::StatusOr<std::byte*> Reserve(Bytes size, Bytes alignment) override;
  absl::Status Unreserve(std::byte* addr, Bytes size) override;
  absl::Status Populate(std::byte* addr, Bytes size) override;
  absl::Status Discard(std::byte* addr, Bytes size) override;
  // kPopulate, kDiscard: one call counted per range.
  absl::Status PopulateRanges(std::span<const PageSpan> ranges, RangeProgress* progress) override;
  absl::Status DiscardRanges(std::span<const PageSpan> ranges, RangeProgress* progress) override;
  absl::Status CollapseHugepages(std::byte* addr, Bytes size) override;
  absl::Status ExcludeFromCoreDumps(std::byte* addr, Bytes size) override;
  absl::Status Remap(std::byte* dst, std::byte* src, Bytes size) override;
  absl::StatusOr<int> OpenUserfaultfd() override;
  absl::Status RegisterUserfaultfd(int uffd, std::byte* addr, Bytes size) override;
  absl::Status MovePages(int uffd, std::byte* dst, std::byte* src, Bytes size, Bytes* moved) override;
  void CloseUserfaultfd(int uffd) override;
  absl::StatusOr<std::vector<bool>> PagesPresent(const std::byte* addr, Pages count) override;
  absl::StatusOr<int> OpenFaultUserfaultfd() override;
  absl::Status RegisterMissingFaults(int uffd, std::byte* addr, Bytes size) override;
  absl::Status PopulateRegistered(int uffd, std::byte* addr, Bytes size) override;
  absl::StatusOr<std::uintptr_t> WaitForFault(int uffd, std::chrono::milliseconds timeout) override;  // not counted
  void CloseFaultUserfaultfd(int uffd) override;
  absl::Status RegisterMembarrier() override;
  absl::Status Membarrier() override;
  // The real reading, or the one set by SetMemoryPressure.
  MemoryPressure ReadMemoryPressure() override;
  // From now on ReadMemoryPressure answers `m` (tests of the background compactor's pressure trigger).
  void SetMemoryPressure(const MemoryPressure& m);

 private:
  struct Rule {
    bool armed = false;
    std::int64_t successes_left = 0;
    std::int64_t failures_left = -1;  // -1: no end
    int err = 0;
    bool after_doing = false;  // the call is made, then the error answered (MisreportMovesAfter)
    std::int64_t calls = 0;
    std::int64_t failures = 0;
  };
  // FailAfter and MisreportMovesAfter: one rule set under one lock.
  void Arm(OsOp op, std::int64_t successes, int err, std::int64_t times, bool after_doing);
  // Counts the call and returns the injected error, or OK to forward it. `*after_doing` (when given) is set
  // for an error to be answered after the call is made.
  absl::Status Check(OsOp op, const char* name, bool* after_doing = nullptr);
  template <typename Real>
  absl::Status RangesWithInjection(OsOp op, const char* what, std::span<const PageSpan> ranges,
                                   RangeProgress* progress, Real real);

  Os& real_;
  mutable Mutex mu_;
  std::array<Rule, static_cast<int>(OsOp::kCount)> rules_ ABSL_GUARDED_BY(mu_);
  std::array<std::shared_ptr<const std::function<void()>>, static_cast<int>(OsOp::kCount)> hooks_ ABSL_GUARDED_BY(mu_);
  bool pressure_set_ ABSL_GUARDED_BY(mu_) = false;
  MemoryPressure pressure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mova::os

#endif  // MOVA_OS_FAULT_INJECTING_OS_H_
