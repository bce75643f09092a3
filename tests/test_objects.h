// tests/test_objects.h — objects whose contents are a function of (seed, size), so a test can check that
// every byte survived any number of moves.
#ifndef MOVA_TESTS_TEST_OBJECTS_H_
#define MOVA_TESTS_TEST_OBJECTS_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "mova/pool.h"
#include "stress/content.h"

namespace mova::testing {

using stress::Fill;
using stress::Matches;
using stress::Mix;

// An object a test allocated, with what it needs to check the contents later.
struct Obj {
  Handle h;
  std::size_t size;
  std::uint64_t seed;
};

inline Handle AllocFilled(Pool& pool, std::size_t size, std::uint64_t seed) {
  Handle h = pool.allocate(size).value();
  Pinned p = pool.pin(h, Access::kWrite).value();
  Fill(p.mutable_bytes(), seed);
  return h;
}

inline bool Intact(Pool& pool, Handle h, std::size_t size, std::uint64_t seed) {
  absl::StatusOr<Pinned> p = pool.pin(h, Access::kRead);
  return p.ok() && p->size() == size && Matches(p->bytes(), seed);
}

// ~`bytes` of objects of four sizes, interleaved so every class's blocks spread over all regions; then 90%
// freed at random and the rest compacted inside their classes: dense blocks, scattered over many regions.
inline std::vector<Obj> ScatteredDenseBlocks(Pool& pool, std::uint32_t seed, std::size_t bytes = 40u << 20) {
  std::mt19937_64 rng(seed);
  const std::size_t sizes[] = {48, 200, 700, 3000};
  std::vector<Obj> all;
  std::size_t total = 0;
  for (std::size_t i = 0; total < bytes; ++i) {
    const std::size_t s = sizes[i % 4];
    all.push_back({AllocFilled(pool, s, i * 7919), s, i * 7919});
    total += s;
  }
  std::vector<Obj> kept;
  for (const Obj& o : all) {
    if (rng() % 10 == 0) {
      kept.push_back(o);
    } else {
      EXPECT_TRUE(pool.free(o.h).ok());
    }
  }
  pool.compact();
  return kept;
}

// Frees objs[0], objs[2], ... and returns the others; false in `*ok` if a free failed.
inline std::vector<Obj> FreeEveryOther(Pool& pool, const std::vector<Obj>& objs, bool* ok) {
  std::vector<Obj> survivors;
  *ok = true;
  for (std::size_t i = 0; i < objs.size(); ++i) {
    if (i % 2 != 0) {
      survivors.push_back(objs[i]);
    } else if (!pool.free(objs[i].h).ok()) {
      *ok = false;
    }
  }
  return survivors;
}

}  // namespace mova::testing

#endif  // MOVA_TESTS_TEST_OBJECTS_H_
