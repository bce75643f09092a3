// mova/pool.h — the public C++ API: a pool of movable objects behind handles.
//
// Types: Pool, Access, Pinned, ReadGuard (PoolOptions: mova/pool_options.h). A Pool hands out Handles to objects of
// any size; it may move an object whenever nobody has it pinned (compact()), and gives emptied memory back to the OS.
//
//   auto pool = mova::Pool::Create().value();
//   mova::Handle h = pool->allocate(100).value();
//   { mova::Pinned p = pool->pin(h, mova::Access::kWrite).value(); std::memcpy(p.mutable_data(), src, 100); }
//   pool->compact();                 // may move the object; h stays valid
//   pool->free(h);
//
// Errors (absl::Status codes): size 0 or above kMaxObjectSize → kInvalidArgument; a handle this pool never
// issued (null, forged, corrupted, another pool's) → kInvalidArgument; a stale or double-freed handle →
// kNotFound; freeing a pinned object, or unpin() of a handle that holds no pin_detached pin →
// kFailedPrecondition; memory limit, address space, handle table or OS memory exhausted →
// kResourceExhausted; pin count saturated (1023 pins of one object by pin(), besides the 7 pin_owned pins
// each thread keeps in its own record) → kResourceExhausted.
//
// What handle validation detects (free, pin, pin_owned, pin_detached, unpin, size_of, relocate and
// ReadGuard::read all use one routine; read and pin_owned open the handle inline with the routine's own first
// half, handles/inline_read.h and inline_pin.h):
//  - a stale handle (the object was freed: double free, use after free) → kNotFound, for certain while its
//    handle-table entry has had fewer than 32,767 further lives; an entry that reaches its last generation
//    rests until its table page empties, and the page then takes a new key (handles/handle_table.h). A stale
//    handle from before that re-key is refused as not issued, except with a chance of about 2^-20;
//  - a handle whose size field was changed → refused, for certain (the size is sealed into the check);
//  - the null handle, an index the pool never issued → kInvalidArgument, for certain;
//  - a handle of another pool of this process → refused, for certain when both handles' entries are on their
//    first generation, else except with a chance of about 2^-20 (pools have different keys until 2^20 pools
//    later); a handle kept from another process or run → refused except with a chance of about 2^-20;
//  - any other forged or corrupted bits → refused except with a chance of about 2^-20 (the 20-bit check),
//    lowered further by the size class check on free and pin (a read section's inline read does without it:
//    its 2^-20 stands alone).
// A refused handle changes nothing. In checked mode (PoolOptions::checked) every handle misuse aborts the
// process with a message naming the handle instead of returning a status; exhaustion is still returned; and a
// touch through a stale pointer of a page no longer in use aborts naming the address and the handle whose
// object was there (PoolOptions::checked says how).
// Checked mode also verifies, on every free and pin, that the descriptor of the object's block was not
// overwritten (kDataLoss, an abort naming the handle) — a write out of bounds of a neighbouring object shows
// up there.
//
// Thread safety: all members may be called from any thread at once, except that the Pool must outlive
// every call and every Pinned it issued. Each thread keeps a small cache of free slots and handle entries
// per pool; compact() asks every thread to return its cache on its next call, and returns its own at once.
#ifndef MOVA_POOL_H_
#define MOVA_POOL_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/export.h"
#include "mova/handle.h"
#include "mova/handle_owner.h"
#include "mova/internal/handles/inline_pin.h"
#include "mova/internal/handles/inline_read.h"
#include "mova/pool_options.h"
#include "mova/stats.h"
#include "mova/units.h"

namespace mova {
namespace alloc {
struct ThreadCache;  // alloc/thread_cache.h; opaque here
}  // namespace alloc

namespace internal {
// The calling thread's binding to the pool it used last (alloc/pool.cc keeps it): that pool's id, the thread's
// cache for it and the thread's access record in it. Initial-exec TLS, so that reading it is one %fs-relative
// load (from 32 bytes of the static TLS surplus glibc keeps for dlopen'ed libraries); the inline pin_owned
// reads the id and the record.
struct ThreadBinding {
  std::uint64_t pool_id = 0;  // pool ids start at 1 and are never reused
  alloc::ThreadCache* cache = nullptr;
  handles::AccessRecord* record = nullptr;
};
MOVA_API extern constinit thread_local ThreadBinding thread_binding [[gnu::tls_model("initial-exec")]];
}  // namespace internal

enum class Access { kRead, kWrite, kReadWrite };

// A pinned object: its bytes stay at data() and the object is not moved until the Pinned is destroyed or
// reset. Move-only; it may be handed to another thread and reset there.
class Pinned {
 public:
  Pinned() = default;
  // Nothing to unpin first: small enough to inline wherever a Pinned leaves its StatusOr.
  Pinned(Pinned&& o) noexcept { TakeFrom(o); }
  Pinned& operator=(Pinned&& o) noexcept {
    if (this != &o) {
      reset();
      TakeFrom(o);
    }
    return *this;
  }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  ~Pinned() { reset(); }

  const std::byte* data() const { return data_; }
  // The writable bytes; only for a pin taken with kWrite or kReadWrite (checked: aborts otherwise).
  MOVA_API std::byte* mutable_data() const;
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::span<std::byte> mutable_bytes() const { return {mutable_data(), size_}; }
  std::size_t size() const { return size_; }  // the size requested at allocation
  Access access() const { return access_; }
  bool valid() const { return slot_ != nullptr || entry_ != nullptr; }
  // Unpins now.
  void reset() {
    if (slot_ != nullptr) {
      slot_->store(0, std::memory_order_release);  // a pin in a thread's record (handles/access_records.h)
      slot_ = nullptr;
    } else if (entry_ != nullptr) {
      DropCountedPin(entry_);
      entry_ = nullptr;
    }
  }

 private:
  friend class Pool;
  Pinned(std::atomic<std::uint32_t>* slot, std::atomic<std::uint64_t>* entry, std::byte* data, std::size_t size,
         Access access)
      : slot_(slot), entry_(entry), data_(data), size_(size), access_(access) {}
  MOVA_API static void DropCountedPin(std::atomic<std::uint64_t>* entry);
  // Takes o's pin (this holds none): the fields, and o left holding nothing.
  void TakeFrom(Pinned& o) {
    slot_ = std::exchange(o.slot_, nullptr);
    entry_ = std::exchange(o.entry_, nullptr);
    data_ = o.data_;
    size_ = o.size_;
    access_ = o.access_;
  }

  // Exactly one is set while the Pinned holds a pin: the pin slot of a thread's access record it occupies
  // (pin_owned), or the handle entry whose counted pins include it (pin, or pin_owned with no free slot).
  std::atomic<std::uint32_t>* slot_ = nullptr;
  std::atomic<std::uint64_t>* entry_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  Access access_ = Access::kRead;
};

class ReadGuard;

class Pool {
 public:
  static constexpr std::size_t kMaxObjectSize = std::size_t{1} << 40;

  MOVA_API static absl::StatusOr<std::unique_ptr<Pool>> Create(const PoolOptions& options = {});
  MOVA_API ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A new object of `size` bytes (contents unspecified). Wherever it moves, it is 8 B aligned, and 16 B aligned
  // when `size` is a multiple of 16: aligned for any type that fits in it, as malloc's small sizes are.
  MOVA_API absl::StatusOr<Handle> allocate(std::size_t size);
  // Frees the object; the handle becomes stale.
  MOVA_API absl::Status free(Handle h);
  // Pins the object and returns where its bytes are; it is not moved while pinned. A free of the object from
  // another thread at the same moment has one outcome: the pin fails as stale, or the free is refused.
  MOVA_API absl::StatusOr<Pinned> pin(Handle h, Access access);
  // pin() for an object no other thread frees while it is pinned (one the caller owns, or whose frees it
  // orders after its unpin): the same Pinned, at a fraction of the cost — the pin lives in the calling thread's
  // own record, with no atomic read-modify-write (a mover reads the records after a barrier). A free of the
  // object by the pinning thread is refused as pinned; a free by another thread breaks this contract, and is
  // refused only in checked mode (when it comes after the pin), since reading every thread's record would put
  // a cache miss on every free.
  // Inline: the common case (this thread used this pool last, a class object that is not moving, a free pin
  // slot) is a few loads and stores to the thread's own record here (handles/inline_pin.h); anything else goes
  // to the library.
  [[gnu::always_inline]] absl::StatusOr<Pinned> pin_owned(Handle h, Access access) {
    // The fields are read from the variable itself, not through a reference to it (UBSan's null check of a
    // reference to an initial-exec thread-local misfires under GCC 12).
    std::atomic<std::uint32_t>* slot;
    std::byte* data;
    if (internal::thread_binding.pool_id == id_ &&
        handles::TryPinOwnedObject(pin_path_, h, *internal::thread_binding.record, &slot, &data)) [[likely]] {
      return Pinned(slot, nullptr, data, std::size_t{h.size_field()} + 1, access);
    }
    return PinOwnedSlow(h, access);
  }
  // Opens a read section on the calling thread (ReadGuard, above).
  MOVA_API ReadGuard read_section();
  // The size requested when the object was allocated.
  MOVA_API absl::StatusOr<std::size_t> size_of(Handle h);
  // For callers that cannot hold a Pinned (the C API, a callback chain): pins as pin() does and records the
  // pin with the pool; the bytes stay put until unpin(h). Writing is allowed only with kWrite / kReadWrite.
  MOVA_API absl::StatusOr<std::span<std::byte>> pin_detached(Handle h, Access access);
  // Drops one pin taken by pin_detached(h). kFailedPrecondition if the handle holds none: a Pinned's pin is
  // dropped only by that Pinned.
  MOVA_API absl::Status unpin(Handle h);

  // Object compaction (zsmalloc's zs_compact): in every class, moves objects from the emptiest blocks into
  // the fullest, skipping pinned ones, and releases emptied blocks; the emptiest block left gives its highest
  // objects to the room left, and blocks left partly filled give back their pages past the last slot in use;
  // then freed pages go back to the OS.
  MOVA_API CompactResult compact();
  // The same within `budget` (stats.h): stops after the batch of moves during which it ran out; the next call
  // starts with the class it stopped in.
  MOVA_API CompactResult compact(PassBudget budget);
  // Arena defragmentation with the movable-block framework (compactor/): from the highest region down,
  // isolates whole blocks (never one with a pinned object or a slot in a thread cache), moves each into room
  // in a lower region and republishes its handles, so high regions empty out. Run compact() first to make
  // the blocks dense; defragment() then makes the regions dense. Blocks move by memcpy for now.
  MOVA_API DefragResult defragment();
  // The same within `budget`: stops after the region during which it ran out; the next call goes on with the
  // regions below that one (a complete call starts again from the top).
  MOVA_API DefragResult defragment(PassBudget budget);
  // Batch relocation (the kernel's migrate_vma, in its three steps): the class objects `handles` name move,
  // in that order, into fresh blocks of their size classes, each after the one named before it — objects
  // read together end up together. Setup: every handle is validated and its object claimed (one claim each,
  // no wait: a pinned or busy object is skipped); pages: fresh blocks, the objects copied; finalize: the
  // moved objects published at their new places, the rest left where they were, and blocks the moves
  // emptied given back. `outcomes[i]` says what happened to `handles[i]`; the result counts them. A stale or
  // forged handle is an outcome, not an error (checked mode aborts on it, naming the handle, as every entry
  // point does). InvalidArgument if the spans differ in length. Runs under the compaction lock (compact(),
  // defragment() and compact_handles() wait for it, and it for them); claimed objects' users wait at most a
  // batch of moves.
  MOVA_API absl::StatusOr<RelocateResult> relocate(std::span<const Handle> handles,
                                                   std::span<RelocateOutcome> outcomes);
  // Gives back every freed page now, ignoring the decay delay, and each class's spare empty block.
  MOVA_API void release_free_memory();
  // Returns this thread's cached slots and handle entries to the pool.
  MOVA_API void flush_thread_cache();

  // ---- owned handles (mova/handle_owner.h) ----
  // `owner`'s cells become movable: compactions visit them from now on, until unregister_owner(owner) (which
  // waits for a compaction under way). Registering twice is registering once.
  MOVA_API void register_owner(HandleOwner& owner);
  MOVA_API void unregister_owner(HandleOwner& owner);
  // Handle-table compaction: moves owned entries out of the sparsest table pages into the free entries of
  // denser ones, by the kernel's isolate / migrate / putback rules (handle_owner.h), and gives the emptied
  // pages back. Unowned entries stay where they are. compact() ends with it; so does a background pass.
  MOVA_API HandleCompactResult compact_handles();
  // The same within `budget`: the owned cells are counted (a load per cell; the plan needs the count of
  // each table page) and the entries move for at most about that long — after the first batch, the rest is
  // left for the next call, which goes on counting where this one stopped — and the call says so in
  // `complete`; a sequence of calls ends with a complete one.
  MOVA_API HandleCompactResult compact_handles(PassBudget budget);
  // The calls above, through a cell: with the handle the cell holds, starting again with the cell's new
  // handle when its entry moved (or the owner stored another) meanwhile. free(cell) stores the null handle
  // in the cell once the object is freed (the owner orders its own writes of the cell with its frees).
  MOVA_API absl::StatusOr<Pinned> pin(const HandleCell& cell, Access access);
  MOVA_API absl::StatusOr<Pinned> pin_owned(const HandleCell& cell, Access access);
  MOVA_API absl::StatusOr<std::size_t> size_of(const HandleCell& cell);
  MOVA_API absl::Status free(HandleCell& cell);
  MOVA_API PoolStats stats() const;

  // The address ranges the pool reserved, by role ("objects", "handle table", "handle keys", "handle page
  // states", "handle page records", "page map"), for tools that measure residency (mincore, smaps).
  struct AddressRange {
    const std::byte* start = nullptr;
    std::size_t size = 0;
    const char* role = "";
  };
  MOVA_API std::vector<AddressRange> reserved_ranges() const;

  struct Impl;

 private:
  explicit Pool(std::unique_ptr<Impl> impl);
  // The whole pin_owned, validation and errors included (what pin_owned does when its inline path declines).
  MOVA_API absl::StatusOr<Pinned> PinOwnedSlow(Handle h, Access access);

  std::unique_ptr<Impl> impl_;
  std::uint64_t id_ = 0;  // the pool's id (Impl::id), for the inline pin_owned
  // What the inline pin_owned reads (set by Create; the default, which opens nothing, in checked mode and
  // without membarrier): a copy, so that a pin loads nothing of the Impl's.
  handles::PinPath pin_path_;
};

// A read section (Pool::read_section()): reads objects through handles without writing any shared cache line
// and without ever waiting for a mover. A compaction may move an object while a section reads it: the section
// goes on reading the old copy, which stays where it was, unchanged, until every section that began before the
// move was published has ended; then the pool gives the old place back (at the end of a compaction or a
// defragmentation, at release_free_memory(), at a background compactor's wakeup, or at once when an allocation
// would otherwise fail for memory). Writers pin: a read section never makes a write safe.
// Contract: the objects read are not freed, and not written, by another thread while the section reads them
// (as for pin_owned); a section belongs to the thread that opened it (it is not handed to another thread) and
// ends before its pool goes. Sections nest; the outermost one decides when old copies may go. The first
// section a pool ever has waits for a compaction under way to end (from then on moves copy, and keep their
// sources; a pool without read sections pays nothing for them) — so do not open a pool's first section inside
// one of its HandleOwner callbacks. A thread whose thread-locals are already being destroyed gets an ended
// section (its reads answer FailedPrecondition).
class ReadGuard {
 public:
  ReadGuard() = default;
  ReadGuard(ReadGuard&& o) noexcept { *this = std::move(o); }
  ReadGuard& operator=(ReadGuard&& o) noexcept {
    if (this != &o) {
      reset();
      impl_ = o.impl_;
      record_ = o.record_;
      path_ = o.path_;
      o.impl_ = nullptr;
      o.record_ = nullptr;
      o.path_ = {};
    }
    return *this;
  }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;
  ~ReadGuard() { reset(); }

  // The bytes of the object `h` names (its requested size), readable until this section ends. Errors as
  // Pool::pin's; FailedPrecondition on a guard whose section has ended (or a default-constructed one).
  // Inline: a live class object's read is a few loads here (handles/inline_read.h, installed with this header
  // as mova/internal/handles/); anything else — huge objects, refusals, checked mode — goes to the library.
  absl::StatusOr<std::span<const std::byte>> read(Handle h) const {
    std::span<const std::byte> bytes;
    if (handles::TryReadObject(path_, h, &bytes)) [[likely]] return bytes;
    return ReadSlow(h);
  }
  // The same through a cell: with the cell's new handle when its entry moved meanwhile.
  absl::StatusOr<std::span<const std::byte>> read(const HandleCell& cell) const {
    std::span<const std::byte> bytes;
    if (handles::TryReadObject(path_, cell.load(), &bytes)) [[likely]] return bytes;
    return ReadSlow(cell);
  }
  bool active() const { return impl_ != nullptr; }
  // Ends the section now.
  void reset() {
    if (impl_ != nullptr) End();
  }

 private:
  friend class Pool;
  ReadGuard(Pool::Impl* impl, handles::AccessRecord* record, const handles::ReadPath& path)
      : impl_(impl), record_(record), path_(path) {}
  MOVA_API void End();
  // The whole read, validation and errors included (what read() does when its inline path declines).
  MOVA_API absl::StatusOr<std::span<const std::byte>> ReadSlow(Handle h) const;
  MOVA_API absl::StatusOr<std::span<const std::byte>> ReadSlow(const HandleCell& cell) const;

  Pool::Impl* impl_ = nullptr;
  handles::AccessRecord* record_ = nullptr;  // the opening thread's record in that pool
  // A copy of the pool's while the section is open (one load less per read than a pointer to it); the
  // default, which opens nothing, when it has ended and in checked mode.
  handles::ReadPath path_;
};

}  // namespace mova

#endif  // MOVA_POOL_H_
