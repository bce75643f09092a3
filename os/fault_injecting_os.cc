// os/fault_injecting_os.cc — see fault_injecting_os.h.
#include "os/fault_injecting_os.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace mova::os {

void FaultInjectingOs::FailAfter(OsOp op, std::int64_t successes, int err, std::int64_t times) {
  Arm(op, successes, err, times, /*after_doing=*/false);
}

void FaultInjectingOs::MisreportMovesAfter(std::int64_t successes, int err, std::int64_t times) {
  Arm(OsOp::kMovePages, successes, err, times, /*after_doing=*/true);
}

void FaultInjectingOs::Arm(OsOp op, std::int64_t successes, int err, std::int64_t times, bool after_doing) {
  MutexLock lock(&mu_);
  Rule& r = rules_[static_cast<int>(op)];
  r.armed = true;
  r.successes_left = successes;
  r.failures_left = times;
  r.err = err;
  r.after_doing = after_doing;
}

void FaultInjectingOs::Clear(OsOp op) {
  MutexLock lock(&mu_);
  rules_[static_cast<int>(op)].armed = false;
}

std::int64_t FaultInjectingOs::calls(OsOp op) const {
  MutexLock lock(&mu_);
  return rules_[static_cast<int>(op)].calls;
}

std::int64_t FaultInjectingOs::failures(OsOp op) const {
  MutexLock lock(&mu_);
  return rules_[static_cast<int>(op)].failures;
}

void FaultInjectingOs::SetHook(OsOp op, std::function<void()> hook) {
  MutexLock lock(&mu_);
  hooks_[static_cast<int>(op)] = hook ? std::make_shared<const std::function<void()>>(std::move(hook)) : nullptr;
}

absl::Status FaultInjectingOs::Check(OsOp op, const char* name, bool* after_doing) {
  std::shared_ptr<const std::function<void()>> hook;
  {
    MutexLock lock(&mu_);
    hook = hooks_[static_cast<int>(op)];
  }
  if (hook != nullptr) (*hook)();
  MutexLock lock(&mu_);
  Rule& r = rules_[static_cast<int>(op)];
  ++r.calls;
  if (!r.armed) return absl::OkStatus();
  if (r.successes_left > 0) {
    --r.successes_left;
    return absl::OkStatus();
  }
  if (r.failures_left == 0) {  // the failures asked for are done
    r.armed = false;
    return absl::OkStatus();
  }
  if (r.failures_left > 0) --r.failures_left;
  ++r.failures;
  if (after_doing != nullptr) *after_doing = r.after_doing;
  return StatusFromErrno(r.err, absl::StrFormat("%s (injected)", name));
}

absl::StatusOr<std::byte*> FaultInjectingOs::Reserve(Bytes size, Bytes alignment) {
  if (absl::Status s = Check(OsOp::kReserve, "mmap"); !s.ok()) return s;
  return real_.Reserve(size, alignment);
}

absl::Status FaultInjectingOs::Unreserve(std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kUnreserve, "munmap"); !s.ok()) return s;
  return real_.Unreserve(addr, size);
}

absl::Status FaultInjectingOs::Populate(std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kPopulate, "madvise(MADV_POPULATE_WRITE)"); !s.ok()) return s;
  return real_.Populate(addr, size);
}

absl::Status FaultInjectingOs::Discard(std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kDiscard, "madvise(MADV_DONTNEED)"); !s.ok()) return s;
  return real_.Discard(addr, size);
}

// Each range of a batch is one call of `op`: the ranges before the first injected failure go to the real
// batched call, so a failure can land on any range of a batch.
template <typename Real>
absl::Status FaultInjectingOs::RangesWithInjection(OsOp op, const char* what, std::span<const PageSpan> ranges,
                                                   RangeProgress* progress, Real real) {
  std::size_t allowed = 0;
  absl::Status injected;
  while (allowed < ranges.size()) {
    injected = Check(op, what);
    if (!injected.ok()) break;
    ++allowed;
  }
  if (absl::Status s = real(ranges.first(allowed), progress); !s.ok()) return s;
  return injected;
}

absl::Status FaultInjectingOs::DiscardRanges(std::span<const PageSpan> ranges, RangeProgress* progress) {
  return RangesWithInjection(OsOp::kDiscard, "process_madvise(MADV_DONTNEED)", ranges, progress,
                             [this](std::span<const PageSpan> r, RangeProgress* p) {
                               return real_.DiscardRanges(r, p);
                             });
}

absl::Status FaultInjectingOs::PopulateRanges(std::span<const PageSpan> ranges, RangeProgress* progress) {
  return RangesWithInjection(OsOp::kPopulate, "process_madvise(MADV_POPULATE_WRITE)", ranges, progress,
                             [this](std::span<const PageSpan> r, RangeProgress* p) {
                               return real_.PopulateRanges(r, p);
                             });
}

absl::Status FaultInjectingOs::ExcludeFromCoreDumps(std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kExcludeFromCoreDumps, "madvise(MADV_DONTDUMP)"); !s.ok()) return s;
  return real_.ExcludeFromCoreDumps(addr, size);
}

absl::Status FaultInjectingOs::CollapseHugepages(std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kCollapseHugepages, "madvise(MADV_COLLAPSE)"); !s.ok()) return s;
  return real_.CollapseHugepages(addr, size);
}

absl::Status FaultInjectingOs::Remap(std::byte* dst, std::byte* src, Bytes size) {
  if (absl::Status s = Check(OsOp::kRemap, "mremap"); !s.ok()) return s;
  return real_.Remap(dst, src, size);
}

absl::StatusOr<int> FaultInjectingOs::OpenUserfaultfd() {
  if (absl::Status s = Check(OsOp::kOpenUserfaultfd, "userfaultfd"); !s.ok()) return s;
  return real_.OpenUserfaultfd();
}

absl::Status FaultInjectingOs::RegisterUserfaultfd(int uffd, std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kRegisterUserfaultfd, "ioctl(UFFDIO_REGISTER)"); !s.ok()) return s;
  return real_.RegisterUserfaultfd(uffd, addr, size);
}

absl::Status FaultInjectingOs::MovePages(int uffd, std::byte* dst, std::byte* src, Bytes size, Bytes* moved) {
  bool after_doing = false;
  if (absl::Status s = Check(OsOp::kMovePages, "ioctl(UFFDIO_MOVE)", &after_doing); !s.ok()) {
    if (after_doing) (void)real_.MovePages(uffd, dst, src, size, moved);
    *moved = Bytes(0);
    return s;
  }
  return real_.MovePages(uffd, dst, src, size, moved);
}

absl::StatusOr<std::vector<bool>> FaultInjectingOs::PagesPresent(const std::byte* addr, Pages count) {
  if (absl::Status s = Check(OsOp::kPagesPresent, "pread(/proc/self/pagemap)"); !s.ok()) return s;
  return real_.PagesPresent(addr, count);
}

void FaultInjectingOs::CloseUserfaultfd(int uffd) { real_.CloseUserfaultfd(uffd); }

absl::StatusOr<int> FaultInjectingOs::OpenFaultUserfaultfd() {
  if (absl::Status s = Check(OsOp::kOpenFaultUserfaultfd, "userfaultfd"); !s.ok()) return s;
  return real_.OpenFaultUserfaultfd();
}

absl::Status FaultInjectingOs::RegisterMissingFaults(int uffd, std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kRegisterMissingFaults, "ioctl(UFFDIO_REGISTER)"); !s.ok()) return s;
  return real_.RegisterMissingFaults(uffd, addr, size);
}

absl::Status FaultInjectingOs::PopulateRegistered(int uffd, std::byte* addr, Bytes size) {
  if (absl::Status s = Check(OsOp::kPopulateRegistered, "ioctl(UFFDIO_COPY)"); !s.ok()) return s;
  return real_.PopulateRegistered(uffd, addr, size);
}

absl::StatusOr<std::uintptr_t> FaultInjectingOs::WaitForFault(int uffd, std::chrono::milliseconds timeout) {
  return real_.WaitForFault(uffd, timeout);
}

void FaultInjectingOs::CloseFaultUserfaultfd(int uffd) { real_.CloseFaultUserfaultfd(uffd); }

absl::Status FaultInjectingOs::RegisterMembarrier() {
  if (absl::Status s = Check(OsOp::kRegisterMembarrier, "membarrier(REGISTER_PRIVATE_EXPEDITED)"); !s.ok()) return s;
  return real_.RegisterMembarrier();
}

MemoryPressure FaultInjectingOs::ReadMemoryPressure() {
  {
    MutexLock lock(&mu_);
    if (pressure_set_) return pressure_;
  }
  return real_.ReadMemoryPressure();
}

void FaultInjectingOs::SetMemoryPressure(const MemoryPressure& m) {
  MutexLock lock(&mu_);
  pressure_set_ = true;
  pressure_ = m;
}

absl::Status FaultInjectingOs::Membarrier() {
  if (absl::Status s = Check(OsOp::kMembarrier, "membarrier(PRIVATE_EXPEDITED)"); !s.ok()) return s;
  return real_.Membarrier();
}

}  // namespace mova::os
