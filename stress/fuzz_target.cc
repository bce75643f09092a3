// stress/fuzz_target.cc — see fuzz_target.h.
#include "stress/fuzz_target.h"

#include <string>

#include "alloc/c_api_pool.h"

namespace mova::stress {

absl::Status FromC(mova_status s) {
  const std::string message = mova_last_error();
  switch (s) {
    case MOVA_OK:
      return absl::OkStatus();
    case MOVA_INVALID_ARGUMENT:
      return absl::InvalidArgumentError(message);
    case MOVA_STALE_HANDLE:
      return absl::NotFoundError(message);
    case MOVA_PINNED:
      return absl::FailedPreconditionError(message);
    case MOVA_EXHAUSTED:
      return absl::ResourceExhaustedError(message);
    case MOVA_DATA_LOSS:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<CTarget>> CTarget::Create(const mova_options& options) {
  mova_pool* pool = nullptr;
  if (absl::Status s = FromC(mova_pool_create(&options, &pool)); !s.ok()) return s;
  return std::unique_ptr<CTarget>(new CTarget(pool));
}

absl::StatusOr<Handle> CTarget::Allocate(std::size_t size) {
  mova_handle h = 0;
  if (absl::Status s = FromC(mova_alloc(pool_, size, &h)); !s.ok()) return s;
  return Handle{h};
}

absl::Status CTarget::Free(Handle h) { return FromC(mova_free(pool_, h.raw)); }

absl::StatusOr<std::size_t> CTarget::SizeOf(Handle h) {
  std::size_t size = 0;
  if (absl::Status s = FromC(mova_size_of(pool_, h.raw, &size)); !s.ok()) return s;
  return size;
}

absl::StatusOr<std::span<std::byte>> CTarget::PinDetached(Handle h, bool write) {
  void* data = nullptr;
  std::size_t size = 0;
  if (absl::Status s = FromC(mova_pin(pool_, h.raw, write ? 1 : 0, &data, &size)); !s.ok()) return s;
  return std::span<std::byte>(static_cast<std::byte*>(data), size);
}

absl::Status CTarget::Unpin(Handle h) { return FromC(mova_unpin(pool_, h.raw)); }

std::uint64_t CTarget::Compact() {
  mova_compact_result r{};
  (void)mova_compact(pool_, &r);
  return r.objects_moved;
}

std::uint64_t CTarget::Defragment() {
  mova_defrag_result r{};
  (void)mova_defragment(pool_, &r);
  return r.blocks_migrated;
}

Pool& CTarget::pool() { return *pool_->pool; }

}  // namespace mova::stress
