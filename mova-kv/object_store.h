// mova-kv/object_store.h — where keys and values live: one object per key, holding the key and its value.
//
// Types: ObjectRef, ObjectCell, AllocatorReport, DefragPass, ObjectStore; MakeMovaStore (a mova Pool: objects
// behind handles, compacted by moving them) and MakeMallocStore (malloc / free: glibc's, or jemalloc's or
// mimalloc's by LD_PRELOAD — the control that tells the server's own costs from the allocator's).
// Invariants: an object is [key length: 4 bytes][key][value]; an ObjectRef names one live object until Free;
// the caller keeps each object's size and passes it back (a store may check it, none needs to store it).
// The caller keeps each reference in an ObjectCell and reads and frees through the cell: a store whose
// references move (the mova store renumbers the handles of its owner's cells, mova/handle_owner.h) rewrites
// the cells it was given by SetOwner.
// Only the server's thread calls Put, Read, Free and SetOwner; Report and Defragment may run on another thread
// (the active defragmenter) at the same time, and Defragment visits the owner's cells from there.
#ifndef MOVA_KV_OBJECT_STORE_H_
#define MOVA_KV_OBJECT_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/handle_owner.h"
#include "mova/pool_options.h"

namespace mova::kv {

using ObjectRef = std::uint64_t;  // what Put returned: a mova handle's bits, or an address
// Where the caller keeps a reference: one word, read and written atomically, which a store may rewrite while
// the object lives (mova's HandleCell; a malloc store's cells hold addresses and never change).
using ObjectCell = HandleCell;

// The allocator's view of memory, with Redis's INFO field names where Redis has one.
struct AllocatorReport {
  std::uint64_t allocated = 0;  // allocator_allocated: bytes handed out
  std::uint64_t active = 0;     // allocator_active: pages holding objects
  std::uint64_t resident = 0;   // allocator_resident: everything the allocator keeps resident
  std::vector<std::pair<std::string, std::uint64_t>> extra;  // the store's own fields (mova_*), in order
};

// What one defragmentation pass did.
struct DefragPass {
  std::uint64_t objects_moved = 0;   // compaction: objects moved out of sparse blocks
  std::uint64_t bytes_moved = 0;
  std::uint64_t pages_released = 0;  // compaction: pages given back
  std::uint64_t blocks_migrated = 0; // block migration: whole blocks moved down
  std::uint64_t pages_migrated = 0;
  std::uint64_t handles_migrated = 0;       // handle compaction: the owner's entries moved to dense pages
  std::uint64_t handle_pages_released = 0;  // and the handle-table pages given back
  double compact_ms = 0;             // the three parts' times
  double migrate_ms = 0;
  double handles_ms = 0;
  bool complete = true;              // false: the budget ran out; the next call goes on
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual std::string_view name() const = 0;

  // A new object holding `key` and the concatenation of `value_parts`. kResourceExhausted when the memory runs
  // out (nothing is changed then).
  virtual absl::StatusOr<ObjectRef> Put(std::string_view key, std::span<const std::string_view> value_parts) = 0;
  // Calls `fn` with the key and value of the object `cell` names, valid during the call only. `size` is the
  // object's size (ObjectSize of its key and value), which the caller keeps: a store need not.
  virtual absl::Status Read(const ObjectCell& cell, std::size_t size,
                            absl::FunctionRef<void(std::string_view key, std::string_view value)> fn) = 0;
  // Frees the object `cell` names and stores the null reference in the cell.
  virtual absl::Status Free(ObjectCell& cell, std::size_t size) = 0;
  // The bytes the allocator handed out for the object (its size class), as Redis counts used_memory with
  // malloc_usable_size; the same for an object all its life.
  virtual std::size_t AllocationSize(const ObjectCell& cell, std::size_t size) const = 0;
  // `owner` keeps the cells of every object (nullptr: nobody, from now on). A store whose references move
  // rewrites them through it (the mova store registers it with its pool, and Defragment compacts the handle
  // table by its cells); the others ignore it. The owner must outlive the registration.
  virtual void SetOwner(HandleOwner* owner) { (void)owner; }

  virtual AllocatorReport Report() = 0;
  // Gives free pages back to the kernel (MEMORY PURGE).
  virtual void Purge() = 0;
  // The allocator's own report, for MEMORY MALLOC-STATS; Redis's answer when the allocator has none.
  virtual std::string MallocStats() { return "Stats not supported for the current allocator"; }
  // Called on the server's thread before a defragmentation pass starts: what the thread keeps aside for its
  // next allocations goes back, so that the pass can compact it (the mova store's thread cache, whose slots
  // keep their blocks in place; mova empties the caches of threads not in a call when a pass begins, and the
  // server's thread, which starts passes, gives its own back here).
  virtual void ReleaseThreadCache() {}
  // True when Defragment moves objects (the active defragmenter has something to run).
  virtual bool CanDefragment() const = 0;
  // One step of a defragmentation pass (compaction, then block migration, then handle compaction), within
  // `budget` (zero: the whole pass); the pass is done when a step says it is complete, and the next call
  // starts a new one.
  virtual DefragPass Defragment(std::chrono::microseconds budget) = 0;

  // The bytes an object of this key and value asks the allocator for.
  static std::size_t ObjectSize(std::size_t key_len, std::size_t value_len) { return 4 + key_len + value_len; }

  // The object layout, for the stores: the value's length; writing an object of ObjectSize bytes; reading one
  // back (kDataLoss when its key length does not fit its size).
  static std::size_t ValueSize(std::span<const std::string_view> value_parts);
  static void WriteObject(std::byte* out, std::string_view key, std::span<const std::string_view> value_parts);
  static absl::Status SplitObject(const std::byte* bytes, std::size_t size, std::string_view* key,
                                  std::string_view* value);
};

absl::StatusOr<std::unique_ptr<ObjectStore>> MakeMovaStore(const PoolOptions& options);
std::unique_ptr<ObjectStore> MakeMallocStore();

}  // namespace mova::kv

#endif  // MOVA_KV_OBJECT_STORE_H_
