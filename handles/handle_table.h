// handles/handle_table.h — the table of handle entries: entries never move, freed entries are reused.
//
// Types: HandleTable. Entries are EntryAtomic words (entry_word.h) in one reserved range of address space,
// grouped in table pages of kEntriesPerPage. Each table page keeps its own free list threaded through the
// location bits of its free entries, and a count of entries in use (handed out by Acquire and not yet
// Returned: live objects plus entries cached by threads).
// Invariants (under mu_): used(p) + length of free list(p) == kEntriesPerPage for every opened page p;
//   a page whose used(p) == 0 is discarded (its memory given back) unless the discard failed;
//   every opened page with used < kEntriesPerPage is on exactly one density bucket, buckets_[used(p)], and
//   nonempty_ has bit u set exactly when buckets_[u] is non-empty. Acquire takes from the fullest bucket
//   (O(1) per page), so it reuses entries in the densest part of the table and fully free pages stay free.
// A discarded page reads as zeros; when it is opened again its entries restart at a generation above any
// it issued before, so handles issued from it earlier stay stale.
// Locks: mu_ is a leaf lock. Entry words are read and CASed without it (entry_word.h).
#ifndef MOVA_HANDLES_HANDLE_TABLE_H_
#define MOVA_HANDLES_HANDLE_TABLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "handles/entry_word.h"
#include "mova/units.h"
#include "os/os.h"

namespace mova::handles {

class HandleTable {
 public:
  static constexpr std::uint32_t kEntriesPerPage = kPageSize / sizeof(Word);

  // Reserves address space for `max_entries` entries (rounded up to whole pages).
  static absl::StatusOr<std::unique_ptr<HandleTable>> Create(os::Os& os, std::uint32_t max_entries);
  ~HandleTable();
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // Hands out up to out.size() free entries (at least one on success), from the densest table page that
  // has any. The entries stay free (even generation) until the caller Publishes them.
  // ResourceExhausted when all max_entries are in use or the OS cannot back a new table page.
  absl::StatusOr<std::size_t> Acquire(std::span<std::uint32_t> out);

  // Takes back entries that are free (even generation) and no longer referenced by the caller.
  void Return(std::span<const std::uint32_t> indices);

  // The entry of `index`; valid for any index < capacity().
  EntryAtomic& entry(std::uint32_t index) const { return entries_[index]; }
  // True for indices in pages that were ever opened: anything else cannot be a handle this table issued.
  bool Issued(std::uint32_t index) const {
    return index < opened_pages_.load(std::memory_order_acquire) * kEntriesPerPage;
  }
  std::uint32_t capacity() const { return capacity_; }

  struct Stats {
    std::uint64_t entries_in_use = 0;  // handed out and not returned (live handles + thread-cached entries)
    std::uint64_t pages_opened = 0;    // pages ever opened (the table's high-water mark)
    std::uint64_t pages_resident = 0;  // opened pages not given back
    std::uint64_t pages_discarded = 0; // cumulative count of pages given back
    Bytes resident_bytes() const { return ToBytes(Pages(pages_resident)); }
  };
  Stats stats() const;

 private:
  struct PageState {
    std::uint16_t used = 0;           // entries handed out
    std::uint16_t free_head = 0;      // first free entry (index within page), kNoNext if none
    std::uint16_t restart_gen = 0;    // even generation the page's entries start from when reopened
    bool resident = false;
    std::uint32_t prev = kNoPage;     // density bucket list
    std::uint32_t next = kNoPage;
  };
  static constexpr std::uint16_t kNoNext = 0xFFFF;
  static constexpr std::uint32_t kNoPage = 0xFFFFFFFF;
  static constexpr std::size_t kBucketWords = (kEntriesPerPage + 63) / 64;  // buckets 0 .. kEntriesPerPage - 1

  HandleTable(os::Os& os, EntryAtomic* entries, std::uint32_t capacity, std::uint32_t max_pages);
  // Makes page p's memory present and threads all its entries onto its free list.
  absl::Status OpenPage(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DiscardPage(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BucketInsert(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BucketRemove(std::uint32_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The page with the most entries in use that still has a free one, or kNoPage.
  std::uint32_t DensestAvailable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  os::Os& os_;
  EntryAtomic* const entries_;
  const std::uint32_t capacity_;
  const std::uint32_t max_pages_;
  std::atomic<std::uint32_t> opened_pages_{0};

  mutable Mutex mu_;
  std::vector<PageState> pages_ ABSL_GUARDED_BY(mu_);
  std::array<std::uint32_t, kEntriesPerPage> buckets_ ABSL_GUARDED_BY(mu_);  // heads, by entries in use
  std::array<std::uint64_t, kBucketWords> nonempty_ ABSL_GUARDED_BY(mu_){};
  std::uint64_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t resident_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t discarded_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mova::handles

#endif  // MOVA_HANDLES_HANDLE_TABLE_H_
