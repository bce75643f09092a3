// mova-kv/mova_store.cc — the ObjectStore on a mova Pool. A reference is a handle's raw bits, kept in the
// keyspace's cells; the keyspace is the pool's handle owner (SetOwner), so the defragmenter's handle compaction
// moves its entries into dense table pages and rewrites the cells. Reads are read sections through the cell
// (ReadGuard: no shared write, never a wait; only this server's thread frees or writes), so a compaction running
// on the defragmenter's thread may move an object while it is read — the read goes on at the old place — and a
// read racing a handle move goes on with the new handle.
#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mova-kv/object_store.h"
#include "mova/pool.h"

namespace mova::kv {
namespace {

class MovaStore final : public ObjectStore {
 public:
  explicit MovaStore(std::unique_ptr<Pool> pool) : pool_(std::move(pool)) {
    for (const ClassStats& c : pool_->stats().classes) slot_sizes_.push_back(c.slot_size);
    std::sort(slot_sizes_.begin(), slot_sizes_.end());
  }

  std::string_view name() const override { return "mova"; }

  absl::StatusOr<ObjectRef> Put(std::string_view key, std::span<const std::string_view> value_parts) override {
    absl::StatusOr<Handle> h = pool_->allocate(ObjectSize(key.size(), ValueSize(value_parts)));
    if (!h.ok()) return h.status();
    absl::StatusOr<Pinned> pinned = pool_->pin_owned(*h, Access::kWrite);
    if (!pinned.ok()) {
      (void)pool_->free(*h);
      return pinned.status();
    }
    WriteObject(pinned->mutable_data(), key, value_parts);
    return ObjectRef{h->raw};
  }

  absl::Status Read(const ObjectCell& cell, std::size_t size,
                    absl::FunctionRef<void(std::string_view, std::string_view)> fn) override {
    // A read section: the defragmenter's thread may move the object meanwhile, and the read never waits for it.
    const ReadGuard section = pool_->read_section();
    absl::StatusOr<std::span<const std::byte>> bytes = section.read(cell);
    if (!bytes.ok()) return bytes.status();
    if (bytes->size() != size) {
      return absl::DataLossError(
          absl::StrFormat("object %#x: %u bytes; the index says %u", cell.load().raw, bytes->size(), size));
    }
    std::string_view key, value;
    if (absl::Status s = SplitObject(bytes->data(), size, &key, &value); !s.ok()) return s;
    fn(key, value);
    return absl::OkStatus();
  }

  absl::Status Free(ObjectCell& cell, std::size_t) override { return pool_->free(cell); }

  // The class's slot; past the largest class, whole pages.
  std::size_t AllocationSize(const ObjectCell&, std::size_t size) const override {
    const auto it = std::lower_bound(slot_sizes_.begin(), slot_sizes_.end(), size);
    return it != slot_sizes_.end() ? *it : (size + 4095) & ~std::size_t{4095};
  }

  void SetOwner(HandleOwner* owner) override {
    if (owner_ != nullptr) pool_->unregister_owner(*owner_);  // waits for a compaction under way
    owner_ = owner;
    if (owner_ != nullptr) pool_->register_owner(*owner_);
  }

  AllocatorReport Report() override {
    const PoolStats s = pool_->stats();
    AllocatorReport r;
    // As jemalloc counts them (Redis's allocator_* fields): allocated is the size classes' bytes of live objects
    // (mova's slots; a huge object's pages) and the handle entries they need (8 bytes each), active the pages
    // that hold them — blocks and handle-table pages, so that a sparse table is fragmentation the thresholds
    // see, as sparse blocks are.
    r.allocated = s.slot_bytes + s.huge_bytes + kEntryBytes * s.live_objects;
    r.active = s.block_bytes + s.huge_bytes + s.handle_table_bytes;
    r.resident = s.resident_bytes;
    r.extra = {{"mova_live_bytes", s.live_bytes},
               {"mova_live_objects", s.live_objects},
               {"mova_slot_bytes", s.slot_bytes},
               {"mova_block_bytes", s.block_bytes},
               {"mova_huge_bytes", s.huge_bytes},
               {"mova_dirty_bytes", s.dirty_bytes},
               {"mova_handle_table_bytes", s.handle_table_bytes},
               {"mova_metadata_bytes", s.metadata_bytes},
               {"mova_compactions", s.compactions},
               {"mova_objects_moved", s.objects_moved},
               {"mova_bytes_moved", s.bytes_moved},
               {"mova_pages_compacted", s.pages_compacted},
               {"mova_defrag_runs", s.defrag_runs},
               {"mova_blocks_migrated", s.blocks_migrated},
               {"mova_regions_freed", s.regions_freed},
               {"mova_handles_owned", s.handles_owned},
               {"mova_handles_migrated", s.handles_migrated},
               {"mova_handle_pages_evacuated", s.handle_pages_evacuated},
               {"mova_discard_calls", s.discard_calls}};
    return r;
  }

  void Purge() override { pool_->release_free_memory(); }
  std::string MallocStats() override { return FormatStatsText(pool_->stats(), /*all_classes=*/false); }
  void ReleaseThreadCache() override { pool_->flush_thread_cache(); }
  bool CanDefragment() const override { return true; }

  DefragPass Defragment(std::chrono::microseconds budget) override {
    DefragPass pass;
    const absl::Time start = absl::Now();
    // What is left of the budget for the next part (a microsecond at least: zero would be no limit).
    const auto left = [&] {
      if (budget.count() == 0) return std::chrono::microseconds(0);
      return std::max(budget - absl::ToChronoMicroseconds(absl::Now() - start), std::chrono::microseconds(1));
    };
    // A part that ends with less than a tenth of the budget left ends the cycle too: the next part starts
    // with the next cycle's budget instead of making its first batch (every call makes one) past this one's.
    const auto spent = [&] { return budget.count() > 0 && left() * 10 < budget; };
    if (stage_ == Stage::kCompact) {
      const CompactResult c = pool_->compact(PassBudget{budget});
      pass.objects_moved = c.objects_moved;
      pass.bytes_moved = c.bytes_moved;
      pass.pages_released = c.pages_released;
      pass.handles_migrated = c.handles_migrated;  // a whole (unbudgeted) compact() ends with the handle table
      pass.handle_pages_released = c.handle_pages_released;
      pass.compact_ms = c.seconds * 1e3;
      if (!c.complete) {
        pass.complete = false;
        return pass;
      }
      stage_ = Stage::kMigrate;
      if (spent()) {
        pass.complete = false;
        return pass;
      }
    }
    if (stage_ == Stage::kMigrate) {
      const DefragResult d = pool_->defragment(PassBudget{left()});
      pass.blocks_migrated = d.blocks_migrated;
      pass.pages_migrated = d.pages_moved;
      pass.migrate_ms = d.seconds * 1e3;
      if (!d.complete) {
        pass.complete = false;
        return pass;
      }
      stage_ = Stage::kHandles;
      if (spent()) {
        pass.complete = false;
        return pass;
      }
    }
    // The handle table last: the owner's entries move out of sparse table pages (the keyspace's cells).
    const HandleCompactResult h = pool_->compact_handles(PassBudget{left()});
    pass.handles_migrated += h.entries_migrated;
    pass.handle_pages_released += h.pages_released;
    pass.handles_ms = h.seconds * 1e3;
    pass.complete = h.complete;
    if (h.complete) {
      stage_ = Stage::kCompact;  // the next call starts a new pass
      // The pass freed the server's own bookkeeping too (its scratch vectors, the table's page states): the
      // malloc heaps' free pages go back as well, as the pool's did (about 120 KB after Redis's defrag test).
      malloc_trim(0);
    }
    return pass;
  }

 private:
  static constexpr std::uint64_t kEntryBytes = 8;  // a handle-table entry
  enum class Stage { kCompact, kMigrate, kHandles };  // the part of the pass under way

  std::unique_ptr<Pool> pool_;
  std::vector<std::uint32_t> slot_sizes_;  // ascending
  HandleOwner* owner_ = nullptr;           // registered with pool_
  Stage stage_ = Stage::kCompact;          // the defragmenter's thread only
};

}  // namespace

absl::StatusOr<std::unique_ptr<ObjectStore>> MakeMovaStore(const PoolOptions& options) {
  absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(options);
  if (!pool.ok()) return pool.status();
  return std::unique_ptr<ObjectStore>(new MovaStore(std::move(*pool)));
}

}  // namespace mova::kv
