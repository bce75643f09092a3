// os/os.cc — SystemOs: the real mmap / munmap / madvise behind the Os seam.
#include "os/os.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_format.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace mova::os {
namespace {

absl::Status ErrnoStatus(int err, const char* what, const void* addr, std::size_t size) {
  std::string msg = absl::StrFormat("%s(%p, %u bytes) failed: %s", what, addr, size, std::strerror(err));
  if (err == ENOMEM || err == EAGAIN) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

class SystemOsImpl final : public Os {
 public:
  absl::StatusOr<std::byte*> Reserve(Bytes size, Bytes alignment) override {
    const std::size_t align = alignment.value() < kPageSize ? kPageSize : alignment.value();
    // Over-reserve by the alignment, then trim both ends so the kept range is aligned.
    const std::size_t span = size.value() + align;
    if (span < size.value()) return absl::ResourceExhaustedError("reservation size overflows");
    void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return ErrnoStatus(errno, "mmap", nullptr, span);
    auto start = reinterpret_cast<std::uintptr_t>(p);
    std::uintptr_t aligned = (start + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
    if (aligned > start) munmap(p, aligned - start);
    std::uintptr_t end = start + span, kept_end = aligned + size.value();
    if (end > kept_end) munmap(reinterpret_cast<void*>(kept_end), end - kept_end);
    return reinterpret_cast<std::byte*>(aligned);
  }

  absl::Status Unreserve(std::byte* addr, Bytes size) override {
    if (munmap(addr, size.value()) != 0) return ErrnoStatus(errno, "munmap", addr, size.value());
    return absl::OkStatus();
  }

  absl::Status Populate(std::byte* addr, Bytes size) override {
    if (madvise(addr, size.value(), MADV_POPULATE_WRITE) == 0) return absl::OkStatus();
    int err = errno;
    if (err == EINVAL) {  // kernel older than 5.14: fault the pages in by touching them
      for (std::size_t off = 0; off < size.value(); off += kPageSize) {
        reinterpret_cast<volatile std::byte*>(addr)[off] = std::byte{0};
      }
      return absl::OkStatus();
    }
    return ErrnoStatus(err, "madvise(MADV_POPULATE_WRITE)", addr, size.value());
  }

  absl::Status Discard(std::byte* addr, Bytes size) override {
    if (madvise(addr, size.value(), MADV_DONTNEED) != 0) {
      return ErrnoStatus(errno, "madvise(MADV_DONTNEED)", addr, size.value());
    }
    return absl::OkStatus();
  }
};

}  // namespace

Os& SystemOs() {
  static SystemOsImpl* os = new SystemOsImpl();  // never destroyed: pools may outlive static destructors
  return *os;
}

}  // namespace mova::os
