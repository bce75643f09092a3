// The measuring code itself: RSS from /proc and residency by mincore follow a known allocation pattern.
#include "bench/rss.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace mova::bench {
namespace {

TEST(RssReader, FollowsTouchedAndReleasedPages) {
  constexpr std::size_t kSize = 64 << 20;
  void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  RssBaseline base;
  EXPECT_EQ(ResidentBytesIn(p, kSize).value(), 0u);
  std::memset(p, 1, kSize / 2);
  EXPECT_EQ(ResidentBytesIn(p, kSize).value(), kSize / 2);
  const std::uint64_t grown = base.Delta();
  EXPECT_GE(grown, kSize / 2 - (1 << 20));
  EXPECT_LE(grown, kSize / 2 + (4 << 20));
  ASSERT_EQ(madvise(p, kSize / 4, MADV_DONTNEED), 0);
  EXPECT_EQ(ResidentBytesIn(p, kSize).value(), kSize / 4);
  EXPECT_LE(base.Delta(), kSize / 4 + (4 << 20));
  // Unaligned ranges are widened to whole pages.
  EXPECT_EQ(ResidentBytesIn(static_cast<char*>(p) + kSize / 4 + 100, 10).value(), 4096u);
  munmap(p, kSize);
}

}  // namespace
}  // namespace mova::bench
