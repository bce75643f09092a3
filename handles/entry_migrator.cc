// handles/entry_migrator.cc — see entry_migrator.h.
#include "handles/entry_migrator.h"

#include "handles/entry_word.h"
#include "handles/move_claims.h"

namespace mova::handles {

void EntryMigrator::Migrate(HandleOwner& owner, std::span<HandleCell* const> cells) {
  std::vector<Isolated> work;
  work.reserve(cells.size());  // once, not by doubling (each copy left behind is a hole in malloc's heap)
  for (HandleCell* cell : cells) {
    const Handle h = cell->load();
    if (h.is_null() || !table_.Evacuating(h.index())) continue;
    const HandleRef r = table_.Open(h);
    if (r.entry == nullptr) continue;  // not a handle of this table
    const Word w = r.entry->load(std::memory_order_acquire);
    if (GenOf(w) != r.gen) continue;  // the cell holds a stale handle: nothing of the owner's to move
    if (PinsOf(w) != 0 || IsMoving(w) || records_.PinnedByRecord(TagOf(h.index())) || !owner.Isolate(*cell, h)) {
      ++stats_.isolate_failed;
      continue;
    }
    ++stats_.isolated;
    work.push_back(Isolated{cell, h, r.gen});
  }
  for (int pass = 1; pass <= HandleOwner::kMigratePasses && !work.empty(); ++pass) {
    Pass(owner, work, /*last=*/pass == HandleOwner::kMigratePasses);
  }
}

void EntryMigrator::Pass(HandleOwner& owner, std::vector<Isolated>& work, bool last) {
  std::vector<Isolated> retry, claimed;
  MoveClaims claims(table_, records_);
  claimed.reserve(work.size());
  claims.Reserve(work.size());
  for (const Isolated& it : work) {
    const Word w = table_.entry(it.handle.index()).load(std::memory_order_acquire);
    if (GenOf(w) != it.gen) {  // freed while isolated: as good as migrated, and nothing to put back
      ++stats_.migrated;
      ++stats_.freed_while_isolated;
      continue;
    }
    if (it.cell->load() != it.handle) {  // the owner stored another handle there since
      owner.Putback(*it.cell, it.handle);
      ++stats_.put_back;
      continue;
    }
    if (!claims.Add(it.handle.index(), OffsetOf(w))) {  // pinned or moving now
      ++stats_.again;
      retry.push_back(it);
      continue;
    }
    claimed.push_back(it);
  }
  claims.Confirm();
  std::size_t kept = 0;
  for (std::size_t i = 0; i < claims.size(); ++i) kept += claims.kept(i) ? 1 : 0;
  fresh_.assign(kept, 0);
  std::size_t got = 0;
  if (kept > 0) {
    absl::StatusOr<std::size_t> n = table_.Acquire(std::span<std::uint32_t>(fresh_), HandleTable::Order::kDense);
    got = n.ok() ? *n : 0;
  }
  returned_.clear();
  std::size_t f = 0;
  for (std::size_t i = 0; i < claims.size(); ++i) {
    const Isolated& it = claimed[i];
    if (!claims.kept(i)) {  // a record named it at the barrier: pinned or being freed
      ++stats_.again;
      retry.push_back(it);
      continue;
    }
    if (f == got) {  // no room in the table's other pages
      claims.GiveUp(i);
      ++stats_.again;
      retry.push_back(it);
      continue;
    }
    const std::uint32_t to_index = fresh_[f++];
    const std::uint64_t offset = OffsetOf(claims.word(i));
    const std::uint16_t gen = Publish(table_.entry(to_index), offset);
    rebind_(offset, to_index);
    const Handle to = table_.MakeHandle(to_index, gen, it.handle.size_field());
    const MigrateAnswer answer = owner.Migrate(*it.cell, it.handle, to);
    if (answer == MigrateAnswer::kSuccess) {
      claims.Retire(i);
      returned_.push_back(it.handle.index());
      ++stats_.migrated;
      continue;
    }
    rebind_(offset, it.handle.index());
    Unpublish(table_.entry(to_index));
    returned_.push_back(to_index);
    claims.GiveUp(i);
    if (answer == MigrateAnswer::kFail) {
      owner.Putback(*it.cell, it.handle);
      ++stats_.put_back;
    } else {
      ++stats_.again;
      retry.push_back(it);
    }
  }
  for (; f < got; ++f) returned_.push_back(fresh_[f]);  // free entries, never published
  if (!returned_.empty()) table_.Return(returned_);
  if (last) {
    for (const Isolated& it : retry) owner.Putback(*it.cell, it.handle);
    stats_.put_back += retry.size();
    retry.clear();
  }
  work.swap(retry);
}

}  // namespace mova::handles
