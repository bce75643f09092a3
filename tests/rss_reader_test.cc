// The measuring code itself: RSS from /proc, residency by mincore, mappings from /proc/self/maps and huge
// pages from /proc/self/smaps follow a known pattern.
#include "bench/rss.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "tests/sanitizers.h"

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
  ASSERT_EQ(madvise(p, kSize / 4, MADV_DONTNEED), 0);
  EXPECT_EQ(ResidentBytesIn(p, kSize).value(), kSize / 4);
  // The process's RSS counts what else it maps: a sanitizer's allocator and shadow memory grow it by their
  // own amounts (an ASan build once read 37.9 MB for 32 MiB + 4 MiB), so it is bounded only without one.
  if (!::mova::testing::kSanitized) {
    EXPECT_GE(grown, kSize / 2 - (1 << 20));
    EXPECT_LE(grown, kSize / 2 + (4 << 20));
    EXPECT_LE(base.Delta(), kSize / 4 + (4 << 20));
  }
  // Unaligned ranges are widened to whole pages.
  EXPECT_EQ(ResidentBytesIn(static_cast<char*>(p) + kSize / 4 + 100, 10).value(), 4096u);
  munmap(p, kSize);
}

TEST(RssReader, CountsMappingsAndHugePagesInARange) {
  constexpr std::size_t kHuge = 2 << 20, kSize = 4 * kHuge;
  void* raw = mmap(nullptr, kSize + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  auto* p = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
  EXPECT_EQ(MappingsIn(p, kSize).value(), 1u);
  ASSERT_EQ(mprotect(p + kHuge, 4096, PROT_READ), 0);  // splits the mapping in three
  EXPECT_EQ(MappingsIn(p, kSize).value(), 3u);
  EXPECT_EQ(MappingsIn(p, 4096).value(), 1u);
  EXPECT_EQ(AnonHugeBytesIn(p, kSize).value(), 0u);
  std::memset(p + 2 * kHuge, 1, kHuge);
  if (madvise(p + 2 * kHuge, kHuge, 25 /* MADV_COLLAPSE */) == 0) {
    EXPECT_EQ(AnonHugeBytesIn(p + 2 * kHuge, 1).value(), kHuge);
  }
  munmap(raw, kSize + kHuge);
}

}  // namespace
}  // namespace mova::bench
