// os/os.cc — SystemOs: the real mmap / munmap / madvise / mremap / userfaultfd / membarrier behind the Os seam.
#include "os/os.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/mutex.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

// UFFDIO_MOVE (Linux 6.8) is newer than the kernel headers of Debian 12: the ABI, from the kernel's uapi.
namespace mova::os::uapi {
inline constexpr std::uint64_t kFeatureMove = std::uint64_t{1} << 16;
inline constexpr std::uint64_t kMoveModeAllowSrcHoles = std::uint64_t{1} << 1;
struct UffdioMove {
  std::uint64_t dst;
  std::uint64_t src;
  std::uint64_t len;
  std::uint64_t mode;
  std::int64_t move;  // written by the kernel: bytes moved, or -errno
};
inline constexpr unsigned long kUffdioMove = _IOWR(UFFDIO, 0x05, UffdioMove);
// PIDFD_SELF_THREAD (Linux 6.15): a pidfd naming the calling thread, so no descriptor is opened, and a forked
// child names itself rather than its parent.
inline constexpr int kPidfdSelf = -10000;
// The most iovecs process_madvise takes in one call (UIO_MAXIOV).
inline constexpr std::size_t kMaxIovecs = 1024;
}  // namespace mova::os::uapi

namespace mova::os {

absl::Status StatusFromErrno(int err, std::string_view what) {
  const std::string msg = absl::StrFormat("%s failed: %s", what, std::strerror(err));
  switch (err) {
    case ENOMEM:
    case EAGAIN:
      return absl::ResourceExhaustedError(msg);
    case EBUSY:
      return absl::UnavailableError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ENOENT:
      return absl::NotFoundError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case ENOSYS:
    case ENOTTY:
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

namespace {

absl::Status ErrnoStatus(int err, const char* what, const void* addr, std::size_t size) {
  return StatusFromErrno(err, absl::StrFormat("%s(%p, %u bytes)", what, addr, size));
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

  absl::Status DiscardRanges(std::span<const PageSpan> ranges, RangeProgress* progress) override {
    return AdviseRanges(ranges, MADV_DONTNEED, "process_madvise(MADV_DONTNEED)", batch_discards_, progress,
                        [this](const PageSpan& r) { return Discard(r.addr, r.size); });
  }

  absl::Status PopulateRanges(std::span<const PageSpan> ranges, RangeProgress* progress) override {
    return AdviseRanges(ranges, MADV_POPULATE_WRITE, "process_madvise(MADV_POPULATE_WRITE)", batch_populates_,
                        progress, [this](const PageSpan& r) { return Populate(r.addr, r.size); });
  }

  absl::Status ExcludeFromCoreDumps(std::byte* addr, Bytes size) override {
    if (madvise(addr, size.value(), MADV_DONTDUMP) != 0) return ErrnoStatus(errno, "madvise(MADV_DONTDUMP)", addr, size.value());
    return absl::OkStatus();
  }

  absl::Status CollapseHugepages(std::byte* addr, Bytes size) override {
    if (madvise(addr, size.value(), MADV_COLLAPSE) != 0) return ErrnoStatus(errno, "madvise(MADV_COLLAPSE)", addr, size.value());
    return absl::OkStatus();
  }

  absl::Status Remap(std::byte* dst, std::byte* src, Bytes size) override {
    void* p = mremap(src, size.value(), size.value(), MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
    if (p == MAP_FAILED) return ErrnoStatus(errno, "mremap", src, size.value());
    return absl::OkStatus();
  }

  absl::StatusOr<int> OpenUserfaultfd() override {
    MutexLock lock(&uffd_mu_);
    if (uffd_ >= 0 && uffd_pid_ != getpid()) {
      // Inherited across fork: it names the parent's memory. The child's copy goes; the parent's stays open.
      close(uffd_);
      uffd_ = -1;
      uffd_users_ = 0;
    }
    if (uffd_ < 0) {
      absl::StatusOr<int> fd = NewUserfaultfd();
      if (!fd.ok()) return fd.status();
      uffd_ = *fd;
      uffd_pid_ = getpid();
    }
    ++uffd_users_;
    return uffd_;
  }

  void CloseUserfaultfd(int uffd) override {
    MutexLock lock(&uffd_mu_);
    if (uffd != uffd_ || uffd_pid_ != getpid() || uffd_users_ == 0) return;
    if (--uffd_users_ == 0) {
      close(uffd_);
      uffd_ = -1;
    }
  }

  absl::Status RegisterMembarrier() override {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return StatusFromErrno(errno, "membarrier(REGISTER_PRIVATE_EXPEDITED)");
    }
    return absl::OkStatus();
  }

  absl::Status Membarrier() override {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return StatusFromErrno(errno, "membarrier(PRIVATE_EXPEDITED)");
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status Register(int uffd, std::byte* addr, Bytes size, std::uint64_t mode) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<std::uintptr_t>(addr);
    reg.range.len = size.value();
    reg.mode = mode;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return ErrnoStatus(errno, "ioctl(UFFDIO_REGISTER)", addr, size.value());
    return absl::OkStatus();
  }

  // false once the kernel refused process_madvise on PIDFD_SELF with that advice
  std::atomic<bool> batch_discards_{true};
  std::atomic<bool> batch_populates_{true};

  // DiscardRanges and PopulateRanges: `advice` for up to IOV_MAX ranges a process_madvise call; `one(range)`
  // for each range where the kernel refuses the batched call (then `batched` turns false for good), and for
  // the range a batch stopped at, whose own call says why.
  template <typename One>
  static absl::Status AdviseRanges(std::span<const PageSpan> ranges, int advice, const char* what,
                                   std::atomic<bool>& batched, RangeProgress* progress, One one) {
    *progress = RangeProgress{};
    std::vector<iovec> iov;  // on the heap: callers' threads may have small stacks
    while (progress->ranges_done < ranges.size() && batched.load(std::memory_order_relaxed)) {
      const std::span<const PageSpan> rest = ranges.subspan(progress->ranges_done);
      const std::size_t n = std::min(rest.size(), uapi::kMaxIovecs);
      iov.clear();
      iov.reserve(n);  // once: copies left by doubling would stay as holes in the caller's malloc heap
      for (std::size_t i = 0; i < n; ++i) iov.push_back(iovec{rest[i].addr, rest[i].size.value()});
      ++progress->calls;
      const long done = syscall(SYS_process_madvise, uapi::kPidfdSelf, iov.data(), n, advice, 0);
      if (done < 0) {
        const int err = errno;
        // No PIDFD_SELF (before 6.15; a kernel that has it takes every advice for the caller's own process),
        // no process_madvise, or a seccomp filter: one call per range from now.
        if (err == EBADF || err == ENOSYS || err == EPERM) {
          --progress->calls;
          batched.store(false, std::memory_order_relaxed);
          break;
        }
        return ErrnoStatus(err, what, rest[0].addr, rest[0].size.value());
      }
      // The kernel stops at the first range it cannot advise and returns the bytes advised before it.
      std::size_t advised = static_cast<std::size_t>(done), whole = 0;
      while (whole < n && advised >= rest[whole].size.value()) advised -= rest[whole++].size.value();
      progress->ranges_done += whole;
      if (whole < n) {
        // Stopped inside the batch: the range it stopped at says why.
        ++progress->calls;
        if (absl::Status s = one(rest[whole]); !s.ok()) return s;
        ++progress->ranges_done;
      }
    }
    for (; progress->ranges_done < ranges.size(); ++progress->ranges_done) {
      ++progress->calls;
      if (absl::Status s = one(ranges[progress->ranges_done]); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  static absl::StatusOr<int> NewUserfaultfd() {
    int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    if (fd < 0 && (errno == EPERM || errno == EINVAL || errno == ENOSYS)) {
      // Where the syscall is refused, /dev/userfaultfd may still be allowed by its file permissions.
      const int saved = errno;
      const int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
      if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
        close(dev);
      }
      if (fd < 0) errno = saved;
    }
    if (fd < 0) return StatusFromErrno(errno, "userfaultfd");
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = uapi::kFeatureMove;
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
      const int err = errno;
      close(fd);
      // A kernel without UFFD_FEATURE_MOVE refuses the feature bit with EINVAL.
      if (err == EINVAL) return absl::UnimplementedError("userfaultfd: the kernel has no UFFDIO_MOVE (Linux 6.8+)");
      return StatusFromErrno(err, "ioctl(UFFDIO_API)");
    }
    return fd;
  }

  Mutex uffd_mu_;
  int uffd_ ABSL_GUARDED_BY(uffd_mu_) = -1;
  pid_t uffd_pid_ ABSL_GUARDED_BY(uffd_mu_) = 0;
  std::uint64_t uffd_users_ ABSL_GUARDED_BY(uffd_mu_) = 0;

 public:
  absl::StatusOr<int> OpenFaultUserfaultfd() override {
    // The exact address touched (Linux 5.18+), not its page's; where the kernel has no such feature, the page's.
    for (const std::uint64_t features : {std::uint64_t{UFFD_FEATURE_EXACT_ADDRESS}, std::uint64_t{0}}) {
      int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
      if (fd < 0) return StatusFromErrno(errno, "userfaultfd");
      uffdio_api api{};
      api.api = UFFD_API;
      api.features = features;
      if (ioctl(fd, UFFDIO_API, &api) == 0) return fd;
      const int err = errno;
      close(fd);
      if (err != EINVAL || features == 0) return StatusFromErrno(err, "ioctl(UFFDIO_API)");
    }
    return absl::InternalError("unreachable");
  }

  absl::Status RegisterMissingFaults(int uffd, std::byte* addr, Bytes size) override {
    return Register(uffd, addr, size, UFFDIO_REGISTER_MODE_MISSING);
  }

  absl::Status PopulateRegistered(int uffd, std::byte* addr, Bytes size) override {
    alignas(4096) static const std::byte kZeros[64 * 1024] = {};
    for (std::size_t done = 0; done < size.value();) {
      uffdio_copy c{};
      c.dst = reinterpret_cast<std::uintptr_t>(addr) + done;
      c.src = reinterpret_cast<std::uintptr_t>(kZeros);
      c.len = std::min(sizeof(kZeros), size.value() - done);
      if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
        done += c.len;
        continue;
      }
      const int err = errno;
      if (c.copy > 0) {
        done += static_cast<std::size_t>(c.copy);
        continue;
      }
      if (err == EEXIST) {  // a page present already: keep it, go on after it
        done += 4096;
        continue;
      }
      if (err == EAGAIN) continue;  // the mapping changed meanwhile: try the rest again
      return ErrnoStatus(err, "ioctl(UFFDIO_COPY)", addr + done, size.value() - done);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::uintptr_t> WaitForFault(int uffd, std::chrono::milliseconds timeout) override {
    pollfd p{uffd, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno != EINTR) return StatusFromErrno(errno, "poll(userfaultfd)");
    if (n <= 0) return absl::DeadlineExceededError("no fault");
    uffd_msg msg{};
    if (read(uffd, &msg, sizeof(msg)) != static_cast<ssize_t>(sizeof(msg))) {
      if (errno == EAGAIN) return absl::DeadlineExceededError("no fault");
      return StatusFromErrno(errno, "read(userfaultfd)");
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) return absl::DeadlineExceededError("not a page fault");
    return static_cast<std::uintptr_t>(msg.arg.pagefault.address);
  }

  void CloseFaultUserfaultfd(int uffd) override { close(uffd); }

  absl::Status RegisterUserfaultfd(int uffd, std::byte* addr, Bytes size) override {
    return Register(uffd, addr, size, UFFDIO_REGISTER_MODE_WP);
  }

  absl::Status MovePages(int uffd, std::byte* dst, std::byte* src, Bytes size, Bytes* moved) override {
    uapi::UffdioMove mv{};
    mv.dst = reinterpret_cast<std::uintptr_t>(dst);
    mv.src = reinterpret_cast<std::uintptr_t>(src);
    mv.len = size.value();
    mv.mode = uapi::kMoveModeAllowSrcHoles;
    if (ioctl(uffd, uapi::kUffdioMove, &mv) == 0) {
      *moved = size;
      return absl::OkStatus();
    }
    const int err = errno;
    *moved = Bytes(mv.move > 0 ? static_cast<std::size_t>(mv.move) : 0);
    return ErrnoStatus(err, "ioctl(UFFDIO_MOVE)", src, size.value());
  }

  absl::StatusOr<std::vector<bool>> PagesPresent(const std::byte* addr, Pages count) override {
    const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    absl::StatusOr<std::vector<bool>> present = PagesPresentFrom(fd, addr, count);
    if (fd >= 0) close(fd);
    return present;
  }

  MemoryPressure ReadMemoryPressure() override {
    MemoryPressure m;
    if (std::optional<std::string> psi = ReadSmallFile("/proc/pressure/memory")) m.some_avg10 = ParsePsiSomeAvg10(*psi);
    // cgroup v2: the line "0::<path>" names this process's group under /sys/fs/cgroup.
    const std::optional<std::string> groups = ReadSmallFile("/proc/self/cgroup");
    if (!groups) return m;
    for (std::string_view rest = *groups; !rest.empty();) {
      const std::size_t eol = std::min(rest.find('\n'), rest.size());
      std::string_view line = rest.substr(0, eol);
      rest.remove_prefix(std::min(eol + 1, rest.size()));
      if (!line.starts_with("0::")) continue;
      line.remove_prefix(3);
      const std::string dir = "/sys/fs/cgroup" + std::string(line == "/" ? "" : line);
      const std::optional<std::string> max = ReadSmallFile((dir + "/memory.max").c_str());
      const std::optional<std::string> current = ReadSmallFile((dir + "/memory.current").c_str());
      if (max && current) {
        m.cgroup_max = ParseCgroupBytes(*max);
        m.cgroup_current = ParseCgroupBytes(*current);
      }
      break;
    }
    return m;
  }

 private:
  // The first 4 KiB of a small file, or nullopt.
  static std::optional<std::string> ReadSmallFile(const char* path) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string text(4096, '\0');
    const ssize_t n = read(fd, text.data(), text.size());
    close(fd);
    if (n < 0) return std::nullopt;
    text.resize(static_cast<std::size_t>(n));
    return text;
  }
};

}  // namespace

double ParsePsiSomeAvg10(std::string_view text) {
  const std::size_t line = text.starts_with("some ") ? 0 : text.find("\nsome ");
  if (line == std::string_view::npos) return -1;
  const std::size_t key = text.find("avg10=", line);
  if (key == std::string_view::npos) return -1;
  const std::string value(text.substr(key + 6, text.find(' ', key) - key - 6));
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  return end != value.c_str() && *end == '\0' && v >= 0 ? v : -1;
}

std::uint64_t ParseCgroupBytes(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::uint64_t v = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
  return err == std::errc() && end == text.data() + text.size() ? v : 0;
}

absl::StatusOr<std::vector<bool>> PagesPresentFrom(int pagemap_fd, const std::byte* addr, Pages count) {
  std::vector<bool> present(count.value(), false);
  if (count.value() == 0) return present;
  if (pagemap_fd >= 0) {
    constexpr std::uint64_t kPresent = std::uint64_t{1} << 63, kSwapped = std::uint64_t{1} << 62;
    const auto first = reinterpret_cast<std::uintptr_t>(addr) / kPageSize;
    std::vector<std::uint64_t> entries(count.value());
    const std::size_t want = entries.size() * sizeof(std::uint64_t);
    const ssize_t got = pread(pagemap_fd, entries.data(), want, static_cast<off_t>(first * sizeof(std::uint64_t)));
    if (got == static_cast<ssize_t>(want)) {
      for (std::size_t i = 0; i < entries.size(); ++i) present[i] = (entries[i] & (kPresent | kSwapped)) != 0;
      return present;
    }
    // Unreadable after all: mincore answers instead.
  }
  std::vector<unsigned char> vec(count.value());
  if (mincore(const_cast<std::byte*>(addr), count.value() * kPageSize, vec.data()) != 0) {
    return ErrnoStatus(errno, "mincore", addr, count.value() * kPageSize);
  }
  for (std::size_t i = 0; i < vec.size(); ++i) present[i] = (vec[i] & 1) != 0;
  return present;
}

Os& SystemOs() {
  static SystemOsImpl* os = new SystemOsImpl();  // never destroyed: pools may outlive static destructors
  return *os;
}

}  // namespace mova::os
