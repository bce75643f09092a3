// tests/cache_affinities_test.cc — CacheAffinities: the lowest free affinity is handed out, never kNone; a
// released one is live no more and goes to the next cache; past kCount - 1 caches at once, kNone.
#include "alloc/cache_affinities.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace mova::alloc {
namespace {

TEST(CacheAffinities, HandsOutTheLowestFreeAffinityAndKnowsWhichAreLive) {
  CacheAffinities caches;
  EXPECT_FALSE(caches.Live(CacheAffinities::kNone));
  EXPECT_FALSE(caches.Live(1));
  const std::uint16_t a = caches.Acquire(), b = caches.Acquire(), c = caches.Acquire();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(c, 3);
  EXPECT_TRUE(caches.Live(a) && caches.Live(b) && caches.Live(c));
  caches.Release(b);
  EXPECT_FALSE(caches.Live(b));
  EXPECT_TRUE(caches.Live(a) && caches.Live(c));
  EXPECT_EQ(caches.Acquire(), b);  // the lowest free: the next cache adopts b's blocks
  caches.Release(CacheAffinities::kNone);  // nothing to do
  EXPECT_FALSE(caches.Live(CacheAffinities::kNone));
  EXPECT_FALSE(caches.Live(CacheAffinities::kCount));  // out of range
}

TEST(CacheAffinities, PastTheLastAffinityCachesGetNoneUntilOneIsReleased) {
  CacheAffinities caches;
  std::vector<std::uint16_t> held;
  for (std::size_t i = 1; i < CacheAffinities::kCount; ++i) held.push_back(caches.Acquire());
  for (std::size_t i = 0; i < held.size(); ++i) ASSERT_EQ(held[i], i + 1);
  EXPECT_EQ(caches.Acquire(), CacheAffinities::kNone);
  EXPECT_EQ(caches.Acquire(), CacheAffinities::kNone);
  caches.Release(700);
  EXPECT_EQ(caches.Acquire(), 700);
  EXPECT_EQ(caches.Acquire(), CacheAffinities::kNone);
}

}  // namespace
}  // namespace mova::alloc
