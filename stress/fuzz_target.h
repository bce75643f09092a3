// stress/fuzz_target.h — what the differential fuzzer drives: a pool through the C++ API or through the C API,
// behind one interface, so that one model checks both.
//
// Types: FuzzTarget, CppTarget, CTarget. Statuses of the C API are mapped back to absl codes the way
// alloc/c_api.cc maps them forward, so the model's expectations are the same for both.
#ifndef MOVA_STRESS_FUZZ_TARGET_H_
#define MOVA_STRESS_FUZZ_TARGET_H_

#include <cstddef>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/mova.h"
#include "mova/pool.h"

namespace mova::stress {

class FuzzTarget {
 public:
  virtual ~FuzzTarget() = default;
  virtual const char* api() const = 0;
  virtual absl::StatusOr<Handle> Allocate(std::size_t size) = 0;
  virtual absl::Status Free(Handle h) = 0;
  virtual absl::StatusOr<std::size_t> SizeOf(Handle h) = 0;
  virtual absl::StatusOr<std::span<std::byte>> PinDetached(Handle h, bool write) = 0;
  virtual absl::Status Unpin(Handle h) = 0;
  virtual std::uint64_t Compact() = 0;     // objects moved
  virtual std::uint64_t Defragment() = 0;  // blocks migrated
  virtual void ReleaseFreeMemory() = 0;
  virtual void FlushThreadCache() = 0;
  // The C++ pool for RAII pins and stats (the C target has one inside too).
  virtual Pool& pool() = 0;
};

class CppTarget final : public FuzzTarget {
 public:
  explicit CppTarget(std::unique_ptr<Pool> pool) : pool_(std::move(pool)) {}
  const char* api() const override { return "c++"; }
  absl::StatusOr<Handle> Allocate(std::size_t size) override { return pool_->allocate(size); }
  absl::Status Free(Handle h) override { return pool_->free(h); }
  absl::StatusOr<std::size_t> SizeOf(Handle h) override { return pool_->size_of(h); }
  absl::StatusOr<std::span<std::byte>> PinDetached(Handle h, bool write) override {
    return pool_->pin_detached(h, write ? Access::kReadWrite : Access::kRead);
  }
  absl::Status Unpin(Handle h) override { return pool_->unpin(h); }
  std::uint64_t Compact() override { return pool_->compact().objects_moved; }
  std::uint64_t Defragment() override { return pool_->defragment().blocks_migrated; }
  void ReleaseFreeMemory() override { pool_->release_free_memory(); }
  void FlushThreadCache() override { pool_->flush_thread_cache(); }
  Pool& pool() override { return *pool_; }

 private:
  std::unique_ptr<Pool> pool_;
};

// The C API over a pool made by mova_pool_create. The C++ pool inside is reached for RAII pins and stats
// only (struct mova_pool is defined by alloc/c_api.cc as holding it).
class CTarget final : public FuzzTarget {
 public:
  static absl::StatusOr<std::unique_ptr<CTarget>> Create(const mova_options& options);
  ~CTarget() override { mova_pool_destroy(pool_); }
  const char* api() const override { return "c"; }
  absl::StatusOr<Handle> Allocate(std::size_t size) override;
  absl::Status Free(Handle h) override;
  absl::StatusOr<std::size_t> SizeOf(Handle h) override;
  absl::StatusOr<std::span<std::byte>> PinDetached(Handle h, bool write) override;
  absl::Status Unpin(Handle h) override;
  std::uint64_t Compact() override;
  std::uint64_t Defragment() override;
  void ReleaseFreeMemory() override {}  // not in the C API
  void FlushThreadCache() override {}
  Pool& pool() override;

 private:
  explicit CTarget(mova_pool* pool) : pool_(pool) {}
  mova_pool* pool_;
};

// The absl status a C API status stands for.
absl::Status FromC(mova_status s);

}  // namespace mova::stress

#endif  // MOVA_STRESS_FUZZ_TARGET_H_
