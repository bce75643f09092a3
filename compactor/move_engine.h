// compactor/move_engine.h — how a block's or a run's pages get from one place to another: by moving page
// tables (UFFDIO_MOVE, mremap) where the kernel allows it, by memcpy where it does not.
//
// Types: MoveEngine (one per reserved range — an arena — since UFFDIO_MOVE needs its destination registered
// with the userfaultfd it is called on; the descriptor itself is the process's one, Os::OpenUserfaultfd), MoveEngineOptions, MoveKind, MoveWay, MoveOutcome, MoveEngineStats.
// Ways, in order of preference (figures measured on this machine are in bench/RESULTS.md):
//   UFFDIO_MOVE   — zero-copy, one call for the whole range (a block is 1..16 pages, a run up to megabytes);
//                   leaves the mappings alone. The range is registered once, in write-protect mode with
//                   nothing ever write-protected, so no fault ever needs a handler thread.
//   mremap        — runs only (MoveKind::kRun), when there is no UFFDIO_MOVE: moves page tables too, but the
//                   kernel gives every moved run a mapping of its own, so at most `remap_budget` runs are
//                   moved this way in the engine's lifetime and the mappings grow by at most twice that.
//   memcpy        — always possible: the destination is populated first (so a shortage of memory is an
//                   error, not a fault) and the bytes copied. Also the way for anything shorter than
//                   MoveEngineOptions::zero_copy_min (every class block), and into a destination whose pages
//                   are present already.
// When UFFDIO_MOVE stops part way (a page shared with a child after fork answers EBUSY, say), the rest goes by
// memcpy; a failure to populate then moves the moved part back, so the source is whole again and the error
// loses nothing. The count of bytes moved that a failed UFFDIO_MOVE reports is a floor, not the truth (Linux
// 6.18 here answered EEXIST with nothing counted after moving every page, about once in 400,000 calls): past
// the count, where each page is is read from the page tables (Os::PagesPresent: a page present at the
// destination, which held none, and gone from the source is one the call moved), and only pages that did not
// move are copied — copying a moved
// page's source, a hole now, would write zeros over it. In a forked child the engine never uses the
// userfaultfd (it names the parent's memory).
// Contract: the destination has no pages present (the caller discarded them) and nothing reads or writes
// either range while it moves. Thread-safe: counters are relaxed atomics, the rest is immutable.
#ifndef MOVA_COMPACTOR_MOVE_ENGINE_H_
#define MOVA_COMPACTOR_MOVE_ENGINE_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mova/units.h"
#include "os/os.h"

namespace mova::compactor {

enum class MoveKind {
  kBlock,  // a class block or anything small: UFFDIO_MOVE or memcpy
  kRun,    // a large page run (a huge object, a buffer): UFFDIO_MOVE, else mremap, else memcpy
};

enum class MoveWay { kUffdMove, kRemap, kCopy };

struct MoveOutcome {
  MoveWay way = MoveWay::kCopy;  // the way that moved the last byte
  bool source_vacated = false;   // the source has no pages left (they moved), so it needs no discard
};

struct MoveEngineOptions {
  bool use_userfaultfd = true;
  bool use_remap = true;
  std::uint64_t remap_budget = 256;  // runs moved by mremap in the engine's lifetime (2 mappings each at most)
  // Moves shorter than this go by memcpy even where a zero-copy way exists. UFFDIO_MOVE of 4 KiB pages flushes
  // the TLB for each page (2.7 µs a page on the AMD EPYC guest, 43 µs for 64 KiB against 27 µs by copy), and a
  // block's move must then fault a page back in for the descriptor the framework still reads; a copy leaves its
  // source whole, to be discarded with many others in one call. Zero-copy wins on long runs and huge pages
  // (2 MiB: 18 µs against 1.2 ms). bench/RESULTS.md has the figures.
  Bytes zero_copy_min{std::size_t{128} << 10};
};

// What the destination of a move holds.
enum class Destination {
  kEmpty,    // no page present: any way may be used
  kPresent,  // every page populated already (an arena's dirty or populated pages): memcpy, no populate
};

struct MoveEngineStats {
  bool userfaultfd_ready = false;     // UFFDIO_MOVE usable in this process
  std::uint64_t uffd_moves = 0;       // moves done entirely by UFFDIO_MOVE
  std::uint64_t uffd_bytes = 0;       // bytes moved by UFFDIO_MOVE (partial moves included)
  std::uint64_t remap_moves = 0;
  std::uint64_t remap_bytes = 0;
  std::uint64_t copy_moves = 0;       // moves finished by memcpy (fallbacks included)
  std::uint64_t copy_bytes = 0;
  std::uint64_t uffd_busy_fallbacks = 0;   // UFFDIO_MOVE refused a shared page (EBUSY, after fork): memcpy
  std::uint64_t uffd_other_fallbacks = 0;  // UFFDIO_MOVE failed otherwise: memcpy
  std::uint64_t uffd_miscounts = 0;        // failed UFFDIO_MOVE calls that had moved pages past their count
  std::uint64_t remap_fallbacks = 0;       // mremap failed, or its budget was spent: memcpy
  std::uint64_t failures = 0;              // moves that failed (memory short); the source was kept whole
};

class MoveEngine {
 public:
  // Sets up UFFDIO_MOVE for [base, base + size) if the kernel and the process's rights allow; never fails.
  MoveEngine(os::Os& os, std::byte* base, Bytes size, const MoveEngineOptions& options = {});
  ~MoveEngine();
  MoveEngine(const MoveEngine&) = delete;
  MoveEngine& operator=(const MoveEngine&) = delete;

  // Moves the whole pages of [src, src + size) to dst (both inside the engine's range, page-aligned,
  // not overlapping). On error (ResourceExhausted: no memory for a copy) src is as it was.
  absl::StatusOr<MoveOutcome> Move(std::byte* dst, std::byte* src, Bytes size, MoveKind kind,
                                   Destination dst_holds = Destination::kEmpty);
  // Whether a move of `size` bytes of `kind` into an empty destination would try a zero-copy way: if not, its
  // caller does better to hand Move a destination that is present already (Destination::kPresent).
  bool ZeroCopy(Bytes size, MoveKind kind) const;

  MoveEngineStats stats() const;
  // Why UFFDIO_MOVE is not used (empty when it is).
  const std::string& userfaultfd_unavailable_reason() const { return uffd_reason_; }

 private:
  // The userfaultfd, or -1 when it is not usable in the calling process.
  int UsableUffd() const;
  // Populates dst unless it is present already, then copies.
  absl::Status Copy(std::byte* dst, std::byte* src, Bytes size, Destination dst_holds);
  // After a UFFDIO_MOVE of `pages` pages from `from` to `to` (which held none) stopped with `counted` pages
  // reported moved: which pages are still at `from` (element i for page i; the first `counted` are not). From
  // the page tables of both ranges; where they cannot be read, by moving the rest one page at a time (a page
  // `to` holds already answers EEXIST). A hole of `from` counts as left behind: copying it copies zeros.
  std::vector<bool> LeftBehind(int uffd, std::byte* to, std::byte* from, std::size_t pages, std::size_t counted);
  // Puts the pages of [dst, dst + pages) that a failed move had moved (moved[i]) back at src.
  void MoveBack(int uffd, std::byte* dst, std::byte* src, const std::vector<bool>& moved);

  os::Os& os_;
  const MoveEngineOptions options_;
  int uffd_ = -1;
  pid_t owner_pid_ = 0;  // the process whose memory uffd_ names
  std::string uffd_reason_;

  struct Counters {
    std::atomic<std::uint64_t> uffd_moves{0}, uffd_bytes{0}, remap_moves{0}, remap_bytes{0}, copy_moves{0},
        copy_bytes{0}, uffd_busy_fallbacks{0}, uffd_other_fallbacks{0}, uffd_miscounts{0}, remap_fallbacks{0},
        failures{0};
  };
  mutable Counters c_;
  std::atomic<std::uint64_t> remaps_left_;
};

}  // namespace mova::compactor

#endif  // MOVA_COMPACTOR_MOVE_ENGINE_H_
