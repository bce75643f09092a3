// handles/handle_table.h — the table of handle entries: entries never move, freed entries are reused, and
// handles are made here and opened by OpenHandle (inline_read.h) on this table's view: the only two places
// that know how a handle names its entry.
//
// Types: HandleTable, HandleVerdict (HandleRef and TableView: inline_read.h). Entries are EntryAtomic words
// (entry_layout.h, entry_word.h) in one reserved range of address space, grouped in table pages of
// kEntriesPerPage and cache lines of kEntriesPerLine.
// Each table page keeps a bitmap of its free entries, a count of entries in use (handed out by Acquire and
// not yet Returned: live objects plus entries cached by threads), a count of rested entries, a count of its
// wholly free lines, and a key (handle_seal.h) kept outside the page so that it survives the page being
// given back. Bookkeeping in three ranges: keys (4 B a page, never given back), records (PageRecord, 8 B
// for every page ever opened: key epoch, restart generation, flags) and states (PageState, 88 B: bitmap,
// counts, list links), which only resident pages need. A page's state is written afresh when it opens, so
// the pages of the states range that hold only given-back pages' states go back too (ReleaseSpare,
// EndEvacuation): after handle compaction empties 8,000 table pages their states were 0.75 MiB of RSS.
// Invariants (under mu_): for every opened page p, used(p) + rested(p) + (free bits of p) ==
//   kEntriesPerPage, less one for page 0 (index 0 is never issued, so no handle is 0); free_lines(p) is the
//   number of lines whose entries are all free;
//   in_use_ == Σ used(p) <= max_entries_;
//   a page whose used(p) == 0 is idle (kept resident, on idle_, at most kIdlePages of them, oldest first) or
//   discarded (its memory given back) unless the discard failed; a page with rested entries is never kept idle;
//   a resident page is on the density list lists_[kAnyFree] at bucket used(p) iff it has a free entry, and
//   on lists_[kLineFree] at bucket used(p) iff it has a wholly free line; a page given back is on no list
//   but in given_back_ (and all its entries are free);
//   states_pages_[s].users is the number of resident pages whose state lies in page s of the states range.
// Hand-out order: whole free lines first, from the densest resident page that has one, else from the lowest
//   page given back; then single entries from the densest page with any, those of partly used lines first;
//   a new page only when no page has a free entry.
//   So entries are reused in the densest part of the table, fully free pages stay free, and two threads'
//   caches (which refill in whole lines) do not share a cache line of entries while a free line exists:
//   a pin or free by one does not take the line from under the other.
// Generations: within one key epoch of a page, an entry's generations only grow: a discarded page's entries
//   restart above any generation it issued. An entry freed at kRestGen (after kLastLiveGen) rests: it is not
//   handed out again until its page is empty; then the page takes a new key and its generations restart at 0.
//   So a stale handle is recognised for certain until its entry has had 32767 lives and its page was
//   emptied after that; then it opens under the new key with a chance of about 2^-20 of matching.
// Sparse(): fewer than half of the resident pages' entries in use (a hint, kept by every call that changes the
//   counts): threads then send the entries they free back here instead of reusing them, and take new ones
//   densest page first, so the sparse pages empty (alloc/thread_cache.h, ThreadCache::returning).
// Emptied pages: the last kIdlePages emptied stay resident (idle) for reuse, so a table whose entries empty
// and refill a page over and over makes no syscall for it (measured: two threads churning 1,000 handles each
// made one discard and one populate per page emptied, 0.5 of each per 1,000 frees, each a TLB shootdown of
// the other CPU); when a page empties with kIdlePages idle already, the older half of them are given back,
// together in one DiscardRanges call (a table that densifies as a size drift routes entries through it
// empties pages steadily: 1,413 single-page discards in churn-ops), and ReleaseSpare() gives back all.
// Pages never opened before are populated kOpenAhead at a time (one syscall per 64 KiB of table, not per
// page); those populated ahead and not yet opened count as resident.
// Evacuation (handle compaction, the pool's compact_handles): PlanEvacuation picks the sparsest pages (by quarters of
// a page; the highest first among those alike, so the pages that stay are low and their states share pages) whose
// entries in use are all owned and fit in the free entries of the other pages; while they evacuate they are on no
// density list, so Acquire never hands out their entries, and a page that empties is retired at once (not kept idle)
// with its discard deferred to EndEvacuation, which gives such pages back in address-ordered runs, all runs in one
// DiscardRanges call (os.h: one process_madvise and TLB flush for up to IOV_MAX runs), and lists the pages again.
// Movers acquire with kDense: single entries from the densest page, those of partly used lines first, so the free
// entries the plan counted on are the ones filled.
// Locks: mu_ is a leaf lock. Entry words are read and CASed without it (entry_word.h); keys are read without it.
#ifndef MOVA_HANDLES_HANDLE_TABLE_H_
#define MOVA_HANDLES_HANDLE_TABLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "handles/entry_word.h"
#include "handles/handle_seal.h"
#include "handles/inline_read.h"
#include "mova/handle.h"
#include "mova/units.h"
#include "os/os.h"

namespace mova::handles {

// Why a handle whose generation does not match its entry was refused.
enum class HandleVerdict {
  kStale,      // an earlier generation of this entry: freed (double free, use after free)
  kNotIssued,  // never a handle of this table: null, forged, corrupted, another pool's, or from before a re-key
};

class HandleTable {
 public:
  static constexpr std::uint32_t kEntriesPerPage = handles::kEntriesPerPage;
  static constexpr std::uint32_t kEntriesPerLine = 64 / sizeof(Word);  // one cache line
  static constexpr std::uint32_t kMaxPages = (std::uint32_t{1} << Handle::kIndexBits) / kEntriesPerPage;
  static constexpr std::uint32_t kOpenAhead = 16;
  static constexpr std::uint32_t kIdlePages = 16;  // emptied pages kept resident (64 KiB)

  // A table for at most `max_entries` entries in use at once (exactly; at most 2^28 - 1). `salt` keys the
  // handles (handle_seal.h): tables with different salts refuse each other's handles.
  static absl::StatusOr<std::unique_ptr<HandleTable>> Create(os::Os& os, std::uint32_t max_entries,
                                                             std::uint64_t salt);
  ~HandleTable();
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // Hands out up to out.size() free entries (at least one on success) in the order above: ask for a
  // multiple of kEntriesPerLine to get whole lines. The entries stay free (even generation) until the caller
  // Publishes them.
  // ResourceExhausted when max_entries are in use, or no page has a free entry and no more may be opened,
  // or the OS cannot back a new table page.
  // kDense (for movers): no whole lines first, the densest page's single entries, partly used lines first.
  enum class Order { kLinesFirst, kDense };
  absl::StatusOr<std::size_t> Acquire(std::span<std::uint32_t> out, Order order = Order::kLinesFirst);

  // Takes back entries that are free (even generation) and no longer referenced by the caller. An entry at
  // kRestGen rests (see above).
  void Return(std::span<const std::uint32_t> indices);
  // True when less than half of the entries of the table's resident pages are in use, and it has at least
  // kSparsePages of them: after the live count fell (a size drift: many small objects replaced by fewer large
  // ones), entries that come back and go out again (Return, then Acquire) fill the densest pages and let the
  // sparse ones empty and go back. A hint, read without the lock.
  bool Sparse() const { return sparse_.load(std::memory_order_relaxed); }
  static constexpr std::uint64_t kSparsePages = 64;
  // Gives back the idle pages and those populated ahead and not yet opened (compaction and
  // release_free_memory call it).
  void ReleaseSpare();

  // ---- evacuation (one evacuation at a time; the pool's compaction lock orders them) ----
  // Pages to empty, given `owned[p]`, the entries of page p that their owners could move: resident pages
  // whose entries in use are all owned, sparsest first (by quarters of a page, then highest first), as long
  // as their entries fit in the free entries of the pages that stay. Empty when nothing would be given back.
  std::vector<std::uint32_t> PlanEvacuation(std::span<const std::uint32_t> owned) const;
  // Takes `pages` off the density lists until EndEvacuation.
  void BeginEvacuation(std::span<const std::uint32_t> pages);
  // True for an entry of a page under evacuation. Only the evacuating thread may ask (it set the flags).
  bool Evacuating(std::uint32_t index) const {
    const std::size_t p = index / kEntriesPerPage;
    return p < evacuating_.size() && evacuating_[p] != 0;
  }
  // Gives back the evacuated pages that emptied, in runs; lists every page again. Returns the pages given back.
  std::uint64_t EndEvacuation();

  // The handle for entry `index`, live at generation `gen`, of an object whose size field is `size_field`.
  Handle MakeHandle(std::uint32_t index, std::uint16_t gen, std::uint16_t size_field) const {
    return MakeHandleIn(view_, index, gen, size_field);
  }
  // MakeHandle through the table's view (view()), for callers that keep a copy of it.
  static Handle MakeHandleIn(const TableView& v, std::uint32_t index, std::uint16_t gen, std::uint16_t size_field) {
    const std::uint32_t key = v.keys[index / kEntriesPerPage].load(std::memory_order_relaxed);
    return Handle::Make(index, Seal(gen, key, size_field, index % kEntriesPerPage), size_field);
  }
  // Opens a handle (loads only): its entry and claimed generation, or entry == nullptr. The caller then
  // compares the generation with the entry's (Pin, Retire, ...).
  HandleRef Open(Handle h) const { return OpenHandle(view_, h); }
  // The arrays handles are opened against, for inline readers (inline_read.h): valid for the table's life.
  const TableView& view() const { return view_; }
  // For a handle an operation refused because its generation did not match (slow path; takes mu_): was it
  // issued by this table earlier, or never?
  HandleVerdict Classify(Handle h) const;

  // The entry of `index`; valid for any index < capacity().
  EntryAtomic& entry(std::uint32_t index) const { return entries_[index]; }
  // True for indices in pages that were ever opened, but 0: anything else cannot be a handle this table issued.
  bool Issued(std::uint32_t index) const {
    return index != 0 && index < opened_pages_.load(std::memory_order_acquire) * kEntriesPerPage;
  }
  // Entries of address space reserved (max_pages × kEntriesPerPage).
  std::uint32_t capacity() const { return max_pages_ * kEntriesPerPage; }
  std::uint32_t max_entries() const { return max_entries_; }
  // The range of the page keys (4 B per table page), and the whole pages `pages` table pages' keys take.
  const std::byte* keys_base() const { return reinterpret_cast<const std::byte*>(keys_); }
  Bytes keys_bytes() const { return KeysBytes(max_pages_); }
  static Bytes KeysBytes(std::uint64_t pages) { return ToBytes(PagesCeil(Bytes(pages * sizeof(std::uint32_t)))); }
  // The range of the resident pages' states (reserved for every page; backed where pages are resident).
  const std::byte* states_base() const { return reinterpret_cast<const std::byte*>(states_); }
  Bytes states_reserved_bytes() const { return StatesBytes(max_pages_); }
  // The range of the opened pages' records (reserved for every page; backed where pages were opened).
  const std::byte* records_base() const { return reinterpret_cast<const std::byte*>(records_); }
  Bytes records_reserved_bytes() const { return RecordsBytes(max_pages_); }

  struct Stats {
    std::uint64_t entries_in_use = 0;  // handed out and not returned (live handles + thread-cached entries)
    std::uint64_t entries_rested = 0;  // at kRestGen, waiting for their page to empty
    std::uint64_t pages_opened = 0;    // pages ever opened (the table's high-water mark)
    std::uint64_t pages_resident = 0;  // opened pages not given back, and pages populated ahead
    std::uint64_t pages_populated_ahead = 0;  // populated, not yet opened
    std::uint64_t pages_discarded = 0; // cumulative count of pages given back
    std::uint64_t pages_rekeyed = 0;   // cumulative count of new page keys
    std::uint64_t pages_evacuated = 0; // cumulative count of pages emptied by evacuation and given back
    std::uint64_t states_bytes = 0;    // resident bookkeeping: the pages' records and the touched pages of
                                       // their states (the free bitmaps and lists of resident pages)
    Bytes resident_bytes() const { return ToBytes(Pages(pages_resident)); }
  };
  Stats stats() const;

 private:
  static constexpr std::uint32_t kLinesPerPage = kEntriesPerPage / kEntriesPerLine;
  static constexpr std::uint8_t kWholeLine = 0xFF;  // a line's free bits when all its entries are free
  static_assert(kEntriesPerLine == 8, "a line's free bits are one byte");
  static constexpr std::uint32_t kNoPage = 0xFFFFFFFF;
  static constexpr std::size_t kBucketWords = (kEntriesPerPage + 63) / 64;  // buckets 0 .. kEntriesPerPage - 1
  enum ListKind { kAnyFree = 0, kLineFree = 1 };

  // What every opened page keeps, resident or given back: its key epoch and restart generation (a page given
  // back reopens from them), and where it stands.
  struct PageRecord {
    std::uint32_t epoch = 0;          // key epoch (keys_ holds PageKey(salt, page, epoch))
    std::uint16_t restart_gen = 0;    // even generation the page's entries start from when reopened
    // One byte of flags (all written under mu_): 8 B a record, not 12.
    bool resident : 1 = false;
    bool idle : 1 = false;            // on idle_: emptied and kept resident
    bool evacuating : 1 = false;      // between BeginEvacuation and EndEvacuation: on no list
    bool returning : 1 = false;       // inside Return: off its lists until the call's last entry of it
  };
  static_assert(std::is_trivially_copyable_v<PageRecord>, "records live in zero-filled reserved memory");
  static Bytes RecordsBytes(std::uint32_t pages) {
    return ToBytes(PagesCeil(Bytes(std::uint64_t{pages} * sizeof(PageRecord))));
  }
  // What a resident page keeps besides: which entries are free, its counts and its density-list links.
  // In states_, a range of its own; OpenPage writes it afresh, so its memory may go back with the page's.
  struct PageState {
    // Bit e of free[l]: entry l × kEntriesPerLine + e of the page may be handed out. The page's other
    // entries are used or rested, so it has a free entry iff used + rested is below its entry count.
    std::array<std::uint8_t, kLinesPerPage> free{};
    std::uint16_t used = 0;           // entries handed out
    std::uint16_t rested = 0;         // entries at kRestGen, neither free nor in use
    std::uint16_t free_lines = 0;     // lines whose entries are all free (free[l] == kWholeLine)
    std::array<std::uint32_t, 2> prev{kNoPage, kNoPage};  // per ListKind
    std::array<std::uint32_t, 2> next{kNoPage, kNoPage};
  };
  static_assert(sizeof(PageRecord) == 8 && sizeof(PageState) == 88, "the sizes the comment above names");
  // The pages of states_ that page p's state lies in (one, or two where it straddles a page boundary).
  static std::uint32_t FirstStatePage(std::uint32_t p) {
    return static_cast<std::uint32_t>(std::uint64_t{p} * sizeof(PageState) / kPageSize);
  }
  static std::uint32_t LastStatePage(std::uint32_t p) {
    return static_cast<std::uint32_t>((std::uint64_t{p + 1} * sizeof(PageState) - 1) / kPageSize);
  }
  static Bytes StatesBytes(std::uint32_t pages) {
    return ToBytes(PagesCeil(Bytes(std::uint64_t{pages} * sizeof(PageState))));
  }

  // Pages by entries in use, for one ListKind: Densest() is O(1) per 64 buckets.
  struct DensityLists {
    std::array<std::uint32_t, kEntriesPerPage> heads;
    std::array<std::uint64_t, kBucketWords> nonempty{};
    DensityLists() { heads.fill(kNoPage); }
  };

  HandleTable(os::Os& os, EntryAtomic* entries, std::atomic<std::uint32_t>* keys, PageState* states,
              PageRecord* records, std::uint32_t max_entries, std::uint32_t max_pages, std::uint64_t salt);
  PageState& state(std::uint32_t p) const { return states_[p]; }
  // Makes page p's memory present (unless it was populated ahead) and all its entries free (FreeAllEntries).
  absl::Status OpenPage(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks every entry of page p free, each word at the page's restart generation.
  void FreeAllEntries(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes free entries of resident page p into out[n..] (n advances): whole lines while at least a line is
  // wanted, then single entries, those of partly used lines first; with `lines_only`, single entries only
  // for a remainder smaller than a line.
  // With `singles`, no whole lines first.
  void TakeFrom(std::uint32_t p, std::span<std::uint32_t> out, std::size_t& n, bool lines_only, bool singles)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks entry i of a page free again / takes it (free) out of the page's bitmap.
  static void MarkFree(PageState& st, std::uint32_t i);
  static void MarkTaken(PageState& st, std::uint32_t i);
  // Page p's state: written afresh when it opens, counted against its pages of states_ while it is
  // resident, and those pages given back (by SweepStates) once no resident page's state lies in them.
  void CountStateUser(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UncountStateUser(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pages first .. first + count - 1 of one of the table's ranges.
  struct PageRunOf {
    std::uint32_t first;
    std::uint32_t count;
  };
  // Gives back `runs` of the range at `base`, all in one DiscardRanges call (os.h: one process_madvise and
  // TLB flush for up to IOV_MAX runs), then calls done(run, discarded) for each in order: discarded is false
  // from the first run that failed on.
  template <typename Done>
  void DiscardRuns(std::byte* base, std::span<const PageRunOf> runs, Done done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back the pages of states_ that were touched and hold no resident page's state, in runs, all in one
  // DiscardRanges call; a run whose discard failed stays touched (and counted).
  void SweepStates() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lowest page given back (not resident, its entries all free), or kNoPage.
  std::uint32_t LowestGivenBack() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Page p's bitmap: every entry free (but index 0).
  void MarkAllFree(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets sparse_ from in_use_ and resident_.
  void UpdateSparse() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Page p has no entry in use: keeps it idle (giving the older half of the idle pages back first when there
  // are kIdlePages), or retires it and gives it back (a page with rested entries; an evacuating page: at
  // EndEvacuation).
  void PageEmptied(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retires the `n` pages idle longest and gives them back, in one DiscardRanges call.
  void GiveBackIdle(std::size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Page p has no entry in use: picks the generation (and key) its entries restart at and adds it to
  // `retired`, whose pages the caller gives back (GiveBackPages).
  void RetirePage(std::uint32_t p, std::vector<std::uint32_t>* retired) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives retired `pages` back (sorted here) in address-ordered runs, all in one DiscardRanges call; a run
  // whose discard failed stays resident with every entry free at the restart generation. Returns the pages
  // given back.
  std::uint64_t GiveBackPages(std::vector<std::uint32_t>& pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Entries of page p neither in use nor resting (free in its bitmap).
  std::uint32_t FreeEntries(std::uint32_t p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // GiveBackPages' two ends, for pages [first, first + count) whose discard succeeded / failed: marks them given
  // back and returns count / keeps them resident with every entry free at the restart generation, returns 0.
  std::uint32_t MarkGivenBack(std::uint32_t first, std::uint32_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::uint32_t KeepAfterFailedDiscard(std::uint32_t first, std::uint32_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether page p belongs on the list of `kind` by its state.
  bool OnList(std::uint32_t p, ListKind kind) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts page p on the density lists its state calls for / takes it off them. Every change of a listed
  // page's state happens between its Unlist and Relist, so Unlist finds it where OnList says it is.
  void Relist(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unlist(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The page with the most entries in use that has a free entry (kAnyFree) or a wholly free line
  // (kLineFree), or kNoPage.
  std::uint32_t Densest(ListKind kind) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  os::Os& os_;
  EntryAtomic* const entries_;
  std::atomic<std::uint32_t>* const keys_;  // one per page, in a range of its own (never discarded)
  PageState* const states_;                 // one per page, in a range of its own (max_pages of them)
  // One per opened page, in a range of its own (max_pages of them; zero-filled memory is a default record):
  // only the pages of records written are resident, whatever malloc's mmap threshold (a reserved vector of
  // 6 MiB went to malloc's heap once the threshold had grown past it).
  PageRecord* const records_;
  const std::uint32_t max_entries_;
  const std::uint32_t max_pages_;
  const std::uint64_t salt_;
  const TableView view_;  // entries_ and keys_ again, and the last index they hold, for OpenHandle
  std::atomic<std::uint32_t> opened_pages_{0};

  mutable Mutex mu_;
  std::uint32_t records_size_ ABSL_GUARDED_BY(mu_) = 0;  // records_[0, records_size_) are the opened pages'
  // Per page of states_ touched so far: the resident pages whose state lies in it, and whether it may hold
  // memory (touched since it was last given back).
  struct StatesPage {
    std::uint8_t users = 0;
    bool touched = false;
  };
  std::vector<StatesPage> states_pages_ ABSL_GUARDED_BY(mu_);
  std::uint64_t states_pages_touched_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::uint64_t> given_back_ ABSL_GUARDED_BY(mu_);  // bit per opened page: given back
  std::array<DensityLists, 2> lists_ ABSL_GUARDED_BY(mu_);  // per ListKind
  std::uint64_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> sparse_{false};  // Sparse(): set from in_use_ and resident_ by each call that changes them
  std::uint64_t rested_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t resident_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t discarded_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t rekeyed_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t evacuated_total_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint32_t populated_end_ ABSL_GUARDED_BY(mu_) = 0;  // pages below it were populated when first opened
  std::vector<std::uint32_t> idle_ ABSL_GUARDED_BY(mu_);   // idle pages, at most kIdlePages
  // Under evacuation: a flag per page (written by the evacuating thread, under mu_, read by it alone), and
  // the evacuated pages retired with their discard deferred to EndEvacuation.
  std::vector<std::uint8_t> evacuating_;
  std::vector<std::uint32_t> evacuated_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mova::handles

#endif  // MOVA_HANDLES_HANDLE_TABLE_H_
