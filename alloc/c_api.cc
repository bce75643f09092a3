// alloc/c_api.cc — the C API (mova/mova.h) over mova::Pool.
#include "mova/mova.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "alloc/c_api_pool.h"
#include "mova/pool.h"

namespace {

// A C cell is read and written as the HandleCell the pool expects: one 8-byte word, atomically (HandleCell is
// standard-layout, its only member that word).
static_assert(sizeof(mova::HandleCell) == sizeof(mova_handle) && alignof(mova::HandleCell) == alignof(mova_handle) &&
              std::is_standard_layout_v<mova::HandleCell>);
mova::HandleCell* AsCell(mova_handle* cell) { return reinterpret_cast<mova::HandleCell*>(cell); }
const mova::HandleCell* AsCell(const mova_handle* cell) { return reinterpret_cast<const mova::HandleCell*>(cell); }
mova_handle* AsC(mova::HandleCell& cell) { return reinterpret_cast<mova_handle*>(&cell); }

thread_local std::string tls_last_error;

mova_status Report(const absl::Status& s) {
  if (s.ok()) return MOVA_OK;
  tls_last_error = std::string(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return MOVA_INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound:
      return MOVA_STALE_HANDLE;
    case absl::StatusCode::kFailedPrecondition:
      return MOVA_PINNED;
    case absl::StatusCode::kResourceExhausted:
      return MOVA_EXHAUSTED;
    case absl::StatusCode::kDataLoss:
      return MOVA_DATA_LOSS;
    default:
      return MOVA_INTERNAL;
  }
}

mova_status NullArgument(const char* what) {
  tls_last_error = std::string(what) + " is NULL";
  return MOVA_INVALID_ARGUMENT;
}

void Copy(const mova::CompactResult& r, mova_compact_result* result) {
  if (result != nullptr) {
    *result = mova_compact_result{r.objects_moved, r.bytes_moved, r.blocks_released, r.pages_released,
                                  r.objects_skipped, r.seconds};
  }
}
void Copy(const mova::DefragResult& r, mova_defrag_result* result) {
  if (result != nullptr) {
    *result = mova_defrag_result{r.regions_freed, r.blocks_migrated, r.blocks_failed, r.pages_moved,
                                 r.moves_uffd,    r.moves_mremap,    r.moves_copy,    r.seconds};
  }
}
// One step of a pass (Pool::compact or Pool::defragment with a PassBudget).
template <typename Result, typename CResult>
mova_status Step(mova_pool* pool, std::uint32_t budget_us, CResult* result, int* complete,
                 Result (mova::Pool::*step)(mova::PassBudget)) {
  if (pool == nullptr) return NullArgument("pool");
  if (budget_us == 0) return Report(absl::InvalidArgumentError("budget_us must be positive"));
  const Result r = (pool->pool.get()->*step)(mova::PassBudget{std::chrono::microseconds(budget_us)});
  Copy(r, result);
  if (complete != nullptr) *complete = r.complete ? 1 : 0;
  return MOVA_OK;
}

}  // namespace

extern "C" {

const char* mova_version(void) { return MOVA_VERSION_STRING; }

void mova_options_init(mova_options* o) {
  if (o == nullptr) return;
  const mova::PoolOptions d;
  o->arena_capacity = d.arena_capacity.value();
  o->memory_limit = d.memory_limit.value();
  o->decay_ms = static_cast<uint32_t>(d.decay.count());
  o->max_handles = d.max_handles;
  o->checked = d.checked ? 1 : 0;
  o->move_by_userfaultfd = d.move_by_userfaultfd ? 1 : 0;
  o->move_by_mremap = d.move_by_mremap ? 1 : 0;
  o->collapse_dense_regions = d.collapse_dense_regions ? 1 : 0;
  o->background_interval_ms = static_cast<uint32_t>(d.background_interval.count());
  o->background_threshold = d.background_threshold;
  o->include_in_core_dumps = d.include_in_core_dumps ? 1 : 0;
  o->show_stats = static_cast<int>(d.show_stats);
  o->direct_compaction_us = static_cast<uint32_t>(d.direct_compaction.count());
}

mova_status mova_pool_create(const mova_options* options, mova_pool** out) {
  if (out == nullptr) return NullArgument("out");
  mova::PoolOptions o;
  if (options != nullptr) {
    o.arena_capacity = mova::Bytes(options->arena_capacity);
    o.memory_limit = mova::Bytes(options->memory_limit);
    o.decay = std::chrono::milliseconds(options->decay_ms);
    o.max_handles = options->max_handles;
    o.checked = options->checked != 0;
    o.move_by_userfaultfd = options->move_by_userfaultfd != 0;
    o.move_by_mremap = options->move_by_mremap != 0;
    o.collapse_dense_regions = options->collapse_dense_regions != 0;
    o.background_interval = std::chrono::milliseconds(options->background_interval_ms);
    o.background_threshold = options->background_threshold;
    o.include_in_core_dumps = options->include_in_core_dumps != 0;
    o.show_stats = static_cast<mova::StatsOutput>(options->show_stats);  // Create refuses values out of range
    o.direct_compaction = std::chrono::microseconds(options->direct_compaction_us);
  }
  absl::StatusOr<std::unique_ptr<mova::Pool>> pool = mova::Pool::Create(o);
  if (!pool.ok()) return Report(pool.status());
  *out = new mova_pool{std::move(*pool), {}};
  return MOVA_OK;
}

void mova_pool_destroy(mova_pool* pool) { delete pool; }

mova_status mova_alloc(mova_pool* pool, size_t size, mova_handle* out) {
  if (pool == nullptr) return NullArgument("pool");
  if (out == nullptr) return NullArgument("out");
  absl::StatusOr<mova::Handle> h = pool->pool->allocate(size);
  if (!h.ok()) return Report(h.status());
  *out = h->raw;
  return MOVA_OK;
}

mova_status mova_free(mova_pool* pool, mova_handle handle) {
  if (pool == nullptr) return NullArgument("pool");
  return Report(pool->pool->free(mova::Handle{handle}));
}

mova_status mova_size_of(mova_pool* pool, mova_handle handle, size_t* size) {
  if (pool == nullptr) return NullArgument("pool");
  if (size == nullptr) return NullArgument("size");
  absl::StatusOr<std::size_t> s = pool->pool->size_of(mova::Handle{handle});
  if (!s.ok()) return Report(s.status());
  *size = *s;
  return MOVA_OK;
}

mova_status mova_pin(mova_pool* pool, mova_handle handle, int writable, void** data, size_t* size) {
  if (pool == nullptr) return NullArgument("pool");
  if (data == nullptr) return NullArgument("data");
  absl::StatusOr<std::span<std::byte>> p =
      pool->pool->pin_detached(mova::Handle{handle}, writable ? mova::Access::kReadWrite : mova::Access::kRead);
  if (!p.ok()) return Report(p.status());
  *data = p->data();
  if (size != nullptr) *size = p->size();
  return MOVA_OK;
}

mova_status mova_unpin(mova_pool* pool, mova_handle handle) {
  if (pool == nullptr) return NullArgument("pool");
  return Report(pool->pool->unpin(mova::Handle{handle}));
}

struct mova_read_section {
  mova::ReadGuard guard;
};

mova_status mova_read_begin(mova_pool* pool, mova_read_section** out) {
  if (pool == nullptr) return NullArgument("pool");
  if (out == nullptr) return NullArgument("out");
  *out = new mova_read_section{pool->pool->read_section()};
  return MOVA_OK;
}

mova_status mova_read(mova_read_section* section, mova_handle handle, const void** data, size_t* size) {
  if (section == nullptr) return NullArgument("section");
  if (data == nullptr) return NullArgument("data");
  absl::StatusOr<std::span<const std::byte>> b = section->guard.read(mova::Handle{handle});
  if (!b.ok()) return Report(b.status());
  *data = b->data();
  if (size != nullptr) *size = b->size();
  return MOVA_OK;
}

void mova_read_end(mova_read_section* section) { delete section; }

mova_status mova_compact(mova_pool* pool, mova_compact_result* result) {
  if (pool == nullptr) return NullArgument("pool");
  Copy(pool->pool->compact(), result);
  return MOVA_OK;
}

mova_status mova_defragment(mova_pool* pool, mova_defrag_result* result) {
  if (pool == nullptr) return NullArgument("pool");
  Copy(pool->pool->defragment(), result);
  return MOVA_OK;
}

mova_status mova_compact_step(mova_pool* pool, uint32_t budget_us, mova_compact_result* result, int* complete) {
  return Step<mova::CompactResult>(pool, budget_us, result, complete, &mova::Pool::compact);
}

mova_status mova_defragment_step(mova_pool* pool, uint32_t budget_us, mova_defrag_result* result, int* complete) {
  return Step<mova::DefragResult>(pool, budget_us, result, complete, &mova::Pool::defragment);
}

mova_status mova_relocate(mova_pool* pool, const mova_handle* handles, size_t count, uint8_t* outcomes,
                          size_t* moved) {
  if (pool == nullptr) return NullArgument("pool");
  if (handles == nullptr && count > 0) return NullArgument("handles");
  static_assert(static_cast<int>(mova::RelocateOutcome::kNoMemory) == MOVA_RELOCATE_NO_MEMORY &&
                static_cast<int>(mova::RelocateOutcome::kNotIssued) == MOVA_RELOCATE_NOT_ISSUED);
  std::vector<mova::Handle> list(count);
  for (size_t i = 0; i < count; ++i) list[i] = mova::Handle{handles[i]};
  std::vector<mova::RelocateOutcome> out(count);
  const absl::StatusOr<mova::RelocateResult> r = pool->pool->relocate(list, out);
  if (!r.ok()) return Report(r.status());
  if (outcomes != nullptr) {
    for (size_t i = 0; i < count; ++i) outcomes[i] = static_cast<uint8_t>(out[i]);
  }
  if (moved != nullptr) *moved = r->moved;
  return MOVA_OK;
}

mova_status mova_register_owner(mova_pool* pool, const mova_owner_ops* ops, void* owner_ctx, mova_owner** out) {
  if (pool == nullptr) return NullArgument("pool");
  if (ops == nullptr || ops->visit_cells == nullptr) return NullArgument("ops or ops->visit_cells");
  if (out == nullptr) return NullArgument("out");
  pool->owners.push_back(std::make_unique<mova_owner>(*ops, owner_ctx));
  *out = pool->owners.back().get();
  pool->pool->register_owner(**out);
  return MOVA_OK;
}

mova_status mova_unregister_owner(mova_pool* pool, mova_owner* owner) {
  if (pool == nullptr) return NullArgument("pool");
  const auto it = std::find_if(pool->owners.begin(), pool->owners.end(),
                               [&](const std::unique_ptr<mova_owner>& o) { return o.get() == owner; });
  if (it == pool->owners.end()) {
    return Report(absl::InvalidArgumentError("mova_unregister_owner: not an owner registered with this pool"));
  }
  pool->pool->unregister_owner(*owner);
  pool->owners.erase(it);
  return MOVA_OK;
}

mova_status mova_compact_handles(mova_pool* pool, mova_handle_compact_result* result) {
  if (pool == nullptr) return NullArgument("pool");
  const mova::HandleCompactResult r = pool->pool->compact_handles();
  if (result != nullptr) {
    *result = mova_handle_compact_result{r.cells_owned, r.entries_migrated, r.isolate_failed, r.put_back,
                                         r.pages_released, r.seconds};
  }
  return MOVA_OK;
}

mova_status mova_pin_cell(mova_pool* pool, const mova_handle* cell, int writable, void** data, size_t* size) {
  if (pool == nullptr) return NullArgument("pool");
  if (cell == nullptr) return NullArgument("cell");
  // pin_detached with the cell's handle, again with its new one while the entry moved under the call: once
  // pinned, the entry stays, and so does the cell's handle.
  for (;;) {
    const mova::Handle h = AsCell(cell)->load();
    const mova_status s = mova_pin(pool, h.raw, writable, data, size);
    if (s == MOVA_OK || AsCell(cell)->load() == h) return s;
  }
}

mova_status mova_size_of_cell(mova_pool* pool, const mova_handle* cell, size_t* size) {
  if (pool == nullptr) return NullArgument("pool");
  if (cell == nullptr) return NullArgument("cell");
  if (size == nullptr) return NullArgument("size");
  absl::StatusOr<std::size_t> s = pool->pool->size_of(*AsCell(cell));
  if (!s.ok()) return Report(s.status());
  *size = *s;
  return MOVA_OK;
}

mova_status mova_free_cell(mova_pool* pool, mova_handle* cell) {
  if (pool == nullptr) return NullArgument("pool");
  if (cell == nullptr) return NullArgument("cell");
  return Report(pool->pool->free(*AsCell(cell)));
}

mova_status mova_stats_json(mova_pool* pool, char* buffer, size_t capacity, size_t* needed) {
  if (pool == nullptr) return NullArgument("pool");
  const std::string json = mova::FormatStatsJson(pool->pool->stats());
  if (needed != nullptr) *needed = json.size();
  if (buffer == nullptr || capacity < json.size() + 1) {
    tls_last_error = "stats buffer too small";
    return MOVA_EXHAUSTED;
  }
  std::memcpy(buffer, json.c_str(), json.size() + 1);
  return MOVA_OK;
}

const char* mova_last_error(void) { return tls_last_error.c_str(); }

}  // extern "C"

void mova_owner::VisitCells(const std::function<void(std::span<mova::HandleCell* const>)>& visit) {
  // The C owner hands over mova_handle* spans; the pool takes them as HandleCell* spans (the same words).
  struct Relay {
    const std::function<void(std::span<mova::HandleCell* const>)>* visit;
    static void Call(mova_handle* const* cells, size_t count, void* ctx) {
      std::span<mova_handle* const> given(cells, count);
      VisitInBatches(given, [](mova_handle* cell) { return AsCell(cell); }, *static_cast<const Relay*>(ctx)->visit);
    }
  } relay{&visit};
  ops.visit_cells(ctx, &Relay::Call, &relay);
}

bool mova_owner::Isolate(mova::HandleCell& cell, mova::Handle h) {
  return ops.isolate == nullptr || ops.isolate(ctx, AsC(cell), h.raw) != 0;
}

mova::MigrateAnswer mova_owner::Migrate(mova::HandleCell& cell, mova::Handle from, mova::Handle to) {
  if (ops.migrate == nullptr) return HandleOwner::Migrate(cell, from, to);
  switch (ops.migrate(ctx, AsC(cell), from.raw, to.raw)) {
    case MOVA_MIGRATE_SUCCESS: return mova::MigrateAnswer::kSuccess;
    case MOVA_MIGRATE_AGAIN: return mova::MigrateAnswer::kAgain;
    default: return mova::MigrateAnswer::kFail;
  }
}

void mova_owner::Putback(mova::HandleCell& cell, mova::Handle h) {
  if (ops.putback != nullptr) ops.putback(ctx, AsC(cell), h.raw);
}
