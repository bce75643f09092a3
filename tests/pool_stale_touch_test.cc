// Checked mode's stale-touch watch (alloc/stale_touch_watch.h): a pointer kept after its object was freed or
// moved, used once its page is no longer in use, stops the process with a report naming the address and the
// handle whose object was there; a checked pool otherwise works as any other (populating through its
// userfaultfd), and works without the watch where the kernel refuses one.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;

PoolOptions Checked() {
  PoolOptions o;
  o.checked = true;
  o.background_interval = std::chrono::milliseconds(0);
  o.direct_compaction = std::chrono::microseconds(0);
  return o;
}

// Reads a byte through a pointer the caller should no longer hold.
std::byte Touch(const std::byte* p) { return *static_cast<const volatile std::byte*>(p); }

TEST(StaleTouchDeathTest, APointerIntoFreedPagesDiesNamingTheFreedHandle) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto pool = Pool::Create(Checked()).value();
        ASSERT_TRUE(pool->stats().stale_touch_watch);
        std::vector<Handle> hs;
        for (int i = 0; i < 200; ++i) hs.push_back(AllocFilled(*pool, 1000, i));
        const std::byte* p = pool->pin(hs[0], Access::kRead).value().data();
        for (const Handle h : hs) ASSERT_TRUE(pool->free(h).ok());
        pool->flush_thread_cache();
        pool->release_free_memory();  // every block is empty: their pages go back
        (void)Touch(p);
      },
      "stale pointer: a touch of 0x[0-9a-f]+ .* it held the object of handle 0x[0-9a-f]+, freed");
}

TEST(StaleTouchDeathTest, APointerIntoABlockThatMovedAwayDiesNamingWhereTheObjectWent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto pool = Pool::Create(Checked()).value();
        std::vector<Handle> all;
        for (int i = 0; i < 20000; ++i) all.push_back(AllocFilled(*pool, 200, i));
        std::vector<Handle> kept;
        std::vector<const std::byte*> before;
        for (std::size_t i = 0; i < all.size(); ++i) {
          if (i % 8 == 0) {
            kept.push_back(all[i]);
            before.push_back(pool->pin(all[i], Access::kRead).value().data());
          } else {
            ASSERT_TRUE(pool->free(all[i]).ok());
          }
        }
        ASSERT_GT(pool->compact().objects_moved, 0u);
        pool->release_free_memory();
        for (std::size_t i = 0; i < kept.size(); ++i) {
          if (pool->pin(kept[i], Access::kRead).value().data() != before[i]) (void)Touch(before[i]);
        }
      },
      "stale pointer: a touch of 0x[0-9a-f]+ .* it held the object of handle-table entry [0-9]+, moved to 0x");
}

TEST(StaleTouch, ACheckedPoolPopulatesThroughItsWatchAndMovesByCopying) {
  auto pool = Pool::Create(Checked()).value();
  ASSERT_TRUE(pool->stats().stale_touch_watch);
  std::vector<testing::Obj> kept = testing::ScatteredDenseBlocks(*pool, 3, 8u << 20);
  const Handle huge = AllocFilled(*pool, 1 << 20, 99);
  const DefragResult d = pool->defragment();
  EXPECT_GT(d.blocks_migrated, 0u);
  EXPECT_EQ(d.moves_uffd + d.moves_mremap, 0u);
  for (const testing::Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  EXPECT_TRUE(Intact(*pool, huge, 1 << 20, 99));
  EXPECT_FALSE(Pool::Create().value()->stats().stale_touch_watch);  // normal mode: no watch
}

TEST(StaleTouch, PopulateFailuresAreExhaustionAndAPoolWithoutAWatchStillWorks) {
  os::FaultInjectingOs fos;
  PoolOptions o = Checked();
  o.os = &fos;
  {
    auto pool = Pool::Create(o).value();
    ASSERT_TRUE(pool->stats().stale_touch_watch);
    fos.FailAfter(os::OsOp::kPopulateRegistered, 0, ENOMEM);
    EXPECT_EQ(pool->allocate(100).status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_GT(fos.failures(os::OsOp::kPopulateRegistered), 0);
    fos.Clear(os::OsOp::kPopulateRegistered);
    EXPECT_TRUE(Intact(*pool, AllocFilled(*pool, 100, 5), 100, 5));
  }
  // The kernel refuses the watch's userfaultfd: the pool is checked all the same, without it.
  fos.FailAfter(os::OsOp::kOpenFaultUserfaultfd, 0, EPERM);
  auto pool = Pool::Create(o).value();
  EXPECT_FALSE(pool->stats().stale_touch_watch);
  const std::int64_t registered_populates = fos.calls(os::OsOp::kPopulateRegistered);
  EXPECT_TRUE(Intact(*pool, AllocFilled(*pool, 100, 6), 100, 6));
  EXPECT_EQ(fos.calls(os::OsOp::kPopulateRegistered), registered_populates);  // it populates by madvise
  EXPECT_GT(fos.calls(os::OsOp::kPopulate), 0);
}

}  // namespace
}  // namespace mova
