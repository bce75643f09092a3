// buffers/movable_buffer_store.h — growable byte arrays that the movable-block framework may move: the
// framework's second driver, which is not the pool.
//
// Types: MovableBufferStore (owns an arena of page runs, the buffer records and a BlockMigrator), BufferId
// (index + generation, so a destroyed buffer's id is detected), PinnedBuffer (RAII: the buffer's bytes stay
// put while it lives).
// Each buffer is one page run of the store's arena holding its bytes, and a record that never moves: the
// MovableBlock the framework sees, the run, the size, and a state word — pin count | MOVING | DEAD — with the
// same protocol as a handle entry: a pin is a CAS that waits while the buffer moves; a mover (Migrate, or
// Append growing the buffer) claims the word from zero pins to MOVING, copies, publishes, clears MOVING.
// Locks: records_mu_ (the record table; leaf). The framework's block lock of a buffer is held by Append (so
// isolation skips a buffer being written) and by the framework across isolate / migrate / putback.
#ifndef MOVA_BUFFERS_MOVABLE_BUFFER_STORE_H_
#define MOVA_BUFFERS_MOVABLE_BUFFER_STORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "alloc/arena.h"
#include "base/mutex.h"
#include "compactor/block_migrator.h"
#include "compactor/movable_block.h"
#include "mova/stats.h"
#include "os/os.h"

namespace mova::buffers {

struct BufferId {
  std::uint32_t index = 0;
  std::uint32_t generation = 0;  // odd while the buffer lives
};

class MovableBufferStore;

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = o.state_;
      bytes_ = o.bytes_;
      o.state_ = nullptr;
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() { reset(); }

  std::span<std::byte> bytes() const { return bytes_; }
  void reset();

 private:
  friend class MovableBufferStore;
  PinnedBuffer(std::atomic<std::uint64_t>* state, std::span<std::byte> bytes) : state_(state), bytes_(bytes) {}
  std::atomic<std::uint64_t>* state_ = nullptr;
  std::span<std::byte> bytes_;
};

class MovableBufferStore final : public compactor::MovableOps {
 public:
  static absl::StatusOr<std::unique_ptr<MovableBufferStore>> Create(Bytes capacity, os::Os* os = nullptr);
  ~MovableBufferStore() override;

  // A new empty buffer with room for `capacity` bytes (at least one page).
  absl::StatusOr<BufferId> Create(std::size_t capacity);
  // Appends bytes, growing the buffer (a move to a bigger run) if needed. FailedPrecondition if growing
  // is needed while the buffer is pinned.
  absl::Status Append(BufferId id, std::span<const std::byte> data);
  absl::StatusOr<PinnedBuffer> Pin(BufferId id);
  absl::StatusOr<std::size_t> SizeOf(BufferId id);
  // FailedPrecondition while pinned; NotFound for a destroyed id.
  absl::Status Destroy(BufferId id);

  // Moves buffers from the highest regions into room below, as the pool's defragment() does for blocks.
  DefragResult Defragment();
  compactor::MigrationStats migration_stats() const { return migrator_.stats(); }
  std::vector<std::uint32_t> RegionUsage() const { return arena_->RegionUsage(); }

  // compactor::MovableOps
  bool Isolate(compactor::MovableBlock& block, compactor::MigrateMode mode) override;
  compactor::MigrateResult Migrate(compactor::MovableBlock& dst, compactor::MovableBlock& src,
                                   compactor::MigrateMode mode) override;
  void Putback(compactor::MovableBlock& block) override;
  void Release(compactor::MovableBlock& block) override;

 private:
  static constexpr std::uint64_t kPinOne = 1;
  static constexpr std::uint64_t kPinMask = (std::uint64_t{1} << 32) - 1;
  static constexpr std::uint64_t kMoving = std::uint64_t{1} << 32;
  static constexpr std::uint64_t kDead = std::uint64_t{1} << 33;

  struct Buffer {
    compactor::MovableBlock movable;
    std::atomic<std::uint64_t> state{kDead};  // pins | kMoving | kDead
    std::atomic<std::uint32_t> generation{0};
    std::atomic<std::uint64_t> run{0};         // packed PageRun; changed only while kMoving is held
    std::atomic<std::size_t> size{0};          // bytes in use; changed under the block lock
    std::uint32_t index = 0;                   // in records_
  };
  explicit MovableBufferStore(std::unique_ptr<alloc::Arena> arena) : arena_(std::move(arena)) {}
  Buffer* Find(BufferId id);
  // Claims `b` for a move (zero pins → MOVING); false if pinned or dead.
  static bool ClaimForMove(Buffer& b);
  static void EndMove(Buffer& b);
  static alloc::PageRun RunOf(const Buffer& b) {
    const std::uint64_t v = b.run.load(std::memory_order_acquire);
    return alloc::PageRun{static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(v >> 32)};
  }
  static void SetRun(Buffer& b, alloc::PageRun r) {
    b.run.store(std::uint64_t{r.first} | (std::uint64_t{r.count} << 32), std::memory_order_release);
  }
  std::byte* Data(const Buffer& b) const { return arena_->PageAddress(RunOf(b).first); }

  std::unique_ptr<alloc::Arena> arena_;
  compactor::BlockMigrator migrator_;
  Mutex records_mu_;
  std::deque<Buffer> records_ ABSL_GUARDED_BY(records_mu_);  // never shrinks: records never move
  std::vector<std::uint32_t> free_records_ ABSL_GUARDED_BY(records_mu_);
  Mutex defrag_mu_;  // one Defragment at a time
};

}  // namespace mova::buffers

#endif  // MOVA_BUFFERS_MOVABLE_BUFFER_STORE_H_
