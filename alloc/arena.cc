// alloc/arena.cc — see arena.h.
#include "alloc/arena.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "handles/entry_word.h"

namespace mova::alloc {

namespace {

// Calls f(start, stop) for each maximal run [start, stop) of set bits of `bits` from position `from` on (a run
// that `from` is inside of starts at `from`), in order, until f returns false. Jumps from run to run
// (libstdc++'s _Find_first / _Find_next): O(runs), not O(pages).
template <typename F>
void ForEachSetRun(const std::bitset<kPagesPerRegion>& bits, std::size_t from, F f) {
  const std::bitset<kPagesPerRegion> clear = ~bits;
  std::size_t start = from == 0 ? bits._Find_first() : (bits[from] ? from : bits._Find_next(from));
  while (start < kPagesPerRegion) {
    const std::size_t stop = clear._Find_next(start);  // the next clear bit, or kPagesPerRegion
    if (!f(start, stop) || stop >= kPagesPerRegion) return;
    start = bits._Find_next(stop);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Arena>> Arena::Create(os::Os& os, const ArenaOptions& options) {
  const std::uint64_t regions = (options.capacity.value() + kRegionSize - 1) / kRegionSize;
  if (regions == 0) return absl::InvalidArgumentError("arena capacity must be at least one byte");
  if (regions * kRegionSize > handles::kMaxArenaBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("arena capacity %u exceeds the %u bytes a handle can address",
                                                      options.capacity.value(), handles::kMaxArenaBytes));
  }
  absl::StatusOr<std::byte*> mem = os.Reserve(Bytes(regions * kRegionSize), Bytes(kRegionSize));
  if (!mem.ok()) return mem.status();
  auto arena = std::unique_ptr<Arena>(new Arena(os, *mem, static_cast<std::uint32_t>(regions), options));
  if (options.watch_missing_pages) {
    // Before any page is populated: from the registration on, populating goes through the descriptor.
    absl::StatusOr<int> fd = os.OpenFaultUserfaultfd();
    absl::Status s = fd.ok() ? os.RegisterMissingFaults(*fd, *mem, arena->capacity()) : fd.status();
    if (s.ok()) {
      arena->fault_uffd_ = *fd;
      arena->fault_pid_ = getpid();
      arena->KeepMoveSources();  // a move must never leave its source without pages
    } else if (fd.ok()) {
      os.CloseFaultUserfaultfd(*fd);
    }
  }
  return arena;
}

Arena::Arena(os::Os& os, std::byte* base, std::uint32_t num_regions_max, const ArenaOptions& options)
    : os_(os),
      base_(base),
      num_regions_max_(num_regions_max),
      limit_pages_(options.memory_limit.value() / kPageSize),
      decay_(options.decay),
      mover_(std::make_unique<compactor::MoveEngine>(os, base, capacity(), options.moves)) {}

Arena::~Arena() {
  (void)os_.Unreserve(base_, capacity());
  if (fault_uffd() >= 0) os_.CloseFaultUserfaultfd(fault_uffd_);
}

int Arena::FindRun(const Region& r, std::size_t n) {
  int found = -1;
  ForEachSetRun(~r.used, 0, [&](std::size_t start, std::size_t stop) {
    if (stop - start < n) return true;
    found = static_cast<int>(start);
    return false;
  });
  return found;
}

bool Arena::FindPlacement(std::size_t n, std::uint32_t limit_region, bool may_grow, std::uint32_t* first) {
  if (n <= kPagesPerRegion) {
    const std::size_t scan = std::min<std::size_t>(regions_.size(), limit_region);
    for (std::size_t ri = 0; ri < scan; ++ri) {
      const Region& r = regions_[ri];
      if (kPagesPerRegion - r.used_count < n) continue;
      if (int p = FindRun(r, n); p >= 0) {
        *first = static_cast<std::uint32_t>(ri * kPagesPerRegion + p);
        return true;
      }
    }
    if (!may_grow || regions_.size() == num_regions_max_ || regions_.size() >= limit_region) return false;
    *first = static_cast<std::uint32_t>(regions_.size() * kPagesPerRegion);
    return true;
  }
  // A run over several regions: whole free regions, the last one possibly in part; the run may extend past
  // the regions touched so far if the arena may grow, else it must end below `limit_region`.
  const std::size_t whole = n / kPagesPerRegion, tail = n % kPagesPerRegion;
  const std::size_t span = whole + (tail ? 1 : 0);
  const std::size_t end_region = may_grow ? num_regions_max_ : std::min<std::size_t>(limit_region, regions_.size());
  for (std::size_t start = 0; start + span <= end_region; ++start) {
    bool fits = true;
    for (std::size_t k = 0; k < span && fits; ++k) {
      const std::size_t ri = start + k;
      if (ri >= regions_.size()) break;  // untouched regions are free
      const Region& r = regions_[ri];
      if (k < whole) {
        fits = r.used_count == 0;
      } else {
        for (std::size_t i = 0; i < tail && fits; ++i) fits = !r.used[i];
      }
    }
    if (fits) {
      *first = static_cast<std::uint32_t>(start * kPagesPerRegion);
      return true;
    }
    if (start >= regions_.size()) break;
  }
  return false;
}

absl::Status Arena::AttachRegionShadow(std::byte* base, Bytes per_region) {
  if (absl::Status s = RegionShadow::Check(base, per_region); !s.ok()) return s;
  MutexLock lock(&mu_);
  if (shadow_.attached() || !regions_.empty()) {
    return absl::FailedPreconditionError("a region shadow is attached once, before the arena hands out a run");
  }
  shadow_ = RegionShadow(base, per_region, num_regions_max_);
  return absl::OkStatus();
}

void Arena::MarkUsed(std::uint32_t first, std::size_t n, bool used) {
  if (used && n > 0) shadow_.MarkRegions(first / kPagesPerRegion, (first + n - 1) / kPagesPerRegion);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t page = first + i;
    Region& r = regions_[page / kPagesPerRegion];
    const std::size_t bit = page % kPagesPerRegion;
    if (used) {
      if (r.dirty[bit]) ClearDirty(static_cast<std::uint32_t>(page));
      r.used[bit] = true;
      ++r.used_count;
    } else {
      r.used[bit] = false;
      --r.used_count;
      r.collapsed = false;
    }
  }
  if (used) {
    used_pages_ += n;
  } else {
    used_pages_ -= n;
  }
}

absl::StatusOr<PageRun> Arena::Allocate(Pages n) {
  if (n.value() == 0) return absl::InvalidArgumentError("page run of zero pages");
  MutexLock lock(&mu_);
  return AllocateLocked(n, num_regions_max_, /*may_grow=*/true, Backing::kPopulated);
}

absl::StatusOr<PageRun> Arena::AllocateBelow(Pages n, std::uint32_t limit_region, Backing backing) {
  if (n.value() == 0) return absl::InvalidArgumentError("page run of zero pages");
  MutexLock lock(&mu_);
  return AllocateLocked(n, limit_region, /*may_grow=*/false, backing);
}

absl::StatusOr<compactor::MoveOutcome> Arena::MoveRun(PageRun dst, PageRun src, compactor::MoveKind kind,
                                                      Bytes keep_head, Backing dst_backing) {
  if (dst.count != src.count) return absl::InvalidArgumentError("MoveRun: runs of different lengths");
  if (keep_head.value() > kMaxKeptHead) return absl::InvalidArgumentError("MoveRun: keep_head over kMaxKeptHead");
  std::byte* const from = PageAddress(src.first);
  alignas(std::max_align_t) std::byte head[kMaxKeptHead];
  std::memcpy(head, from, keep_head.value());
  absl::StatusOr<compactor::MoveOutcome> moved =
      mover_->Move(PageAddress(dst.first), from, ToBytes(Pages(src.count)), kind,
                   dst_backing == Backing::kPopulated ? compactor::Destination::kPresent : compactor::Destination::kEmpty);
  if (moved.ok()) std::memcpy(from, head, keep_head.value());
  return moved;
}

std::vector<std::uint32_t> Arena::RegionUsage() const {
  MutexLock lock(&mu_);
  std::vector<std::uint32_t> used(regions_.size());
  for (std::size_t i = 0; i < regions_.size(); ++i) used[i] = regions_[i].used_count;
  return used;
}

absl::StatusOr<PageRun> Arena::AllocateLocked(Pages n, std::uint32_t limit_region, bool may_grow, Backing backing) {
  PurgeLocked(/*force=*/false);
  if (used_pages_ + n.value() > limit_pages_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory limit reached: %u pages in use, %u more asked, limit %u", used_pages_, n.value(), limit_pages_));
  }
  // Dirty pages are resident too: the limit gets them back before they would take it over.
  if (used_pages_ + dirty_pages_ + n.value() > limit_pages_) PurgeLocked(/*force=*/true);
  std::uint32_t first;
  // Resident pages first: a run of dirty pages costs no system call, and a clean run taken while dirty ones
  // sit unused costs a populate now and a discard later.
  const bool reuse = backing == Backing::kPopulated && FindDirtyRun(n, limit_region, &first);
  if (!reuse && !FindPlacement(n.value(), limit_region, may_grow, &first)) {
    if (!may_grow) return absl::NotFoundError(absl::StrFormat("no run of %u pages below region %u", n.value(), limit_region));
    return absl::ResourceExhaustedError(absl::StrFormat(
        "arena address space exhausted: no run of %u pages in %u bytes", n.value(), capacity().value()));
  }
  const std::size_t last_region = (first + n.value() - 1) / kPagesPerRegion;
  const std::size_t old_regions = regions_.size();
  if (regions_.size() <= last_region) {
    regions_.resize(last_region + 1);
    dirty_regions_.resize((regions_.size() + 63) / 64);
  }
  const std::uint32_t end = first + static_cast<std::uint32_t>(n.value());
  if (backing == Backing::kEmpty) {
    // A move's destination: no page may be present, so the dirty ones are discarded now.
    std::vector<PageRun> dirty;
    for (std::uint32_t p = first; p < end; ++p) {
      if (!IsDirty(p)) continue;
      std::uint32_t q = p;
      while (q < end && IsDirty(q)) ++q;
      dirty.push_back(PageRun{p, q - p});
      p = q;
    }
    if (absl::Status s = DiscardFreeRuns(dirty, ShadowUnits::kNone); !s.ok()) return s;
    MarkUsed(first, n.value(), true);
    return PageRun{first, static_cast<std::uint32_t>(n.value())};
  }
  // Populate the pages that are not resident already (dirty pages are: reusing them costs no syscall). With a
  // decay delay, free clean pages are populated ahead in the same call and left dirty, for the next
  // allocations: those right after the run, then those of the next free runs that could hold a run as long as
  // this one (a class makes blocks of one length), in address order, as first fit will take them; never past
  // the memory limit. One range from the run's first clean page to its last: populating a page that is present
  // already (dirty) only walks its page table, which is cheaper here than another range.
  std::uint32_t clean_first = end, clean_end = first;
  ForEachCleanRun(first, end, [&](std::uint32_t p, std::uint32_t q) {
    clean_first = std::min(clean_first, p);
    clean_end = q;
    return true;
  });
  std::uint32_t ahead_end = end;
  std::vector<PageRun> ahead;  // clean runs of later free runs, populated in the same call
  const bool populate = clean_first < clean_end;
  if (populate && decay_.count() != 0) {
    // Dirty runs too short for this allocation were passed over; once they hold more than 1/32 of the pages in
    // use they go back now rather than after the decay delay (churn-ops: 16-20 MiB of them at its peak).
    if (dirty_pages_ * kShortDirtyShare > used_pages_) DiscardShortDirtyRuns(n);
    const std::uint64_t room = limit_pages_ - std::min(limit_pages_, used_pages_ + dirty_pages_ + n.value());
    std::uint32_t budget = static_cast<std::uint32_t>(std::min<std::uint64_t>(kPopulateAhead, room));
    const std::uint32_t region_end = static_cast<std::uint32_t>((last_region + 1) * kPagesPerRegion);
    const Region& r = regions_[last_region];
    while (ahead_end < region_end && ahead_end - end < budget && !r.used[ahead_end % kPagesPerRegion] &&
           !r.dirty[ahead_end % kPagesPerRegion]) {
      ++ahead_end;
    }
    clean_end = ahead_end;  // the pages ahead are clean: the same range populates them
    budget -= ahead_end - end;
    // The watch populates through its descriptor, a range a call: it takes no runs beyond this one.
    if (budget != 0 && fault_uffd() < 0) CleanRunsAhead(ahead_end, n, budget, &ahead);
  }
  absl::Status failure;
  os::RangeProgress progress;
  std::vector<os::PageSpan> spans;
  if (populate) {
    spans.reserve(1 + ahead.size());
    spans.push_back(os::PageSpan{PageAddress(clean_first), ToBytes(Pages(clean_end - clean_first))});
    for (const PageRun& a : ahead) spans.push_back(os::PageSpan{PageAddress(a.first), ToBytes(Pages(a.count))});
    if (fault_uffd() >= 0) {
      ++populate_calls_;
      failure = os_.PopulateRegistered(fault_uffd_, spans[0].addr, spans[0].size);
    } else {
      failure = os_.PopulateRanges(spans, &progress);
      populate_calls_ += progress.calls;
    }
  }
  if (!failure.ok()) {
    // Give back what this call may have populated (in part, perhaps): its clean pages, not the dirty ones.
    std::vector<os::PageSpan> populated;
    ForEachCleanRun(clean_first, clean_end, [&](std::uint32_t p, std::uint32_t q) {
      populated.push_back(os::PageSpan{PageAddress(p), ToBytes(Pages(q - p))});
      return true;
    });
    populated.insert(populated.end(), spans.begin() + 1, spans.end());
    os::RangeProgress discarded;
    (void)os_.DiscardRanges(populated, &discarded);
    discard_calls_ += discarded.calls;
    regions_.resize(old_regions);
    dirty_regions_.resize((regions_.size() + 63) / 64);
    return failure;
  }
  MarkUsed(first, n.value(), true);
  if (ahead_end > end) MarkDirty(end, ahead_end);
  for (const PageRun& a : ahead) MarkDirty(a.first, a.first + a.count);
  return PageRun{first, static_cast<std::uint32_t>(n.value())};
}

bool Arena::FindDirtyRun(Pages n, std::uint32_t limit_region, std::uint32_t* first) const {
  if (dirty_pages_ < n.value() || n.value() > kPagesPerRegion) return false;
  const std::size_t scan = std::min<std::size_t>(regions_.size(), limit_region);
  for (std::size_t w = 0; w < dirty_regions_.size(); ++w) {
    for (std::uint64_t bits = dirty_regions_[w]; bits != 0; bits &= bits - 1) {
      const std::size_t ri = w * 64 + static_cast<std::size_t>(std::countr_zero(bits));
      if (ri >= scan) return false;
      bool found = false;
      ForEachSetRun(regions_[ri].dirty, 0, [&](std::size_t start, std::size_t stop) {
        if (stop - start < n.value()) return true;
        *first = static_cast<std::uint32_t>(ri * kPagesPerRegion + start);
        found = true;
        return false;
      });
      if (found) return true;
    }
  }
  return false;
}

void Arena::CleanRunsAhead(std::uint32_t from, Pages n, std::uint32_t budget, std::vector<PageRun>* out) {
  for (std::uint32_t ri = from / kPagesPerRegion; ri < regions_.size() && budget != 0; ++ri) {
    const Region& r = regions_[ri];
    if (kPagesPerRegion - r.used_count < n.value()) continue;
    const std::uint32_t base = ri * static_cast<std::uint32_t>(kPagesPerRegion);
    const std::size_t start_at = ri == from / kPagesPerRegion ? from % kPagesPerRegion : 0;
    ForEachSetRun(~r.used, start_at, [&](std::size_t start, std::size_t stop) {  // free runs
      if (budget == 0 || out->size() == kAheadRuns) return false;
      if (stop - start < n.value()) return true;
      ForEachCleanRun(base + static_cast<std::uint32_t>(start), base + static_cast<std::uint32_t>(stop),
                      [&](std::uint32_t p, std::uint32_t q) {
                        const std::uint32_t take = std::min(budget, q - p);
                        out->push_back(PageRun{p, take});
                        budget -= take;
                        return budget != 0 && out->size() < kAheadRuns;
                      });
      return true;
    });
    if (out->size() == kAheadRuns) return;
  }
}

void Arena::DiscardShortDirtyRuns(Pages n) {
  std::vector<PageRun> runs;
  std::uint64_t dirty = 0;
  for (std::size_t w = 0; w < dirty_regions_.size(); ++w) {
    for (std::uint64_t bits = dirty_regions_[w]; bits != 0; bits &= bits - 1) {
      const std::uint32_t ri = static_cast<std::uint32_t>(w * 64 + std::countr_zero(bits));
      const Region& r = regions_[ri];
      const std::uint32_t base = ri * static_cast<std::uint32_t>(kPagesPerRegion);
      ForEachSetRun(~r.used, 0, [&](std::size_t start, std::size_t stop) {  // free runs
        if (stop - start >= n.value()) return true;
        const std::size_t d = ((r.dirty >> start) << (kPagesPerRegion - (stop - start))).count();
        if (d != 0) {
          runs.push_back(PageRun{base + static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(stop - start)});
          dirty += d;
        }
        return true;
      });
    }
  }
  if (dirty * kShortDirtyShare > used_pages_) (void)DiscardFreeRuns(runs);  // a failed run stays dirty, counted
}

bool Arena::IsDirty(std::uint32_t page) const {
  const std::size_t ri = page / kPagesPerRegion;
  return ri < regions_.size() && regions_[ri].dirty[page % kPagesPerRegion];
}

void Arena::ClearDirty(std::uint32_t page) {
  const std::uint32_t ri = page / kPagesPerRegion;
  Region& r = regions_[ri];
  r.dirty[page % kPagesPerRegion] = false;
  --dirty_pages_;
  low_water_ = std::min(low_water_, dirty_pages_);
  if (r.dirty.none()) dirty_regions_[ri / 64] &= ~(std::uint64_t{1} << (ri % 64));
}

void Arena::MarkDirty(std::uint32_t first, std::uint32_t end) {
  const std::uint32_t ri = first / kPagesPerRegion;
  Region& r = regions_[ri];
  dirty_regions_[ri / 64] |= std::uint64_t{1} << (ri % 64);
  for (std::uint32_t p = first; p < end; ++p) r.dirty[p % kPagesPerRegion] = true;
  dirty_pages_ += end - first;
}

void Arena::Free(PageRun run) {
  MutexLock lock(&mu_);
  MarkUsed(run.first, run.count, false);
  const std::uint32_t end = run.first + run.count;
  for (std::uint32_t p = run.first; p < end;) {  // region by region
    const std::uint32_t q = std::min<std::uint32_t>(end, (p / kPagesPerRegion + 1) * kPagesPerRegion);
    MarkDirty(p, q);
    p = q;
  }
  if (decay_.count() == 0 && deferring_ == 0) {
    // Only this run's regions have dirty pages: discard them now, without looking at the others.
    DiscardDirtyRegions(run.first / kPagesPerRegion, (end - 1) / kPagesPerRegion + 1);
  } else {
    PurgeLocked(/*force=*/false);
  }
}

void Arena::FreeMovedOut(PageRun run) {
  MutexLock lock(&mu_);
  MarkUsed(run.first, run.count, false);
  PurgeLocked(/*force=*/false);
}

void Arena::PurgeDirty(bool force) {
  MutexLock lock(&mu_);
  PurgeLocked(force, /*whole=*/true);
}

Arena::DeferDiscards::DeferDiscards(Arena& arena, absl::Time deadline) : arena_(arena), deadline_(deadline) {
  MutexLock lock(&arena_.mu_);
  ++arena_.deferring_;
}

bool Arena::DeferDiscards::Finish(bool made_progress) {
  MutexLock lock(&arena_.mu_);
  if (!finished_) {
    finished_ = true;
    if (--arena_.deferring_ == 0) {
      if (deadline_ == absl::InfiniteFuture()) {
        arena_.PurgeLocked(/*force=*/true);
      } else {
        // A chunk is begun only when one twice as long as the last would end by the deadline (or, for a call
        // that got nowhere else, once): the budget's overrun is the error of that guess, not a chunk (a chunk
        // of scattered pages took 0.2-0.3 ms, a 1 ms cycle ran 1.2-1.3; guessing the last chunk's time, cycles
        // that discarded to the end still ran 1.0-1.2 ms, chunks varying that much).
        bool progressed = made_progress;
        while (arena_.dirty_pages_ != 0) {
          const absl::Time begin = absl::Now();
          if (progressed && begin + 2 * arena_.last_discard_chunk_ >= deadline_) break;
          const std::uint64_t gone = arena_.DiscardTopDirty(std::min(kDiscardChunk, arena_.dirty_pages_));
          arena_.last_discard_chunk_ = absl::Now() - begin;
          progressed = true;
          // A chunk whose discards failed left its pages dirty (counted): the next chunks would too.
          if (gone == 0) return true;
        }
      }
    }
  }
  return arena_.dirty_pages_ == 0;
}

void Arena::PurgeLocked(bool force, bool whole) {
  if (!force && deferring_ > 0) return;
  if (force || decay_.count() == 0) {
    if (dirty_pages_ != 0) {
      DiscardTopDirty(dirty_pages_);
    } else if (force) {
      (void)DiscardFreeRuns({}, ShadowUnits::kAlways);  // regions emptied by moves leave no page to discard
    }
    purge_debt_ = 0;
    return;
  }
  // Look at the clock at most every decay/8 (every kPurgeStepSpacing while a purge is under way), so a free
  // costs O(1).
  const auto now = std::chrono::steady_clock::now();
  if (now < next_purge_scan_) return;
  next_purge_scan_ = now + decay_ / 8;
  if (now - interval_start_ >= decay_) {
    // A decay interval has passed: the pages that stayed dirty all through it were not needed. (What the
    // last purge left undone is in this count too: those pages stayed dirty all along.)
    purge_debt_ = std::min(low_water_, dirty_pages_);
    interval_start_ = now;
    low_water_ = dirty_pages_;
  }
  purge_debt_ = std::min(purge_debt_, dirty_pages_);  // pages reused since are no longer dirty
  if (purge_debt_ == 0) return;
  const std::uint64_t gone = DiscardTopDirty(whole ? purge_debt_ : std::min(kPurgeStep, purge_debt_));
  // A step whose discards failed left its pages dirty (counted): the next steps would too.
  purge_debt_ = gone == 0 ? 0 : purge_debt_ - std::min(gone, purge_debt_);
  if (purge_debt_ != 0) next_purge_scan_ = now + kPurgeStepSpacing;
}

std::uint64_t Arena::DiscardTopDirty(std::uint64_t pages) {
  const std::uint64_t before = dirty_pages_;
  std::uint32_t cut = static_cast<std::uint32_t>(regions_.size());
  std::uint64_t found = 0;
  while (cut > 0 && found < pages) {
    --cut;
    if (RegionHasDirty(cut)) found += regions_[cut].dirty.count();
  }
  DiscardDirtyRegions(cut, static_cast<std::uint32_t>(regions_.size()));
  return before - dirty_pages_;
}

void Arena::DiscardDirtyRegions(std::uint32_t first_region, std::uint32_t end_region) {
  constexpr std::uint32_t kNone = ~0u;
  std::uint32_t run_first = kNone, run_end = 0;  // the merged run not yet listed
  std::vector<PageRun> runs;
  auto flush = [&] {
    if (run_first != kNone) runs.push_back(PageRun{run_first, run_end - run_first});
    run_first = kNone;
  };
  for (std::uint32_t ri = first_region; ri < end_region; ++ri) {
    if (!RegionHasDirty(ri)) {
      flush();
      continue;
    }
    const Region& r = regions_[ri];
    const std::uint32_t base = ri * static_cast<std::uint32_t>(kPagesPerRegion);
    ForEachSetRun(~r.used, 0, [&](std::size_t start, std::size_t stop) {  // free runs
      const std::size_t dirty = start == 0 ? r.dirty._Find_first() : r.dirty._Find_next(start - 1);
      if (dirty < stop) {  // the run holds a dirty page: discard all of it, merged with the one before
        if (run_first == kNone || run_end != base + start) {
          flush();
          run_first = base + static_cast<std::uint32_t>(start);
        }
        run_end = base + static_cast<std::uint32_t>(stop);
      }
      return true;
    });
  }
  flush();
  (void)DiscardFreeRuns(runs);  // a failed run stays dirty and is counted
}

absl::Status Arena::DiscardFreeRuns(std::span<const PageRun> runs, ShadowUnits shadow) {
  // The shadow's idle units ride along after the runs: spans [runs.size(), ...) are units[i - runs.size()].
  // kWithRuns looks only at the units of the runs' regions (a unit idles when its last region's last run is
  // freed, and that run's pages are discarded then or with a later purge, in a call like this one); kAlways
  // at those of every region touched (regions emptied by moves leave no page to discard).
  std::vector<std::uint32_t> units;
  const auto region_free = [this](std::uint32_t r) { return r >= regions_.size() || regions_[r].used_count == 0; };
  if (shadow == ShadowUnits::kWithRuns) {
    for (const PageRun& r : runs) {  // address-ordered
      shadow_.AddIdleUnits(r.first / kPagesPerRegion, (r.first + r.count - 1) / kPagesPerRegion, region_free, units);
    }
  } else if (shadow == ShadowUnits::kAlways && !regions_.empty()) {
    shadow_.AddIdleUnits(0, regions_.size() - 1, region_free, units);
  }
  std::vector<os::PageSpan> spans;
  spans.reserve(runs.size() + units.size());
  for (const PageRun& r : runs) spans.push_back(os::PageSpan{PageAddress(r.first), ToBytes(Pages(r.count))});
  for (const std::uint32_t u : units) spans.push_back(shadow_.SpanOf(u));
  absl::Status first_failure;
  for (std::size_t next = 0; next < spans.size();) {
    os::RangeProgress progress;
    const absl::Status s = os_.DiscardRanges(std::span<const os::PageSpan>(spans).subspan(next), &progress);
    discard_calls_ += progress.calls;
    for (std::size_t i = next; i < next + progress.ranges_done; ++i) {
      if (i >= runs.size()) {
        shadow_.GivenBack(units[i - runs.size()]);
        ++shadow_units_given_back_;
        continue;
      }
      ++discard_runs_;
      for (std::uint32_t p = runs[i].first; p < runs[i].first + runs[i].count; ++p) {
        if (!IsDirty(p)) continue;
        ClearDirty(p);
        ++pages_discarded_;
      }
    }
    next += progress.ranges_done;
    if (!s.ok()) {
      ++discard_failures_;  // this run's pages (or this unit) stay resident and are tried again later
      if (first_failure.ok() && next < runs.size()) first_failure = s;
      ++next;
    }
  }
  return first_failure;
}

Arena::CollapseResult Arena::CollapseFullRegions() {
  std::vector<std::uint32_t> full;
  {
    MutexLock lock(&mu_);
    for (std::uint32_t ri = 0; ri < regions_.size(); ++ri) {
      if (regions_[ri].used_count == kPagesPerRegion && !regions_[ri].collapsed) full.push_back(ri);
    }
  }
  CollapseResult r;
  for (std::uint32_t ri : full) {
    const absl::Status s = os_.CollapseHugepages(PageAddress(ri * kPagesPerRegion), Bytes(kRegionSize));
    MutexLock lock(&mu_);
    if (s.ok()) {
      regions_[ri].collapsed = regions_[ri].used_count == kPagesPerRegion;
      ++r.collapsed;
      ++regions_collapsed_;
    } else {
      ++r.failed;
      ++collapse_failures_;
      // No MADV_COLLAPSE in this kernel (before 6.1), or THP turned off: no use trying the other regions.
      if (absl::IsInvalidArgument(s) || absl::IsUnimplemented(s) || absl::IsPermissionDenied(s)) break;
    }
  }
  return r;
}

Arena::Stats Arena::stats() const {
  MutexLock lock(&mu_);
  Stats s;
  s.used_pages = used_pages_;
  s.dirty_pages = dirty_pages_;
  s.regions_touched = regions_.size();
  for (const Region& r : regions_) s.regions_in_use += r.used_count > 0 ? 1 : 0;
  s.pages_discarded = pages_discarded_;
  s.discard_failures = discard_failures_;
  s.discard_calls = discard_calls_;
  s.discard_runs = discard_runs_;
  s.populate_calls = populate_calls_;
  s.regions_collapsed = regions_collapsed_;
  s.collapse_failures = collapse_failures_;
  s.shadow_bytes = shadow_.resident_bytes();
  s.shadow_units_given_back = shadow_units_given_back_;
  return s;
}

}  // namespace mova::alloc
