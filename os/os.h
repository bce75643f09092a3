// os/os.h — the one seam between mova and the kernel's memory calls.
//
// Types: Os (the interface every component calls), SystemOs() (the real one: mmap, munmap, madvise).
// Every mmap / madvise in mova goes through an Os, so tests can inject failures (see fault_injecting_os.h)
// and check that no error path loses a live object's bytes. Implementations must be thread-safe.
#ifndef MOVA_OS_OS_H_
#define MOVA_OS_OS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/units.h"

namespace mova::os {

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

  // Gives a page-aligned range's memory back to the kernel (MADV_DONTNEED): RSS drops at once and the
  // next touch reads zeros.
  virtual absl::Status Discard(std::byte* addr, Bytes size) = 0;
};

// The process-wide real implementation.
Os& SystemOs();

}  // namespace mova::os

#endif  // MOVA_OS_OS_H_
