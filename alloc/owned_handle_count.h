// alloc/owned_handle_count.h — how many owned handles each table page holds, counted across calls.
//
// Types: OwnedHandleCount.
// Handle compaction (the pool's compact_handles) plans which table pages to empty from a count, per page, of
// the handles the owners' cells hold (HandleTable::PlanEvacuation). Counting visits every cell: 4.5 ms for
// 355,000 cells in mova-kv, more than a 7.5 ms defrag cycle can spare beside its moves. So a budgeted call
// counts until its deadline (after one batch at least, so that every call makes progress) and the next call
// goes on where it stopped: with each owner's cells visited in the same order, it passes over the cells
// counted before and counts from there.
// What a count across calls may get wrong, and why that is safe: cells that changed between the calls (a
// handle freed, stored, moved to another cell) are counted by what they held when visited. The count only
// chooses pages to try; the migrator moves what the cells hold at the time, so an overcounted page is tried
// and kept (its entries in use were not all owned), and an undercounted one waits for the next plan.
// Invariants: owners_done <= the owners' number; cells_done counts the cells of owner owners_done already
// counted; per_page[p] is the number of counted cells whose handle lies in table page p.
// Not thread-safe: the pool's compaction lock orders its users.
#ifndef MOVA_ALLOC_OWNED_HANDLE_COUNT_H_
#define MOVA_ALLOC_OWNED_HANDLE_COUNT_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "handles/handle_table.h"
#include "mova/handle_owner.h"

namespace mova::alloc {

class OwnedHandleCount {
 public:
  struct Progress {
    bool complete = false;    // every cell has been counted
    std::uint64_t cells = 0;  // cells this call counted (a batch at least, unless the count was complete)
  };
  // Counts the cells of `owners` (in this order, each call the same list) whose handles are issued by
  // `table`, until `deadline` passes after at least one batch. A count that is complete stays so until Reset.
  Progress Count(std::span<HandleOwner* const> owners, const handles::HandleTable& table, absl::Time deadline) {
    Progress progress;
    const std::uint64_t opened = table.stats().pages_opened;
    if (per_page_.size() < opened) per_page_.resize(opened, 0);
    bool counted_a_batch = false;
    for (; owners_done_ < owners.size(); ++owners_done_, cells_done_ = 0) {
      std::uint64_t seen = 0;  // cells of this owner visited by this call
      bool stopped = false;
      owners[owners_done_]->VisitCells([&](std::span<HandleCell* const> cells) {
        if (stopped) return;
        const std::uint64_t end = seen + cells.size();
        if (end <= cells_done_) {  // counted by an earlier call
          seen = end;
          return;
        }
        if (counted_a_batch && absl::Now() >= deadline) {
          stopped = true;
          return;
        }
        for (std::size_t i = cells_done_ > seen ? cells_done_ - seen : 0; i < cells.size(); ++i) {
          const Handle h = cells[i]->load();
          if (h.is_null() || !table.Issued(h.index())) continue;
          const std::uint64_t page = h.index() / handles::HandleTable::kEntriesPerPage;
          if (page >= per_page_.size()) continue;  // a page opened after this call began
          ++per_page_[page];
          ++cells_owned_;
        }
        progress.cells += end - std::max(seen, cells_done_);
        seen = end;
        cells_done_ = end;
        counted_a_batch = true;
      });
      if (stopped) return progress;
    }
    progress.complete = true;
    return progress;
  }
  // Starts a new count, and gives the old one's memory back (a count lives only while the calls of one
  // sequence plan from it).
  void Reset() {
    per_page_ = std::vector<std::uint32_t>();
    owners_done_ = 0;
    cells_done_ = 0;
    cells_owned_ = 0;
  }

  std::span<const std::uint32_t> per_page() const { return per_page_; }
  std::uint64_t cells_owned() const { return cells_owned_; }

 private:
  std::vector<std::uint32_t> per_page_;
  std::size_t owners_done_ = 0;
  std::uint64_t cells_done_ = 0;
  std::uint64_t cells_owned_ = 0;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_OWNED_HANDLE_COUNT_H_
