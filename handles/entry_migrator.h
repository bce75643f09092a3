// handles/entry_migrator.h — moving owned handle entries out of evacuating table pages (handle compaction).
//
// Types: EntryMigrator, EntryMigrationStats.
// The kernel's movable-page rules, per entry (mova/handle_owner.h states them for owners). For one owner's
// span of cells, each whose handle names a live entry of a page under evacuation (HandleTable::Evacuating):
//  1. isolate: refused when the object is pinned (counted pins, a pin in any access record) or moving, or
//     when the owner's Isolate() says no;
//  2. up to HandleOwner::kMigratePasses passes over what is isolated: claim the entries (MoveClaims: MOVING,
//     one barrier for the pass, a claim a record names is given up), take new entries from the table's dense
//     pages (Acquire kDense), and for each kept claim: publish the new entry at the object's offset, point
//     the object's back-reference at it (the pool's Rebind), ask the owner (Migrate). kSuccess: the old entry
//     is retired (MoveClaims::Retire: waiters wake to a stale handle) and returned; kAgain: everything is
//     undone and the entry waits for the next pass; kFail: undone and put back at once;
//  3. an entry found freed at the start of a pass was freed while isolated: it counts as migrated, and is
//     not put back; one whose cell no longer holds its handle is put back; after the last pass, whatever is
//     still isolated is put back.
// Invariants: a new entry is published and rebound before the owner hears of it, so a reader that loads the
// new handle from the cell finds the object, and nothing else writes the back-reference (the caller holds
// the pool's compaction lock); every new entry not handed to the owner is unpublished and returned; Putback
// is called only for isolated entries, at most once each.
// Not thread-safe: one migrator, one mover (the pool's compaction lock).
#ifndef MOVA_HANDLES_ENTRY_MIGRATOR_H_
#define MOVA_HANDLES_ENTRY_MIGRATOR_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "handles/access_records.h"
#include "handles/handle_table.h"
#include "mova/handle_owner.h"

namespace mova::handles {

struct EntryMigrationStats {
  std::uint64_t isolated = 0;
  std::uint64_t isolate_failed = 0;        // pinned, moving, or refused by the owner
  std::uint64_t migrated = 0;              // including entries freed while isolated
  std::uint64_t freed_while_isolated = 0;
  std::uint64_t again = 0;                 // kAgain answers and claims given up (each retried or put back)
  std::uint64_t put_back = 0;              // kFail, kAgain after the last pass, cell changed, no room
};

class EntryMigrator {
 public:
  // Points the back-reference of the live object at arena offset `offset` (its block's back-map slot, or a
  // huge object's header) at entry `index`.
  using Rebind = std::function<void(std::uint64_t offset, std::uint32_t index)>;

  EntryMigrator(HandleTable& table, AccessRecords& records, Rebind rebind)
      : table_(table), records_(records), rebind_(std::move(rebind)) {}

  // Moves the entries of `cells` (kept by `owner`) that lie in pages under evacuation, by the rules above.
  void Migrate(HandleOwner& owner, std::span<HandleCell* const> cells);
  const EntryMigrationStats& stats() const { return stats_; }

 private:
  struct Isolated {
    HandleCell* cell;
    Handle handle;
    std::uint16_t gen;
  };
  // One pass over `work`: what is left for another pass stays in it.
  void Pass(HandleOwner& owner, std::vector<Isolated>& work, bool last);

  HandleTable& table_;
  AccessRecords& records_;
  Rebind rebind_;
  EntryMigrationStats stats_;
  std::vector<std::uint32_t> fresh_, returned_;  // scratch
};

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ENTRY_MIGRATOR_H_
