// os/os.h — the one seam between mova and the kernel's memory calls.
//
// Types: Os (the interface every component calls), SystemOs() (the real one: mmap, munmap, madvise, mremap,
// process_madvise, userfaultfd, membarrier, /proc/self/pagemap, and the memory-pressure files),
// MemoryPressure, StatusFromErrno (one errno → status mapping for every implementation), PageSpan and
// RangeProgress (how far DiscardRanges and PopulateRanges got).
// Every mmap / madvise / mremap / userfaultfd call in mova goes through an Os, so tests can inject failures
// (see fault_injecting_os.h) and check that no error path loses a live object's bytes. Implementations must be
// thread-safe.
#ifndef MOVA_OS_OS_H_
#define MOVA_OS_OS_H_

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/units.h"

namespace mova::os {

// A page-aligned range of this process's address space.
struct PageSpan {
  std::byte* addr = nullptr;
  Bytes size;
};

// How far a DiscardRanges or PopulateRanges call got.
struct RangeProgress {
  std::size_t ranges_done = 0;  // leading ranges wholly done (all of them when the call succeeds)
  std::size_t calls = 0;        // system calls made
};

// How short of memory the system and this process's cgroup are, for the background compactor's trigger. What
// the system does not tell is left at its default.
struct MemoryPressure {
  double some_avg10 = -1;            // PSI (/proc/pressure/memory): % of the last 10 s some task stalled on
                                     // memory; -1 where the kernel has no PSI
  std::uint64_t cgroup_current = 0;  // this process's cgroup v2: bytes charged (memory.current)
  std::uint64_t cgroup_max = 0;      // and its limit (memory.max); 0: no limit, or no cgroup v2
};

class Os {
 public:
  virtual ~Os() = default;

  // Reserves `size` bytes of address space aligned to `alignment` (a power of two, at least a page),
  // readable and writable but not backed by memory until touched or populated (MAP_NORESERVE).
  // ResourceExhausted when the address space is exhausted.
  virtual absl::StatusOr<std::byte*> Reserve(Bytes size, Bytes alignment) = 0;

  // Returns a range obtained from Reserve to the kernel.
  virtual absl::Status Unreserve(std::byte* addr, Bytes size) = 0;

  // Backs a page-aligned range with memory now (MADV_POPULATE_WRITE), so that running out of memory is an
  // error here and not a fault later. ResourceExhausted when memory is short.
  virtual absl::Status Populate(std::byte* addr, Bytes size) = 0;

  // Populates several page-aligned ranges, as Populate does each, in as few system calls as the kernel allows:
  // process_madvise(MADV_POPULATE_WRITE) on PIDFD_SELF (Linux 6.15+) takes up to IOV_MAX ranges a call —
  // measured here, 1.1 µs a page for a thousand one-page ranges in one call against 3.0 µs a page for one
  // madvise call each (and 15 µs for a first-touch fault). Where the kernel has no such call, one Populate a
  // range. On an error, the first `progress->ranges_done` ranges were populated and the next one may have been
  // in part; ResourceExhausted when memory is short.
  virtual absl::Status PopulateRanges(std::span<const PageSpan> ranges, RangeProgress* progress) = 0;

  // Gives a page-aligned range's memory back to the kernel (MADV_DONTNEED): RSS drops at once and the
  // next touch reads zeros.
  virtual absl::Status Discard(std::byte* addr, Bytes size) = 0;

  // Discards several page-aligned ranges, as Discard does each, in as few system calls as the kernel allows:
  // process_madvise on the calling thread's process (PIDFD_SELF, Linux 6.15+) takes up to IOV_MAX ranges a
  // call and flushes the TLB once per call rather than once per range — a hypervisor round trip of 6–20 µs on
  // the machines mova is measured on. Where the kernel has no such call, one madvise per range. On an error,
  // the first `progress->ranges_done` ranges were discarded and the next one may have been in part.
  virtual absl::Status DiscardRanges(std::span<const PageSpan> ranges, RangeProgress* progress) = 0;

  // Leaves a page-aligned range out of the process's core dumps (MADV_DONTDUMP); the flag stays with the
  // range's pages wherever they are moved within it.
  virtual absl::Status ExcludeFromCoreDumps(std::byte* addr, Bytes size) = 0;

  // Puts the present pages of a range aligned to 2 MiB on transparent huge pages now (MADV_COLLAPSE,
  // Linux 6.1+), without changing the mapping's flags (so no mapping is split, and khugepaged does not later
  // fill the range's holes). ResourceExhausted / Unavailable when no huge page could be had now.
  virtual absl::Status CollapseHugepages(std::byte* addr, Bytes size) = 0;

  // Moves the pages of [src, src + size) to dst by moving page tables (mremap with MREMAP_FIXED and
  // MREMAP_DONTUNMAP): src stays mapped with no pages; whatever was mapped at dst is replaced. The kernel
  // gives the moved range a mapping of its own (up to two more lines in /proc/self/maps).
  virtual absl::Status Remap(std::byte* dst, std::byte* src, Bytes size) = 0;

  // This process's userfaultfd with UFFD_FEATURE_MOVE (user-mode faults only, so no privilege is needed
  // where the kernel allows it): one descriptor shared by every caller, counted, closed by the last
  // CloseUserfaultfd — a process with a thousand pools holds one, not a thousand. A forked child gets one of its
  // own (the inherited one names the parent's memory). Unimplemented when the kernel has no UFFDIO_MOVE
  // (before Linux 6.8), PermissionDenied when userfaultfd is not allowed.
  virtual absl::StatusOr<int> OpenUserfaultfd() = 0;
  // Registers a range for write-protect faults. Nothing is ever write-protected, so no fault reaches a
  // handler; the registration is what lets UFFDIO_MOVE place pages into the range.
  virtual absl::Status RegisterUserfaultfd(int uffd, std::byte* addr, Bytes size) = 0;
  // UFFDIO_MOVE: moves the pages of [src, src + size) to dst (which must have none) without copying; holes
  // in src stay holes. `*moved` is set to the bytes moved before an error. Unavailable (EBUSY) when a page is
  // shared with another process (after fork), AlreadyExists when dst has a page.
  virtual absl::Status MovePages(int uffd, std::byte* dst, std::byte* src, Bytes size, Bytes* moved) = 0;
  // Gives back what OpenUserfaultfd returned, in the process that opened it.
  virtual void CloseUserfaultfd(int uffd) = 0;
  // Which of the `count` pages from the page-aligned `addr` have contents of their own — in memory or swapped
  // out — rather than being holes that read zeros: element i for page i. /proc/self/pagemap; where that
  // cannot be read, mincore (which takes a swapped-out page for a hole). For the rare paths that must know
  // where pages are (a UFFDIO_MOVE whose count cannot be trusted); a system call or two per use.
  virtual absl::StatusOr<std::vector<bool>> PagesPresent(const std::byte* addr, Pages count) = 0;

  // The stale-touch watch (checked mode): a userfaultfd of the caller's own (not the shared one above), for a
  // range whose pages are always populated while in use, so that a touch of a missing page — one given back
  // or moved away — reaches a handler instead of reading zeros. PermissionDenied / Unimplemented as above.
  virtual absl::StatusOr<int> OpenFaultUserfaultfd() = 0;
  // Registers a range of it for missing-page faults (UFFDIO_REGISTER_MODE_MISSING): from then on a touch of a
  // missing page there waits for the handler, and so would MADV_POPULATE_WRITE — populate with
  // PopulateRegistered instead.
  virtual absl::Status RegisterMissingFaults(int uffd, std::byte* addr, Bytes size) = 0;
  // Backs a page-aligned range registered for missing faults with zeroed memory now (UFFDIO_COPY), without a
  // fault; pages present already are left as they are. ResourceExhausted when memory is short.
  virtual absl::Status PopulateRegistered(int uffd, std::byte* addr, Bytes size) = 0;
  // Waits up to `timeout` for a missing-page fault on `uffd`: the address touched (the faulting thread waits
  // until its page is populated or the process ends). DeadlineExceeded when none came.
  virtual absl::StatusOr<std::uintptr_t> WaitForFault(int uffd, std::chrono::milliseconds timeout) = 0;
  // Closes what OpenFaultUserfaultfd returned.
  virtual void CloseFaultUserfaultfd(int uffd) = 0;

  // membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED): once per process (a forked child inherits it), so
  // that Membarrier may be called. Unimplemented when the kernel has no private expedited membarrier.
  virtual absl::Status RegisterMembarrier() = 0;
  // membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): every running thread of this process executes a full memory
  // barrier before the call returns (the asymmetric half of the access protocol, handles/access_records.h).
  virtual absl::Status Membarrier() = 0;

  // Reads the system's memory pressure: /proc/pressure/memory, and memory.current / memory.max of the cgroup
  // v2 named in /proc/self/cgroup. A few small file reads; never fails (what cannot be read is left out).
  virtual MemoryPressure ReadMemoryPressure() = 0;
};

// Parses /proc/pressure/memory's text: the "some" line's avg10, or -1. For SystemOs and its tests.
double ParsePsiSomeAvg10(std::string_view text);
// Parses a cgroup v2 memory file (memory.current or memory.max): a byte count, or 0 for "max" and anything
// unreadable.
std::uint64_t ParseCgroupBytes(std::string_view text);

// The status for a failed call `what` that set errno `err`: ENOMEM / EAGAIN → ResourceExhausted,
// EBUSY → Unavailable, EPERM / EACCES → PermissionDenied, EEXIST → AlreadyExists, ENOENT → NotFound,
// EINVAL → InvalidArgument, ENOSYS / ENOTTY → Unimplemented, anything else → Internal.
absl::Status StatusFromErrno(int err, std::string_view what);

// SystemOs's PagesPresent, given `pagemap_fd`, an open /proc/self/pagemap (or -1 where it could not be
// opened): the pagemap's present and swapped bits where it reads in full; mincore where it cannot be read (a
// failed or short read, say where /proc restricts it), whose error is the answer when it fails too. For
// SystemOs and its tests.
absl::StatusOr<std::vector<bool>> PagesPresentFrom(int pagemap_fd, const std::byte* addr, Pages count);

// The process-wide real implementation.
Os& SystemOs();

}  // namespace mova::os

#endif  // MOVA_OS_OS_H_
