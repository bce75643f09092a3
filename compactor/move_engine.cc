// compactor/move_engine.cc — see move_engine.h.
#include "compactor/move_engine.h"

#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/runs.h"

namespace mova::compactor {
namespace {

// UFFDIO_MOVE calls that moved nothing with EAGAIN (or ENOMEM: the same status) before a move falls back to memcpy.
constexpr int kMoveAgainRetries = 3;

}  // namespace

MoveEngine::MoveEngine(os::Os& os, std::byte* base, Bytes size, const MoveEngineOptions& options)
    : os_(os), options_(options), remaps_left_(options.remap_budget) {
  if (!options.use_userfaultfd) {
    uffd_reason_ = "turned off by the options";
    return;
  }
  absl::StatusOr<int> fd = os_.OpenUserfaultfd();
  if (!fd.ok()) {
    uffd_reason_ = std::string(fd.status().message());
    return;
  }
  if (absl::Status s = os_.RegisterUserfaultfd(*fd, base, size); !s.ok()) {
    os_.CloseUserfaultfd(*fd);
    uffd_reason_ = std::string(s.message());
    return;
  }
  uffd_ = *fd;
  owner_pid_ = getpid();
}

MoveEngine::~MoveEngine() {
  // In a forked child the descriptor is the parent's process-wide one: it is not this engine's to give back.
  if (uffd_ >= 0 && getpid() == owner_pid_) os_.CloseUserfaultfd(uffd_);
}

int MoveEngine::UsableUffd() const {
  if (uffd_ < 0 || getpid() != owner_pid_) return -1;
  return uffd_;
}

absl::Status MoveEngine::Copy(std::byte* dst, std::byte* src, Bytes size, Destination dst_holds) {
  if (dst_holds == Destination::kEmpty) {
    if (absl::Status s = os_.Populate(dst, size); !s.ok()) return s;
  }
  std::memcpy(dst, src, size.value());
  return absl::OkStatus();
}

bool MoveEngine::ZeroCopy(Bytes size, MoveKind kind) const {
  if (size < options_.zero_copy_min) return false;
  return UsableUffd() >= 0 ||
         (kind == MoveKind::kRun && options_.use_remap && remaps_left_.load(std::memory_order_relaxed) > 0);
}

absl::StatusOr<MoveOutcome> MoveEngine::Move(std::byte* dst, std::byte* src, Bytes size, MoveKind kind,
                                             Destination dst_holds) {
  if (size.value() == 0) return MoveOutcome{MoveWay::kCopy, true};
  // A present destination takes only a copy: UFFDIO_MOVE refuses present pages, mremap would drop them.
  const bool zero_copy = dst_holds == Destination::kEmpty && size >= options_.zero_copy_min;
  const int uffd = zero_copy ? UsableUffd() : -1;
  if (uffd >= 0) {
    absl::Status st;
    std::size_t moved = 0;  // as the kernel counts it
    int again = 0;
    while (moved < size.value()) {
      Bytes step(0);
      st = os_.MovePages(uffd, dst + moved, src + moved, Bytes(size.value() - moved), &step);
      moved += step.value();
      if (st.ok()) break;
      // No progress: EAGAIN (a page busy for a moment: a folio lock, a split under way) is tried again a bounded
      // number of times, as the kernel's own callers retry it; anything else, or EAGAIN that persists, leaves the
      // rest to memcpy.
      if (step.value() == 0 && (!absl::IsResourceExhausted(st) || ++again > kMoveAgainRetries)) break;
    }
    if (moved == size.value()) {
      c_.uffd_bytes.fetch_add(moved, std::memory_order_relaxed);
      c_.uffd_moves.fetch_add(1, std::memory_order_relaxed);
      return MoveOutcome{MoveWay::kUffdMove, true};
    }
    (absl::IsUnavailable(st) ? c_.uffd_busy_fallbacks : c_.uffd_other_fallbacks).fetch_add(1, std::memory_order_relaxed);
    const std::size_t pages = size.value() / kPageSize;
    const std::vector<bool> left = LeftBehind(uffd, dst, src, pages, moved / kPageSize);
    std::size_t arrived = 0;
    for (bool l : left) arrived += l ? 0 : 1;
    c_.uffd_bytes.fetch_add(arrived * kPageSize, std::memory_order_relaxed);
    if (arrived * kPageSize > moved) c_.uffd_miscounts.fetch_add(1, std::memory_order_relaxed);
    if (arrived == pages) {  // everything moved after all
      c_.uffd_moves.fetch_add(1, std::memory_order_relaxed);
      return MoveOutcome{MoveWay::kUffdMove, true};
    }
    // Copy the pages left behind, a run at a time; the moved ones stay where they are.
    absl::Status copy_status;
    const auto stayed = [&](std::size_t i) { return left[i]; };
    const bool copied = ForEachRun(left.size(), stayed, [&](std::size_t first, std::size_t end) {
      copy_status = Copy(dst + first * kPageSize, src + first * kPageSize, Bytes((end - first) * kPageSize),
                         Destination::kEmpty);
      return copy_status.ok();
    });
    if (!copied) {
      MoveBack(uffd, dst, src, left);  // so that the source is whole again
      c_.failures.fetch_add(1, std::memory_order_relaxed);
      return copy_status;
    }
    c_.copy_moves.fetch_add(1, std::memory_order_relaxed);
    c_.copy_bytes.fetch_add((pages - arrived) * kPageSize, std::memory_order_relaxed);
    return MoveOutcome{MoveWay::kCopy, false};
  }
  if (zero_copy && kind == MoveKind::kRun && options_.use_remap) {
    std::uint64_t left = remaps_left_.load(std::memory_order_relaxed);
    while (left > 0 && !remaps_left_.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
    }
    if (left > 0 && os_.Remap(dst, src, size).ok()) {
      c_.remap_moves.fetch_add(1, std::memory_order_relaxed);
      c_.remap_bytes.fetch_add(size.value(), std::memory_order_relaxed);
      return MoveOutcome{MoveWay::kRemap, true};
    }
    c_.remap_fallbacks.fetch_add(1, std::memory_order_relaxed);
  }
  if (absl::Status s = Copy(dst, src, size, dst_holds); !s.ok()) {
    c_.failures.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  c_.copy_moves.fetch_add(1, std::memory_order_relaxed);
  c_.copy_bytes.fetch_add(size.value(), std::memory_order_relaxed);
  return MoveOutcome{MoveWay::kCopy, false};
}

std::vector<bool> MoveEngine::LeftBehind(int uffd, std::byte* to, std::byte* from, std::size_t pages,
                                         std::size_t counted) {
  std::vector<bool> left(pages, false);
  if (counted >= pages) return left;
  // Moved: at `to` and gone from `from`. Either alone can mislead: `to` may map the zero page (a read of the
  // hole) and `from` may have been a hole.
  absl::StatusOr<std::vector<bool>> at_to = os_.PagesPresent(to + counted * kPageSize, Pages(pages - counted));
  absl::StatusOr<std::vector<bool>> at_from =
      at_to.ok() ? os_.PagesPresent(from + counted * kPageSize, Pages(pages - counted)) : at_to.status();
  if (at_from.ok()) {
    for (std::size_t i = counted; i < pages; ++i) left[i] = !(*at_to)[i - counted] || (*at_from)[i - counted];
    return left;
  }
  for (std::size_t i = counted; i < pages; ++i) {
    Bytes step(0);
    const absl::Status st = os_.MovePages(uffd, to + i * kPageSize, from + i * kPageSize, Bytes(kPageSize), &step);
    left[i] = !st.ok() && !absl::IsAlreadyExists(st);
  }
  return left;
}

void MoveEngine::MoveBack(int uffd, std::byte* dst, std::byte* src, const std::vector<bool>& left) {
  const auto moved = [&](std::size_t i) { return !left[i]; };
  ForEachRun(left.size(), moved, [&](std::size_t first, std::size_t end) {
    std::byte* const from = dst + first * kPageSize;
    std::byte* const to = src + first * kPageSize;
    Bytes back(0);
    if (!os_.MovePages(uffd, to, from, Bytes((end - first) * kPageSize), &back).ok()) {
      const std::vector<bool> stayed = LeftBehind(uffd, to, from, end - first, back.value() / kPageSize);
      for (std::size_t k = 0; k < stayed.size(); ++k) {
        if (stayed[k]) std::memcpy(to + k * kPageSize, from + k * kPageSize, kPageSize);
      }
    }
    return true;
  });
}

MoveEngineStats MoveEngine::stats() const {
  MoveEngineStats s;
  s.userfaultfd_ready = UsableUffd() >= 0;
  s.uffd_moves = c_.uffd_moves.load(std::memory_order_relaxed);
  s.uffd_bytes = c_.uffd_bytes.load(std::memory_order_relaxed);
  s.remap_moves = c_.remap_moves.load(std::memory_order_relaxed);
  s.remap_bytes = c_.remap_bytes.load(std::memory_order_relaxed);
  s.copy_moves = c_.copy_moves.load(std::memory_order_relaxed);
  s.copy_bytes = c_.copy_bytes.load(std::memory_order_relaxed);
  s.uffd_busy_fallbacks = c_.uffd_busy_fallbacks.load(std::memory_order_relaxed);
  s.uffd_other_fallbacks = c_.uffd_other_fallbacks.load(std::memory_order_relaxed);
  s.uffd_miscounts = c_.uffd_miscounts.load(std::memory_order_relaxed);
  s.remap_fallbacks = c_.remap_fallbacks.load(std::memory_order_relaxed);
  s.failures = c_.failures.load(std::memory_order_relaxed);
  return s;
}

}  // namespace mova::compactor
