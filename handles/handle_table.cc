// handles/handle_table.cc — see handle_table.h.
#include "handles/handle_table.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_format.h"
#include "base/runs.h"

namespace mova::handles {

absl::StatusOr<std::unique_ptr<HandleTable>> HandleTable::Create(os::Os& os, std::uint32_t max_entries,
                                                                std::uint64_t salt) {
  if (max_entries == 0 || max_entries > Handle::kIndexMask) {
    return absl::InvalidArgumentError(absl::StrFormat("handle table entries must be in 1..%u", Handle::kIndexMask));
  }
  // Pages for max_entries (index 0 is never issued), twice over so that entries resting in pages that are
  // not yet empty do not cut the capacity; at most the 2^28 indices a handle can name.
  const std::uint64_t needed = (std::uint64_t{max_entries} + 1 + kEntriesPerPage - 1) / kEntriesPerPage;
  const auto pages = static_cast<std::uint32_t>(std::min<std::uint64_t>(2 * needed, kMaxPages));
  absl::StatusOr<std::byte*> mem = os.Reserve(ToBytes(Pages(pages)), Bytes(kPageSize));
  if (!mem.ok()) return mem.status();
  absl::StatusOr<std::byte*> keys = os.Reserve(KeysBytes(pages), Bytes(kPageSize));
  if (!keys.ok()) {
    (void)os.Unreserve(*mem, ToBytes(Pages(pages)));
    return keys.status();
  }
  absl::StatusOr<std::byte*> states = os.Reserve(StatesBytes(pages), Bytes(kPageSize));
  if (!states.ok()) {
    (void)os.Unreserve(*keys, KeysBytes(pages));
    (void)os.Unreserve(*mem, ToBytes(Pages(pages)));
    return states.status();
  }
  absl::StatusOr<std::byte*> records = os.Reserve(RecordsBytes(pages), Bytes(kPageSize));
  if (!records.ok()) {
    (void)os.Unreserve(*states, StatesBytes(pages));
    (void)os.Unreserve(*keys, KeysBytes(pages));
    (void)os.Unreserve(*mem, ToBytes(Pages(pages)));
    return records.status();
  }
  return std::unique_ptr<HandleTable>(new HandleTable(
      os, reinterpret_cast<EntryAtomic*>(*mem), reinterpret_cast<std::atomic<std::uint32_t>*>(*keys),
      reinterpret_cast<PageState*>(*states), reinterpret_cast<PageRecord*>(*records), max_entries, pages, salt));
}

HandleTable::HandleTable(os::Os& os, EntryAtomic* entries, std::atomic<std::uint32_t>* keys, PageState* states,
                         PageRecord* records, std::uint32_t max_entries, std::uint32_t max_pages, std::uint64_t salt)
    : os_(os),
      entries_(entries),
      keys_(keys),
      states_(states),
      records_(records),
      max_entries_(max_entries),
      max_pages_(max_pages),
      salt_(salt),
      view_{max_pages * kEntriesPerPage - 1, keys, entries} {}

bool HandleTable::OnList(std::uint32_t p, ListKind kind) const {
  if (!records_[p].resident || records_[p].evacuating) return false;  // given back: found by LowestGivenBack
  const PageState& st = state(p);
  if (kind == kLineFree) return st.free_lines > 0;
  return FreeEntries(p) > 0;
}

std::uint32_t HandleTable::FreeEntries(std::uint32_t p) const {
  const PageState& st = state(p);
  const std::uint32_t entries = p == 0 ? kEntriesPerPage - 1 : kEntriesPerPage;  // index 0 is never issued
  return entries - st.used - st.rested;  // neither in use nor resting
}

void HandleTable::Relist(std::uint32_t p) {
  PageState& st = state(p);
  for (ListKind k : {kAnyFree, kLineFree}) {
    if (!OnList(p, k)) continue;
    DensityLists& l = lists_[k];
    const std::uint16_t b = st.used;
    st.prev[k] = kNoPage;
    st.next[k] = l.heads[b];
    if (st.next[k] != kNoPage) state(st.next[k]).prev[k] = p;
    l.heads[b] = p;
    l.nonempty[b / 64] |= std::uint64_t{1} << (b % 64);
  }
}

void HandleTable::Unlist(std::uint32_t p) {
  PageState& st = state(p);
  for (ListKind k : {kAnyFree, kLineFree}) {
    if (!OnList(p, k)) continue;
    DensityLists& l = lists_[k];
    const std::uint16_t b = st.used;
    if (st.prev[k] != kNoPage) {
      state(st.prev[k]).next[k] = st.next[k];
    } else {
      l.heads[b] = st.next[k];
    }
    if (st.next[k] != kNoPage) state(st.next[k]).prev[k] = st.prev[k];
    if (l.heads[b] == kNoPage) l.nonempty[b / 64] &= ~(std::uint64_t{1} << (b % 64));
    st.prev[k] = st.next[k] = kNoPage;
  }
}

std::uint32_t HandleTable::Densest(ListKind kind) const {
  const DensityLists& l = lists_[kind];
  for (std::size_t w = kBucketWords; w-- > 0;) {
    if (l.nonempty[w] != 0) return l.heads[w * 64 + 63 - std::countl_zero(l.nonempty[w])];
  }
  return kNoPage;
}

void HandleTable::MarkFree(PageState& st, std::uint32_t i) {
  std::uint8_t& line = st.free[i / kEntriesPerLine];
  line |= static_cast<std::uint8_t>(1u << (i % kEntriesPerLine));
  if (line == kWholeLine) ++st.free_lines;
}

void HandleTable::MarkTaken(PageState& st, std::uint32_t i) {
  std::uint8_t& line = st.free[i / kEntriesPerLine];
  if (line == kWholeLine) --st.free_lines;
  line &= static_cast<std::uint8_t>(~(1u << (i % kEntriesPerLine)));
}

void HandleTable::MarkAllFree(std::uint32_t p) {
  PageState& st = state(p);
  st.free.fill(kWholeLine);
  st.free_lines = kLinesPerPage;
  if (p == 0) {  // index 0 is never issued
    st.free[0] = static_cast<std::uint8_t>(kWholeLine & ~1u);
    --st.free_lines;
  }
}

HandleTable::~HandleTable() {
  (void)os_.Unreserve(reinterpret_cast<std::byte*>(entries_), ToBytes(Pages(max_pages_)));
  (void)os_.Unreserve(reinterpret_cast<std::byte*>(keys_), keys_bytes());
  (void)os_.Unreserve(reinterpret_cast<std::byte*>(states_), states_reserved_bytes());
  (void)os_.Unreserve(reinterpret_cast<std::byte*>(records_), records_reserved_bytes());
}

void HandleTable::CountStateUser(std::uint32_t p) {
  const std::uint32_t last = LastStatePage(p);
  if (states_pages_.size() <= last) states_pages_.resize(last + 1);
  for (std::uint32_t sp = FirstStatePage(p); sp <= last; ++sp) {
    StatesPage& page = states_pages_[sp];
    ++page.users;
    if (!page.touched) {
      page.touched = true;
      ++states_pages_touched_;
    }
  }
}

void HandleTable::UncountStateUser(std::uint32_t p) {
  for (std::uint32_t sp = FirstStatePage(p); sp <= LastStatePage(p); ++sp) --states_pages_[sp].users;
}

template <typename Done>
void HandleTable::DiscardRuns(std::byte* base, std::span<const PageRunOf> runs, Done done) {
  if (runs.empty()) return;
  std::vector<os::PageSpan> spans;
  spans.reserve(runs.size());
  for (const PageRunOf& r : runs) spans.push_back({base + std::size_t{r.first} * kPageSize, ToBytes(Pages(r.count))});
  os::RangeProgress progress;
  (void)os_.DiscardRanges(spans, &progress);  // on an error, the runs from ranges_done on are not discarded
  for (std::size_t k = 0; k < runs.size(); ++k) done(runs[k], k < progress.ranges_done);
}

void HandleTable::SweepStates() {
  std::vector<PageRunOf> runs;  // of states_ pages
  const auto idle = [&](std::size_t sp) { return states_pages_[sp].touched && states_pages_[sp].users == 0; };
  ForEachRun(states_pages_.size(), idle, [&](std::size_t first, std::size_t end) {
    runs.push_back({static_cast<std::uint32_t>(first), static_cast<std::uint32_t>(end - first)});
    return true;
  });
  // A run whose discard failed stays touched, and counted.
  DiscardRuns(reinterpret_cast<std::byte*>(states_), runs, [&](const PageRunOf& r, bool discarded) {
    if (!discarded) return;
    for (std::uint32_t sp = r.first; sp < r.first + r.count; ++sp) {
      states_pages_[sp].touched = false;
      --states_pages_touched_;
    }
  });
}

std::uint32_t HandleTable::LowestGivenBack() const {
  for (std::size_t w = 0; w < given_back_.size(); ++w) {
    if (given_back_[w] != 0) return static_cast<std::uint32_t>(w * 64 + std::countr_zero(given_back_[w]));
  }
  return kNoPage;
}

absl::Status HandleTable::OpenPage(std::uint32_t p) {
  std::byte* addr = reinterpret_cast<std::byte*>(entries_ + std::size_t{p} * kEntriesPerPage);
  const bool never_opened = p >= opened_pages_.load(std::memory_order_relaxed);
  bool present = never_opened && p < populated_end_;  // populated ahead with an earlier page
  if (never_opened && !present) {  // populate the next pages too, in the same call
    const std::uint32_t n = std::min(kOpenAhead, max_pages_ - p);
    present = os_.Populate(addr, ToBytes(Pages(n))).ok();
    if (present) populated_end_ = p + n;
  }
  if (!present) {
    if (absl::Status s = os_.Populate(addr, Bytes(kPageSize)); !s.ok()) return s;
  }
  CountStateUser(p);
  state(p) = PageState{};  // its memory may hold an earlier life's state, or have been given back
  FreeAllEntries(p);
  records_[p].resident = true;
  given_back_[p / 64] &= ~(std::uint64_t{1} << (p % 64));
  ++resident_;
  return absl::OkStatus();
}

void HandleTable::FreeAllEntries(std::uint32_t p) {
  const std::uint32_t first = p * kEntriesPerPage;
  for (std::uint32_t i = p == 0 ? 1 : 0; i < kEntriesPerPage; ++i) {  // index 0 is never issued
    entries_[first + i].store(MakeWord(records_[p].restart_gen, 0), std::memory_order_relaxed);
  }
  MarkAllFree(p);
  state(p).used = 0;
}

void HandleTable::TakeFrom(std::uint32_t p, std::span<std::uint32_t> out, std::size_t& n, bool lines_only,
                           bool singles) {
  PageState& st = state(p);
  if (records_[p].idle) {
    records_[p].idle = false;
    std::erase(idle_, p);
  }
  const std::uint32_t first = p * kEntriesPerPage;
  auto take = [&](std::uint32_t i) {
    MarkTaken(st, i);
    ++st.used;
    ++in_use_;
    out[n++] = first + i;
  };
  auto line_wanted = [&] {
    return !singles && st.free_lines > 0 && out.size() - n >= kEntriesPerLine && max_entries_ - in_use_ >= kEntriesPerLine;
  };
  // Whole lines while a whole line is wanted (and allowed).
  for (std::uint32_t l = 0; l < kLinesPerPage && line_wanted(); ++l) {
    if (st.free[l] != kWholeLine) continue;
    for (std::uint32_t e = 0; e < kEntriesPerLine; ++e) take(l * kEntriesPerLine + e);
  }
  // Single entries: those of partly used lines first, so whole lines stay whole. Not while whole lines are
  // still wanted and another page may have them.
  if (lines_only && out.size() - n >= kEntriesPerLine) return;
  for (const bool whole_lines_too : {false, true}) {
    for (std::uint32_t l = 0; l < kLinesPerPage; ++l) {
      const std::uint8_t line = st.free[l];
      if (line == 0 || (line == kWholeLine && !whole_lines_too)) continue;
      for (std::uint32_t e = 0; e < kEntriesPerLine; ++e) {
        if (n == out.size() || in_use_ == max_entries_) return;
        if ((line >> e) & 1) take(l * kEntriesPerLine + e);
      }
    }
  }
}

void HandleTable::PageEmptied(std::uint32_t p) {
  PageRecord& rec = records_[p];
  if (rec.evacuating) {  // what the evacuation is for: given back at its end, with the other emptied pages
    RetirePage(p, &evacuated_);
    return;
  }
  if (state(p).rested > 0) {  // re-keyed by RetirePage, never kept idle
    std::vector<std::uint32_t> pages;
    RetirePage(p, &pages);
    GiveBackPages(pages);
    return;
  }
  if (idle_.size() == kIdlePages) GiveBackIdle(kIdlePages / 2);
  rec.idle = true;
  idle_.push_back(p);
}

void HandleTable::GiveBackIdle(std::size_t n) {
  n = std::min(n, idle_.size());
  std::vector<std::uint32_t> pages;
  pages.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t q = idle_[i];
    Unlist(q);
    records_[q].idle = false;
    RetirePage(q, &pages);
  }
  idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(n));
  GiveBackPages(pages);
  for (std::size_t i = 0; i < n; ++i) Relist(pages[i]);
}

std::uint64_t HandleTable::GiveBackPages(std::vector<std::uint32_t>& pages) {
  std::sort(pages.begin(), pages.end());
  // Address-ordered runs, given back together: one process_madvise for up to IOV_MAX runs and one TLB
  // flush, where a call per run cost 6–20 µs each (234 scattered pages took 7.8 ms in one mova-kv cycle).
  std::vector<PageRunOf> runs;  // of table pages
  for (std::size_t i = 0; i < pages.size();) {
    std::size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    runs.push_back({pages[i], static_cast<std::uint32_t>(j - i)});
    i = j;
  }
  // A run whose discard failed is kept, resident and usable.
  std::uint64_t given_back = 0;
  DiscardRuns(reinterpret_cast<std::byte*>(entries_), runs, [&](const PageRunOf& r, bool discarded) {
    given_back += discarded ? MarkGivenBack(r.first, r.count) : KeepAfterFailedDiscard(r.first, r.count);
  });
  return given_back;
}

void HandleTable::RetirePage(std::uint32_t p, std::vector<std::uint32_t>* retired) {
  PageState& st = state(p);
  PageRecord& rec = records_[p];
  const std::uint32_t first = p * kEntriesPerPage;
  std::uint16_t max_gen = 0;
  for (std::uint32_t i = 0; i < kEntriesPerPage; ++i) {
    max_gen = std::max(max_gen, GenOf(entries_[first + i].load(std::memory_order_relaxed)));
  }
  // Restart above every generation issued under this key; when that is no longer possible (an entry rested,
  // or one is near the end), take the next key and restart at 0: handles of the old key open to other values.
  if (st.rested > 0 || max_gen >= kRestGen - 2) {
    ++rec.epoch;
    keys_[p].store(PageKey(salt_, p, rec.epoch), std::memory_order_relaxed);
    rec.restart_gen = 0;
    ++rekeyed_;
  } else {
    rec.restart_gen = static_cast<std::uint16_t>(max_gen + 2);
  }
  rested_ -= st.rested;  // rested entries are free again from the restart generation on
  st.rested = 0;
  MarkAllFree(p);  // OpenPage writes the entries' words when the page is used again
  // The caller gives it back (GiveBackPages); until then it is on no list, so nobody takes an entry.
  retired->push_back(p);
}

std::uint32_t HandleTable::MarkGivenBack(std::uint32_t first, std::uint32_t count) {
  for (std::uint32_t p = first; p < first + count; ++p) {
    records_[p].resident = false;
    UncountStateUser(p);
    given_back_[p / 64] |= std::uint64_t{1} << (p % 64);
  }
  resident_ -= count;
  discarded_ += count;
  return count;
}

std::uint32_t HandleTable::KeepAfterFailedDiscard(std::uint32_t first, std::uint32_t count) {
  // Kept: usable and counted, their entries at the restart generation (a discard that failed part way may
  // have zeroed some of them).
  for (std::uint32_t p = first; p < first + count; ++p) FreeAllEntries(p);
  return 0;
}

absl::StatusOr<std::size_t> HandleTable::Acquire(std::span<std::uint32_t> out, Order order) {
  MutexLock lock(&mu_);
  std::size_t n = 0;
  const bool singles = order == Order::kDense;
  while (n < out.size() && in_use_ < max_entries_) {
    const bool want_line = !singles && out.size() - n >= kEntriesPerLine && max_entries_ - in_use_ >= kEntriesPerLine;
    // Resident pages first (idle ones, empty, are on the lists' bucket 0), then the lowest page given back
    // (which costs a populate), then a new page. A page given back has all its lines free.
    std::uint32_t p = want_line ? Densest(kLineFree) : kNoPage;
    if (p == kNoPage && want_line) p = LowestGivenBack();
    const bool lines_only = p != kNoPage;
    if (p == kNoPage) p = Densest(kAnyFree);
    if (p == kNoPage) p = LowestGivenBack();
    if (p == kNoPage) {
      const std::uint32_t opened = opened_pages_.load(std::memory_order_relaxed);
      if (opened == max_pages_) break;
      records_[records_size_++] = PageRecord{};
      if (given_back_.size() * 64 <= opened) given_back_.push_back(0);
      keys_[opened].store(PageKey(salt_, opened, 0), std::memory_order_relaxed);
      if (absl::Status s = OpenPage(opened); !s.ok()) {
        --records_size_;
        if (n > 0) break;
        return s;
      }
      opened_pages_.store(opened + 1, std::memory_order_release);
      p = opened;
    } else {
      Unlist(p);
      if (!records_[p].resident) {
        if (absl::Status s = OpenPage(p); !s.ok()) {
          Relist(p);
          if (n > 0) break;
          return s;
        }
      }
    }
    TakeFrom(p, out, n, lines_only, singles);
    Relist(p);
  }
  UpdateSparse();
  if (n == 0) {
    if (in_use_ == max_entries_) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("handle table full: all %u entries (max_handles) are in use", max_entries_));
    }
    return absl::ResourceExhaustedError(absl::StrFormat(
        "handle table full: %u entries in use and %u resting after their last generation, in all %u pages",
        in_use_, rested_, max_pages_));
  }
  return n;
}

void HandleTable::Return(std::span<const std::uint32_t> indices) {
  // Each page moves between density buckets once per call, not once per entry: a page is taken off its lists
  // when the first of its entries comes by (`returning` marks it), and listed again after the last. No sort:
  // a thread cache's entries come from a few pages, and grouping them costs a flag per page.
  std::uint32_t local[64];
  std::vector<std::uint32_t> heap;
  std::uint32_t* touched = local;
  if (indices.size() > 64) {
    heap.resize(indices.size());
    touched = heap.data();
  }
  std::size_t pages = 0;
  MutexLock lock(&mu_);
  for (const std::uint32_t index : indices) {
    const std::uint32_t p = index / kEntriesPerPage;
    PageState& st = state(p);
    if (!records_[p].returning) {
      Unlist(p);
      records_[p].returning = true;
      touched[pages++] = p;
    }
    const std::uint16_t gen = GenOf(entries_[index].load(std::memory_order_relaxed));
    --st.used;
    --in_use_;
    if (gen >= kRestGen) {  // its last life is over: it rests until the page empties and is re-keyed
      ++st.rested;
      ++rested_;
      continue;
    }
    MarkFree(st, index - p * kEntriesPerPage);
  }
  for (std::size_t i = 0; i < pages; ++i) {
    const std::uint32_t p = touched[i];
    records_[p].returning = false;
    if (state(p).used == 0) PageEmptied(p);
    Relist(p);
  }
  UpdateSparse();
}

void HandleTable::UpdateSparse() {
  sparse_.store(resident_ >= kSparsePages && in_use_ * 2 < resident_ * kEntriesPerPage, std::memory_order_relaxed);
}

void HandleTable::ReleaseSpare() {
  MutexLock lock(&mu_);
  GiveBackIdle(idle_.size());
  UpdateSparse();
  SweepStates();
  const std::uint32_t opened = opened_pages_.load(std::memory_order_relaxed);
  if (populated_end_ <= opened) return;
  std::byte* addr = reinterpret_cast<std::byte*>(entries_ + std::size_t{opened} * kEntriesPerPage);
  if (os_.Discard(addr, ToBytes(Pages(populated_end_ - opened))).ok()) populated_end_ = opened;
}

std::vector<std::uint32_t> HandleTable::PlanEvacuation(std::span<const std::uint32_t> owned) const {
  MutexLock lock(&mu_);
  // The pages that hold entries, and their free entries: where moved entries may go.
  std::uint64_t room = 0;
  std::vector<std::uint32_t> candidates;
  candidates.reserve(records_size_);  // sized once, not by doubling (whose copies stay as holes in malloc's heap)
  for (std::uint32_t p = 0; p < records_size_; ++p) {
    if (!records_[p].resident) continue;
    const PageState& st = state(p);
    if (st.used == 0) continue;
    room += FreeEntries(p);
    if (p < owned.size() && owned[p] >= st.used) candidates.push_back(p);
  }
  // Sparsest first by quarters of a page, and the highest pages first among those alike: the pages that stay
  // are then the lowest of the densest, so their states (88 B each, 46 to a page of states) share pages and
  // the rest go back (SweepStates). Sparsest by entry count left the survivors spread over the whole table
  // (after thinning at random every page is about as dense as the next): thin-out at 256 MiB kept 35 pages of
  // states for its 199 pages, now 5, for 2.7% more entries moved (91,380 against 88,953). Eighths of a page
  // kept 35 too: 3.5% of its pages had 64 entries or more, spread everywhere.
  constexpr std::uint32_t kDensityStep = kEntriesPerPage / 4;
  std::sort(candidates.begin(), candidates.end(), [&](std::uint32_t a, std::uint32_t b) {
    const std::uint32_t da = state(a).used / kDensityStep, db = state(b).used / kDensityStep;
    return da != db ? da < db : a > b;
  });
  // In that order, while what they hold fits in the room of the pages that stay.
  std::vector<std::uint32_t> plan;
  plan.reserve(candidates.size());
  std::uint64_t moving = 0;
  for (const std::uint32_t p : candidates) {
    const PageState& st = state(p);
    const std::uint64_t room_after = room - FreeEntries(p);
    if (moving + st.used > room_after) break;
    moving += st.used;
    room = room_after;
    plan.push_back(p);
  }
  return plan;
}

void HandleTable::BeginEvacuation(std::span<const std::uint32_t> pages) {
  MutexLock lock(&mu_);
  evacuating_.assign(records_size_, 0);
  for (const std::uint32_t p : pages) {
    Unlist(p);
    records_[p].evacuating = true;
    evacuating_[p] = 1;
  }
}

std::uint64_t HandleTable::EndEvacuation() {
  MutexLock lock(&mu_);
  const std::uint64_t given_back = GiveBackPages(evacuated_);
  evacuated_ = std::vector<std::uint32_t>();  // an evacuation's lists are its own: their memory goes with it
  evacuated_total_ += given_back;
  for (std::uint32_t p = 0; p < evacuating_.size(); ++p) {
    if (evacuating_[p] == 0) continue;
    records_[p].evacuating = false;
    Relist(p);
  }
  evacuating_ = std::vector<std::uint8_t>();
  UpdateSparse();
  SweepStates();
  return given_back;
}

HandleVerdict HandleTable::Classify(Handle h) const {
  MutexLock lock(&mu_);  // the page's key, resident state and restart generation hold still
  const HandleRef r = Open(h);
  if (r.entry == nullptr) return HandleVerdict::kNotIssued;
  // Generations only grow under one key: an earlier one is a handle this entry issued and retired.
  const PageRecord& rec = records_[h.index() / kEntriesPerPage];
  const std::uint16_t now = rec.resident ? GenOf(r.entry->load(std::memory_order_acquire)) : rec.restart_gen;
  return r.gen < now ? HandleVerdict::kStale : HandleVerdict::kNotIssued;
}

HandleTable::Stats HandleTable::stats() const {
  MutexLock lock(&mu_);
  Stats s;
  s.entries_in_use = in_use_;
  s.entries_rested = rested_;
  s.pages_rekeyed = rekeyed_;
  s.pages_opened = opened_pages_.load(std::memory_order_relaxed);
  s.pages_populated_ahead = populated_end_ > s.pages_opened ? populated_end_ - s.pages_opened : 0;
  s.pages_resident = resident_ + s.pages_populated_ahead;
  s.pages_discarded = discarded_;
  s.pages_evacuated = evacuated_total_;
  s.states_bytes =
      (ToBytes(Pages(states_pages_touched_)) + ToBytes(PagesCeil(Bytes(std::uint64_t{records_size_} * sizeof(PageRecord))))).value();
  return s;
}

}  // namespace mova::handles
