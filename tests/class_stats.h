// tests/class_stats.h — the stats row of the size class that serves a size, for tests that count a class's
// blocks and objects.
#ifndef MOVA_TESTS_CLASS_STATS_H_
#define MOVA_TESTS_CLASS_STATS_H_

#include <cstddef>

#include "alloc/size_class_map.h"
#include "mova/stats.h"

namespace mova::testing {

// A copy: callers pass pool->stats(), a temporary.
inline ClassStats StatsOf(const PoolStats& s, std::size_t size) {
  return s.classes[alloc::SizeClassMap().ClassFor(size).value()];
}

}  // namespace mova::testing

#endif  // MOVA_TESTS_CLASS_STATS_H_
