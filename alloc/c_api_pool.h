// alloc/c_api_pool.h — what a mova_pool* of the C API (mova/mova.h) is: the C++ pool it wraps. Internal: for
// alloc/c_api.cc and for tools that check the C API against the C++ pool inside it (stress/).
#ifndef MOVA_ALLOC_C_API_POOL_H_
#define MOVA_ALLOC_C_API_POOL_H_

#include <memory>

#include "mova/mova.h"
#include "mova/pool.h"

struct mova_pool {
  std::unique_ptr<mova::Pool> pool;
};

#endif  // MOVA_ALLOC_C_API_POOL_H_
