// mova/handle_owner.h — handles the pool may renumber: cells that hold them, and owners that keep cells.
//
// Types: HandleCell, HandleOwner, MigrateAnswer.
// A handle names an entry of the pool's handle table, and entries cannot move while callers hold copies of
// their handles: after random frees every table page that keeps one live entry stays resident. An owned
// handle can move. Its owner keeps it in a HandleCell and registers with the pool (Pool::register_owner);
// Pool::compact_handles() (also run by compact() and, in budgeted cycles, by the background compactor)
// moves owned entries out of sparse table pages into dense ones, rewrites each cell to the new handle, and
// gives the emptied pages back. The old handle becomes stale (kNotFound, or an abort in checked mode), as after a free.
//
// The contract is the kernel's movable-page one (isolate / migrate / putback), per entry instead of per page:
//  - isolate: the pool picks an owned entry in a sparse page; it fails on a pinned object (a counted pin, a
//    pin_owned pin in any thread's record, a move under way), and Isolate() lets the owner refuse too;
//  - migrate: the pool claims the entry (readers and freers of the old handle wait, as for an object move),
//    publishes a new entry at the same object and calls Migrate(cell, from, to): kSuccess — the owner stored
//    `to` where `from` was (the default compares and swaps the cell); kAgain — not now, retried on the next
//    of kMigratePasses passes and put back after the last; kFail — put back at once;
//  - putback: the entry stays, Putback() tells the owner; only what was isolated is put back;
//  - an object freed while isolated (between passes) counts as migrated, and nothing is put back for it.
// Why per cell and not a back-pointer per entry: the kernel finds a page's owner from the page; here the owner
// visits its own cells (VisitCells), so the table keeps no 8-byte back-pointer per entry — which would double
// the table this exists to shrink — and a cell may live anywhere, even in a hash map that moves its values
// when it grows.
//
// Readers: read a cell through the pool — Pool::pin(const HandleCell&), pin_owned, size_of, free(HandleCell&)
// — not by loading its handle and pinning that: those calls go on with the new handle when the entry moved
// between the load and the pin. A handle loaded from a cell is good until the next compact_handles().
#ifndef MOVA_HANDLE_OWNER_H_
#define MOVA_HANDLE_OWNER_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>

#include "mova/handle.h"

namespace mova {

// One handle the pool may rewrite: a 64-bit word read and written atomically (std::atomic_ref), since the
// compactor swaps it while owners read it. Trivially copyable, so cells can live in plain arrays and records;
// copy a cell only where no compaction visits it (an owner's VisitCells and its own copies of cells are
// ordered by the owner's lock, or by running on one thread).
class HandleCell {
 public:
  HandleCell() = default;
  explicit HandleCell(Handle h) : raw_(h.raw) {}

  Handle load() const { return Handle{Ref().load(std::memory_order_acquire)}; }
  void store(Handle h) { Ref().store(h.raw, std::memory_order_release); }
  Handle exchange(Handle h) { return Handle{Ref().exchange(h.raw, std::memory_order_acq_rel)}; }
  // Stores `desired` if the cell holds `expected`; else loads the cell into `expected`.
  bool compare_exchange(Handle& expected, Handle desired) {
    return Ref().compare_exchange_strong(expected.raw, desired.raw, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }

 private:
  std::atomic_ref<std::uint64_t> Ref() const { return std::atomic_ref<std::uint64_t>(raw_); }
  alignas(std::atomic_ref<std::uint64_t>::required_alignment) mutable std::uint64_t raw_ = 0;
};
static_assert(sizeof(HandleCell) == 8 && std::is_trivially_copyable_v<HandleCell>);

enum class MigrateAnswer {
  kSuccess,  // the owner now holds `to` where it held `from`
  kAgain,    // not now (the kernel's -EAGAIN): the pool retries on its next pass, then puts it back
  kFail,     // never mind (the kernel's other errors): put back at once
};

class HandleOwner {
 public:
  // Passes over its cells a handle compaction makes: kAgain answers are retried this many times in all.
  static constexpr int kMigratePasses = 3;
  // Cells a VisitCells call hands over at once, at most (a batch of entry moves shares one barrier).
  static constexpr std::size_t kVisitBatch = 256;

  virtual ~HandleOwner() = default;

  // Hands every cell the owner keeps to `visit`, in spans of at most kVisitBatch. The cells of a span must
  // stay where they are, and be changed only through HandleCell's atomic calls, until `visit` returns (hold
  // the owner's lock across the call). Cells holding the null handle, or another pool's handles, are skipped.
  // Runs on the thread that compacts; it must not call the pool's compaction (compact, compact_handles,
  // defragment) nor pin or free a handle of the cells it is visiting.
  virtual void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) = 0;

  // The owner may refuse to let `h`, held in `cell`, move now (false). Called before the entry is claimed.
  virtual bool Isolate(HandleCell& cell, Handle h) {
    (void)cell;
    (void)h;
    return true;
  }
  // Store `to` where `from` was. Called with the entry claimed: readers of `from` wait until the call returns
  // (pinning or freeing `from` here would wait for itself). On kAgain and kFail the cell must still hold `from`.
  virtual MigrateAnswer Migrate(HandleCell& cell, Handle from, Handle to) {
    return cell.compare_exchange(from, to) ? MigrateAnswer::kSuccess : MigrateAnswer::kAgain;
  }
  // The isolated `h` stays where it is (a kFail answer, kAgain after the last pass, or no room in the table).
  virtual void Putback(HandleCell& cell, Handle h) {
    (void)cell;
    (void)h;
  }

 protected:
  // For VisitCells: hands `cell_of(element)` (a HandleCell*) of every element of `range` to `visit`, in spans
  // of kVisitBatch.
  template <typename Range, typename CellOf>
  static void VisitInBatches(Range& range, CellOf cell_of,
                             const std::function<void(std::span<HandleCell* const>)>& visit) {
    std::array<HandleCell*, kVisitBatch> batch;
    std::size_t n = 0;
    for (auto& element : range) {
      batch[n++] = cell_of(element);
      if (n == kVisitBatch) {
        visit(std::span<HandleCell* const>(batch.data(), n));
        n = 0;
      }
    }
    if (n > 0) visit(std::span<HandleCell* const>(batch.data(), n));
  }
};

}  // namespace mova

#endif  // MOVA_HANDLE_OWNER_H_
