// Memory after churn, measured from the kernel's side as DESIGN.md says: fill 64 MiB with 16–512 B objects,
// free 90% at random, compact, and bound object storage and the whole pool by the live bytes. Bounds are on
// what the test controls — residency (mincore) of the pool's own reserved ranges — never on the process's
// RSS, which counts whatever else the process maps. Runs without sanitizers (their allocators change what the
// workload's bookkeeping costs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "bench/rss.h"
#include "mova/pool.h"
#include "tests/sanitizers.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

struct Obj {
  Handle h;
  std::uint32_t size;
};

TEST(RssBound, ThinOutThenCompact) {
  MOVA_SKIP_UNDER_SANITIZERS();
  constexpr std::uint64_t kFill = 64ull << 20;
  // The test's own bookkeeping is allocated and touched before the baseline, so it is not counted.
  std::vector<Obj> objs;
  objs.reserve(kFill / 200);
  std::fill_n(reinterpret_cast<char*>(objs.data()), objs.capacity() * sizeof(Obj), 0);
  std::mt19937_64 rng(2024);
  bench::RssBaseline baseline;
  auto pool = Pool::Create().value();

  std::uint64_t filled = 0;
  while (filled < kFill) {
    const std::uint32_t size = 16 + rng() % 497;
    Handle h = pool->allocate(size).value();
    Pinned p = pool->pin(h, Access::kWrite).value();
    std::memset(p.mutable_data(), static_cast<int>(size), size);
    objs.push_back({h, size});
    filled += size;
  }
  const std::uint64_t peak_rss = baseline.Delta();
  std::shuffle(objs.begin(), objs.end(), rng);
  const std::size_t keep = objs.size() / 10;
  for (std::size_t i = keep; i < objs.size(); ++i) { ASSERT_TRUE(pool->free(objs[i].h).ok()); }
  objs.resize(keep);
  std::uint64_t live = 0;
  for (const Obj& o : objs) live += o.size;
  const std::uint64_t before_compact = baseline.Delta();

  const CompactResult r = pool->compact();
  const PoolStats s = pool->stats();
  const std::uint64_t rss = baseline.Delta();  // printed, not bounded
  const Pool::AddressRange objects = pool->reserved_ranges()[0];
  const Pool::AddressRange table = pool->reserved_ranges()[1];
  const std::uint64_t object_resident = bench::ResidentBytesIn(objects.start, objects.size).value();
  const std::uint64_t table_resident = bench::ResidentBytesIn(table.start, table.size).value();
  std::uint64_t pool_resident = 0;
  for (const Pool::AddressRange& range : pool->reserved_ranges()) {
    pool_resident += bench::ResidentBytesIn(range.start, range.size).value();
  }

  std::printf("fill %.1f MiB (%zu objects), peak RSS %.1f MiB; after 90%% free: live %.2f MiB, RSS %.2f MiB\n",
              filled / 1048576.0, objs.size() * 10, peak_rss / 1048576.0, live / 1048576.0,
              before_compact / 1048576.0);
  std::printf("compact: %lu objects moved, %lu pages released, %.1f ms\n", (unsigned long)r.objects_moved,
              (unsigned long)r.pages_released, r.seconds * 1e3);
  std::printf("after: object storage %.2f MiB (%.3f x live), handle table %.2f MiB, pool ranges resident %.2f MiB "
              "(%.3f x live; limit live + table + 1 MiB = %.2f MiB); process anonymous RSS growth %.2f MiB\n",
              object_resident / 1048576.0, double(object_resident) / live, table_resident / 1048576.0,
              pool_resident / 1048576.0, double(pool_resident) / live,
              (live + table_resident + (1 << 20)) / 1048576.0, rss / 1048576.0);

  EXPECT_EQ(s.live_bytes, live);
  EXPECT_EQ(table_resident, s.handle_table_bytes);
  EXPECT_LE(object_resident, live * 110 / 100);
  EXPECT_LE(pool_resident, live + table_resident + (1 << 20));
  for (const Obj& o : objs) {
    Pinned p = pool->pin(o.h, Access::kRead).value();
    ASSERT_EQ(p.size(), o.size);
    ASSERT_EQ(p.data()[o.size - 1], std::byte(o.size & 0xFF));
  }
}

TEST(RssBound, SteadyChurnDoesNotGrowTheHandleTable) {
  MOVA_SKIP_UNDER_SANITIZERS();
  auto pool = Pool::Create().value();
  constexpr std::size_t kLive = 200000;
  std::vector<Handle> live;
  std::mt19937_64 rng(7);
  for (std::size_t i = 0; i < kLive; ++i) live.push_back(pool->allocate(16 + rng() % 497).value());
  const std::uint64_t pages_at_peak = pool->stats().handle_table_pages_peak;
  const std::uint64_t bytes_at_peak = pool->stats().handle_table_bytes;
  for (int round = 0; round < 10; ++round) {
    for (std::size_t k = 0; k < kLive / 2; ++k) {
      const std::size_t i = rng() % kLive;
      ASSERT_TRUE(pool->free(live[i]).ok());
      live[i] = pool->allocate(16 + rng() % 497).value();
    }
    if (round % 3 == 0) pool->compact();
  }
  const PoolStats s = pool->stats();
  std::printf("handle table: %lu pages at peak live count, %lu after 1M replacements; %.2f MiB resident\n",
              (unsigned long)pages_at_peak, (unsigned long)s.handle_table_pages_peak,
              s.handle_table_bytes / 1048576.0);
  EXPECT_EQ(s.handle_table_pages_peak, pages_at_peak);
  EXPECT_LE(s.handle_table_bytes, bytes_at_peak);
  EXPECT_EQ(s.live_objects, kLive);
  // 8 B per handle: the peak is the live count's pages, plus one page for entries held in a thread cache.
  EXPECT_LE(pages_at_peak, kLive * 8 / kPageSize + 2);
}

}  // namespace
}  // namespace mova
