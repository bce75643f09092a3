// alloc/arena.h — the arena: one reserved range of address space, cut into 2 MiB regions, handing out page
// runs for blocks and huge objects and giving freed pages back to the OS.
//
// Types: Arena, ArenaOptions, PageRun. A page is named by its index from the arena base (arena page index).
// Placement is address-ordered first fit, so live runs gather in low regions and high regions empty out; a run
// of present pages (Backing::kPopulated) goes first to the lowest run of as many dirty pages, which costs no
// system call, where a clean run taken while dirty ones sit unused costs a populate now and a discard later.
// Freed pages are discarded (MADV_DONTNEED) at once when the decay delay is zero; otherwise they stay
// resident as "dirty" pages that a later allocation reuses without a fault or syscall. Each decay interval,
// as many dirty pages as were never reused during it (the low-water mark of the dirty count: pages a churning
// workload did not need) are discarded, from the top of the arena down, where first fit reuses last; so an
// unused freed page goes back within two intervals (and the steps below), and pages that churn keeps reusing
// are not discarded only to be populated again. An allocation or free that finds the purge due discards one
// step of it (kPurgeStep pages, ~0.1-0.5 ms) and leaves the rest to the calls of the next milliseconds: one
// call discarding a whole interval's pages took 2-7 ms (churn-ops, 1 s decay), a pause in whatever allocation
// met it; PurgeDirty discards the whole of it at once. Dirty pages also go when the memory limit needs them
// and by PurgeDirty(force). (Looked for by allocations and frees at most every delay/8.)
// A purge discards few, large runs: each maximal run of free pages (dirty or not; a free clean page has nothing
// to discard, so including it costs nothing) that holds a dirty page, merged across region boundaries, is one
// range, and all the ranges of a purge go to one Os::DiscardRanges — process_madvise discards up to 1024 ranges
// with one TLB flush, where a MADV_DONTNEED call costs 6–20 µs here (its flush) but ~0.3–0.5 µs per page in
// long runs or batches.
// With a decay delay, an allocation that must populate fresh pages populates up to kPopulateAhead free pages
// more in the same Os::PopulateRanges call (left dirty, for the next blocks): those right after its run, then
// the clean pages of the next free runs long enough for a run of its length, in address order (a class makes
// blocks of one length). A growing class so makes one call per kPopulateAhead pages, not one per block, and
// one call populates a batch of one-page holes at ~1.1 µs a page, where a first touch faults at 10-15 µs.
// Such an allocation also gives back, at once, the free runs too short for it that hold dirty pages, when
// those pages exceed 1/kShortDirtyShare of the pages in use: churn that shifts to longer runs would otherwise
// keep them resident until the decay purge, on top of the pages it populates (churn-ops: 16-20 MiB at peak).
// Moving runs: the arena owns the MoveEngine for its range (UFFDIO_MOVE needs the whole range registered
// once); MoveRun moves a run's pages into a run allocated as BackingForMove says (empty for a zero-copy move,
// populated for a copy), and FreeMovedOut gives back a
// run whose pages a move took away.
// Invariants (under mu_): for each region, used and dirty are disjoint, used_count == popcount(used);
//   used_pages_ == Σ used_count; dirty_pages_ == Σ popcount(dirty); used_pages_ <= limit_pages_;
//   bit r of dirty_regions_ is set iff region r has a dirty page; low_water_ <= dirty_pages_.
// Locks: mu_ is a leaf lock (Os calls are made under it).
#ifndef MOVA_ALLOC_ARENA_H_
#define MOVA_ALLOC_ARENA_H_

#include <unistd.h>

#include <array>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "alloc/region_shadow.h"
#include "base/mutex.h"
#include "compactor/move_engine.h"
#include "mova/units.h"
#include "os/os.h"

namespace mova::alloc {

inline constexpr std::size_t kRegionSize = 2 * 1024 * 1024;
inline constexpr std::size_t kPagesPerRegion = kRegionSize / kPageSize;

struct PageRun {
  std::uint32_t first = 0;  // arena page index
  std::uint32_t count = 0;  // pages
};

struct ArenaOptions {
  Bytes capacity{std::size_t{64} << 30};     // address space reserved (rounded up to whole regions)
  Bytes memory_limit{~std::size_t{0}};       // most bytes in use at once; beyond it allocation fails
  std::chrono::milliseconds decay{0};        // how long freed pages stay resident before being discarded
                                             // (the memory limit counts them: they go at once when it needs them)
  compactor::MoveEngineOptions moves;        // which ways MoveRun may use
  // Register the whole range for missing-page faults (Os::RegisterMissingFaults) and populate through it, so
  // that a touch of a page not in use reaches a handler (alloc/stale_touch_watch.h) instead of reading zeros.
  // Moves then copy (KeepMoveSources). Where the kernel refuses, the arena works without (fault_uffd() -1).
  bool watch_missing_pages = false;
};

// What a run handed out holds.
enum class Backing {
  kPopulated,  // present pages: ready to be written
  kEmpty,      // no pages at all: the destination of a move (MoveRun)
};

class Arena {
 public:
  static absl::StatusOr<std::unique_ptr<Arena>> Create(os::Os& os, const ArenaOptions& options);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A run of `n` present pages (populated now, unless they were still resident as dirty pages).
  // ResourceExhausted when the memory limit, the address space or the OS's memory is exhausted; nothing is
  // allocated then.
  absl::StatusOr<PageRun> Allocate(Pages n);
  // Like Allocate, but only in regions below `limit_region` and never growing the arena: where the
  // defragmenter moves a block from region `limit_region` or above. NotFound when there is no such room.
  absl::StatusOr<PageRun> AllocateBelow(Pages n, std::uint32_t limit_region, Backing backing = Backing::kPopulated);
  // Gives a run back; its pages are discarded now or after the decay delay.
  void Free(PageRun run);
  // Gives back a run whose pages a move took away (MoveOutcome::source_vacated): nothing to discard.
  void FreeMovedOut(PageRun run);
  // Moves the pages of `src` into `dst` (same length, dst allocated with Backing::kEmpty) by the engine's best
  // way. On error src is intact and dst may hold pages (free it with Free). The first `keep_head` bytes of src
  // (at most kMaxKeptHead) stay readable at src after a move that took its first page: they are written back
  // (one fresh page, given back with src's run) — for a driver whose descriptor lives in the block's first bytes
  // and that the framework still works on after Migrate.
  static constexpr std::size_t kMaxKeptHead = 64;
  // `dst_backing` says how dst was allocated: BackingForMove's answer for the run.
  absl::StatusOr<compactor::MoveOutcome> MoveRun(PageRun dst, PageRun src, compactor::MoveKind kind,
                                                 Bytes keep_head = Bytes(0), Backing dst_backing = Backing::kEmpty);
  // How to allocate the destination of a move of `n` pages of `kind`: empty where the engine would move the
  // pages without copying, populated where it would copy (then dirty pages are reused and clean ones populated
  // ahead, instead of discarding the one and populating the other page by page).
  Backing BackingForMove(Pages n, compactor::MoveKind kind) const {
    if (keep_move_sources_.load(std::memory_order_acquire)) return Backing::kPopulated;
    return mover_->ZeroCopy(ToBytes(n), kind) ? Backing::kEmpty : Backing::kPopulated;
  }
  // From now on every move copies and leaves its source whole (read sections may be reading it): moves into
  // runs BackingForMove allocates are memcpy's. For good; callers order this before the moves it must cover.
  void KeepMoveSources() { keep_move_sources_.store(true, std::memory_order_release); }
  // The userfaultfd a touch of a missing page of this arena is reported on (ArenaOptions::watch_missing_pages),
  // or -1: none, or a forked child (whose range is no longer registered).
  int fault_uffd() const { return fault_pid_ == getpid() ? fault_uffd_ : -1; }
  compactor::MoveEngineStats move_stats() const { return mover_->stats(); }
  const compactor::MoveEngine& mover() const { return *mover_; }
  // Pages in use in each region touched so far, by region index.
  std::vector<std::uint32_t> RegionUsage() const;
  // Discards dirty pages: all of them if `force`, else, once a decay interval has passed, those that were not
  // reused during it.
  void PurgeDirty(bool force);
  // While one of these lives, freed pages stay dirty even with a decay delay of zero, and its end discards
  // every dirty page at once: compact() and defragment() free many scattered runs, which then go to the OS in
  // a few batched calls (Os::DiscardRanges) instead of one call each. With a deadline (a budgeted call), its
  // end discards from the top down, kDiscardChunk pages at a time, until none is left or the deadline has
  // passed (at least one chunk): discarding is part of a compaction's work, and here it costs 2–3 µs a page
  // for the scattered runs compaction frees (measured: a 1 ms compact() step freed ~1,000 pages, and
  // discarding them all took 3.3 ms more). The rest stays dirty for the next call.
  class DeferDiscards {
   public:
    explicit DeferDiscards(Arena& arena, absl::Time deadline = absl::InfiniteFuture());
    ~DeferDiscards() { (void)Finish(); }
    DeferDiscards(const DeferDiscards&) = delete;
    DeferDiscards& operator=(const DeferDiscards&) = delete;
    // Ends the deferral now (the destructor then does nothing more): true when no dirty page is left, or
    // when the last discard failed (those pages stay dirty, counted; nothing more would go now). With a
    // deadline already passed, a call that `made_progress` otherwise (it moved something) leaves every page
    // to the next call; one that did not discards one chunk, so that each call gets somewhere. Before the
    // deadline, chunks go until the next one, by the time the last one took, would end past it.
    bool Finish(bool made_progress = false);

   private:
    Arena& arena_;
    const absl::Time deadline_;
    bool finished_ = false;
  };
  static constexpr std::uint64_t kDiscardChunk = 64;
  // The decay purge's step, made by an allocation or a free (PurgeLocked): at least this many pages, whole
  // regions from the top down, in one Os call; and the time until the next step.
  static constexpr std::uint64_t kPurgeStep = 256;
  static constexpr std::chrono::milliseconds kPurgeStepSpacing{1};
  // Free pages populated beyond an allocation's own when it must populate (with a decay delay only), in at most
  // kAheadRuns runs besides the allocation's own.
  static constexpr std::uint32_t kPopulateAhead = 128;
  static constexpr std::size_t kAheadRuns = 64;
  // Dirty runs too short for an allocation that must populate go back at once when they hold more than
  // 1/kShortDirtyShare of the pages in use (with a decay delay only).
  static constexpr std::uint64_t kShortDirtyShare = 32;
  // Puts every region that is fully in use, and was not collapsed since it last filled, on transparent huge
  // pages (Os::CollapseHugepages: no mapping changes). The Os calls run without the arena lock (about 1.5 ms
  // per region here). A region that loses a page is collapsed again only after it fills again.
  struct CollapseResult {
    std::uint64_t collapsed = 0;
    std::uint64_t failed = 0;
  };
  CollapseResult CollapseFullRegions();

  // Another component's memory that describes the arena region by region, `per_region` bytes each from
  // `base` (region_shadow.h; the pool attaches its page map): its pages that describe only free regions are
  // given back with the arena's discards, in the same Os call. Once, before the first run is handed out:
  // FailedPrecondition after that or on a second call; InvalidArgument for a base or size RegionShadow refuses.
  absl::Status AttachRegionShadow(std::byte* base, Bytes per_region);

  std::byte* base() const { return base_; }
  std::byte* PageAddress(std::uint32_t page) const { return base_ + (std::size_t{page} << kPageShift); }
  Bytes capacity() const { return ToBytes(Pages(std::size_t{num_regions_max_} * kPagesPerRegion)); }

  struct Stats {
    std::uint64_t used_pages = 0;        // pages in runs handed out
    std::uint64_t dirty_pages = 0;       // free pages still resident (decay)
    std::uint64_t regions_touched = 0;   // regions ever used (high-water mark)
    std::uint64_t regions_in_use = 0;    // regions with at least one used page
    std::uint64_t pages_discarded = 0;   // cumulative pages given back
    std::uint64_t discard_failures = 0;  // runs whose discard failed (their pages stay dirty)
    std::uint64_t discard_calls = 0;     // system calls that discarded pages, cumulative (failed ones included)
    std::uint64_t discard_runs = 0;      // runs of pages discarded, cumulative (a call discards up to 1024)
    std::uint64_t populate_calls = 0;    // Os::Populate calls, cumulative
    std::uint64_t regions_collapsed = 0;   // cumulative CollapseFullRegions successes
    std::uint64_t collapse_failures = 0;
    std::uint64_t shadow_bytes = 0;        // the attached region shadow's resident units (region_shadow.h)
    std::uint64_t shadow_units_given_back = 0;  // cumulative
  };
  Stats stats() const;

 private:
  struct Region {
    std::bitset<kPagesPerRegion> used;
    std::bitset<kPagesPerRegion> dirty;
    std::uint32_t used_count = 0;  // == used.count(), kept so placement skips full regions cheaply
    bool collapsed = false;        // on huge pages since it last filled (cleared when a page is freed)
  };
  Arena(os::Os& os, std::byte* base, std::uint32_t num_regions_max, const ArenaOptions& options);

  // First fit of n <= kPagesPerRegion pages inside one region; returns the first page or -1.
  static int FindRun(const Region& r, std::size_t n);
  // First fit among regions [0, limit_region), growing the arena if `may_grow`.
  bool FindPlacement(std::size_t n, std::uint32_t limit_region, bool may_grow, std::uint32_t* first)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<PageRun> AllocateLocked(Pages n, std::uint32_t limit_region, bool may_grow, Backing backing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkUsed(std::uint32_t first, std::size_t n, bool used) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsDirty(std::uint32_t page) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lowest run of n dirty pages below `limit_region` (n <= kPagesPerRegion), or false.
  bool FindDirtyRun(Pages n, std::uint32_t limit_region, std::uint32_t* first) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends to `out` the clean pages of the free runs of at least n pages from page `from` on, in address order,
  // up to `budget` pages and kAheadRuns runs in all: the runs first fit gives the next allocations of n pages.
  void CleanRunsAhead(std::uint32_t from, Pages n, std::uint32_t budget, std::vector<PageRun>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Discards the free runs shorter than n pages that hold dirty pages, when those pages are more than
  // 1/kShortDirtyShare of the pages in use: dirty pages an allocation of n pages passed over.
  void DiscardShortDirtyRuns(Pages n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls f(p, q) for each maximal run [p, q) of pages in [first, end) that are not dirty, while f is true.
  template <typename F>
  void ForEachCleanRun(std::uint32_t first, std::uint32_t end, F f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (std::uint32_t p = first; p < end;) {
      if (IsDirty(p)) {
        ++p;
        continue;
      }
      std::uint32_t q = p;
      while (q < end && !IsDirty(q)) ++q;
      if (!f(p, q)) return;
      p = q;
    }
  }
  // Marks pages [first, end) of one region dirty (they are free).
  void MarkDirty(std::uint32_t first, std::uint32_t end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Discards at least `pages` dirty pages (or all), whole regions' worth from the top of the arena down;
  // returns how many it discarded (fewer where discards failed: those stay dirty, counted).
  std::uint64_t DiscardTopDirty(std::uint64_t pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Page `page`, dirty, is dirty no more (reused or discarded): counts, low-water mark and region bit follow.
  void ClearDirty(std::uint32_t page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RegionHasDirty(std::uint32_t ri) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (dirty_regions_[ri / 64] >> (ri % 64) & 1) != 0;
  }
  // Discards free runs (their pages dirty or clean, none used), as few Os calls as the OS allows
  // (Os::DiscardRanges): the dirty pages of each run discarded become clean; a run whose discard failed stays
  // as it was, the failure is counted, and the runs after it are still tried. Returns the first failure.
  // With kWithRuns (the units of the runs' regions) or kAlways (of every region), the region shadow's idle
  // units go in the same calls; a unit whose discard failed stays resident and is counted, but is not the
  // returned failure.
  enum class ShadowUnits { kNone, kWithRuns, kAlways };
  absl::Status DiscardFreeRuns(std::span<const PageRun> runs, ShadowUnits shadow = ShadowUnits::kWithRuns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Discards the dirty pages of regions [first_region, end_region), in maximal free runs merged across regions.
  void DiscardDirtyRegions(std::uint32_t first_region, std::uint32_t end_region) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Discards dirty pages: all if `force` (or without a decay delay); else, once a decay interval has passed,
  // those it did not reuse (the purge's debt) — all at once if `whole`, else one step of about kPurgeStep pages
  // now and the next a kPurgeStepSpacing later (by the next call that comes).
  void PurgeLocked(bool force, bool whole = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  os::Os& os_;
  std::byte* const base_;
  const std::uint32_t num_regions_max_;
  const std::uint64_t limit_pages_;
  const std::chrono::milliseconds decay_;
  std::unique_ptr<compactor::MoveEngine> mover_;
  std::atomic<bool> keep_move_sources_{false};  // KeepMoveSources
  int fault_uffd_ = -1;   // watch_missing_pages: registered for missing faults, opened by fault_pid_
  pid_t fault_pid_ = 0;

  mutable Mutex mu_;
  std::vector<Region> regions_ ABSL_GUARDED_BY(mu_);
  std::uint64_t used_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t dirty_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t pages_discarded_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t discard_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t discard_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t discard_runs_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t populate_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::uint64_t> dirty_regions_ ABSL_GUARDED_BY(mu_);  // bit per region: has dirty pages
  RegionShadow shadow_ ABSL_GUARDED_BY(mu_);
  std::uint64_t shadow_units_given_back_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t regions_collapsed_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t collapse_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point next_purge_scan_ ABSL_GUARDED_BY(mu_){};  // see PurgeLocked
  std::chrono::steady_clock::time_point interval_start_ ABSL_GUARDED_BY(mu_){};  // the decay interval's start
  std::uint64_t low_water_ ABSL_GUARDED_BY(mu_) = 0;  // fewest dirty pages since interval_start_
  std::uint64_t purge_debt_ ABSL_GUARDED_BY(mu_) = 0;  // pages the last interval found unused, still dirty
  int deferring_ ABSL_GUARDED_BY(mu_) = 0;  // DeferDiscards alive
  // How long the last chunk of a deferred discard took: a budgeted Finish begins no chunk that would not fit.
  absl::Duration last_discard_chunk_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_ARENA_H_
