// alloc/c_api_pool.h — what a mova_pool* of the C API (mova/mova.h) is: the C++ pool it wraps. Internal: for
// alloc/c_api.cc and for tools that check the C API against the C++ pool inside it (stress/).
#ifndef MOVA_ALLOC_C_API_POOL_H_
#define MOVA_ALLOC_C_API_POOL_H_

#include <memory>
#include <vector>

#include "mova/handle_owner.h"
#include "mova/mova.h"
#include "mova/pool.h"

// A C owner (mova_register_owner) as the pool's HandleOwner: its ops called with its context. A C cell is a
// mova_handle (uint64_t) that the pool reads and writes as a HandleCell: the same 8 bytes, atomically.
struct mova_owner final : mova::HandleOwner {
  mova_owner_ops ops;
  void* ctx;
  mova_owner(const mova_owner_ops& o, void* c) : ops(o), ctx(c) {}
  void VisitCells(const std::function<void(std::span<mova::HandleCell* const>)>& visit) override;
  bool Isolate(mova::HandleCell& cell, mova::Handle h) override;
  mova::MigrateAnswer Migrate(mova::HandleCell& cell, mova::Handle from, mova::Handle to) override;
  void Putback(mova::HandleCell& cell, mova::Handle h) override;
};

struct mova_pool {
  std::unique_ptr<mova::Pool> pool;
  std::vector<std::unique_ptr<mova_owner>> owners;  // registered; unregistered before the pool goes
  ~mova_pool() {
    for (const std::unique_ptr<mova_owner>& o : owners) pool->unregister_owner(*o);
  }
};

#endif  // MOVA_ALLOC_C_API_POOL_H_
