// Every public entry point validates its input and reports exhaustion; no error path loses a live object.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "alloc/arena.h"
#include "alloc/size_class_map.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;

std::unique_ptr<Pool> NewPool(PoolOptions o = {}) { return Pool::Create(o).value(); }

TEST(PoolErrors, BadSizes) {
  auto pool = NewPool();
  EXPECT_EQ(pool->allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->allocate(Pool::kMaxObjectSize + 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->allocate(~std::size_t{0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->stats().live_objects, 0u);
}

TEST(PoolErrors, HandlesNotIssuedByThisPool) {
  auto pool = NewPool();
  auto other = NewPool();
  Handle mine = AllocFilled(*pool, 40, 1);
  Handle theirs = other->allocate(40).value();
  for (Handle bad : {kNullHandle, theirs, Handle{0x123456789abcdefull},
                     Handle::Make(mine.pool_tag(), mine.generation(), mine.size_field(), 1u << 27),
                     Handle::Make(mine.pool_tag(), mine.generation(), 4000, mine.index())}) {
    EXPECT_EQ(pool->free(bad).code(), absl::StatusCode::kInvalidArgument) << bad.raw;
    EXPECT_EQ(pool->pin(bad, Access::kRead).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(pool->size_of(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(Intact(*pool, mine, 40, 1));
  EXPECT_TRUE(other->free(theirs).ok());
}

TEST(PoolErrors, StaleAndDoubleFreedHandles) {
  auto pool = NewPool();
  Handle h = AllocFilled(*pool, 200, 2);
  Handle keep = AllocFilled(*pool, 200, 3);
  ASSERT_TRUE(pool->free(h).ok());
  absl::Status again = pool->free(h);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(again.message().find("stale"), std::string::npos);
  EXPECT_EQ(pool->pin(h, Access::kRead).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->size_of(h).status().code(), absl::StatusCode::kNotFound);
  // A forged generation on a real index is stale too.
  Handle forged = Handle::Make(keep.pool_tag(), static_cast<std::uint16_t>(keep.generation() + 2), keep.size_field(),
                               keep.index());
  EXPECT_EQ(pool->free(forged).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Intact(*pool, keep, 200, 3));
  EXPECT_EQ(pool->stats().live_objects, 1u);
}

TEST(PoolErrors, FreeingAPinnedObjectIsRefused) {
  auto pool = NewPool();
  Handle h = AllocFilled(*pool, 64, 4);
  {
    Pinned p = pool->pin(h, Access::kRead).value();
    EXPECT_EQ(pool->free(h).code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(testing::Matches(p.bytes(), 4));
  }
  EXPECT_TRUE(pool->free(h).ok());
}

TEST(PoolErrors, PinCountSaturation) {
  auto pool = NewPool();
  Handle h = pool->allocate(16).value();
  std::vector<Pinned> pins;
  absl::StatusOr<Pinned> p;
  while ((p = pool->pin(h, Access::kRead)).ok()) pins.push_back(std::move(*p));
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pins.size(), 2047u);
  pins.clear();
  EXPECT_TRUE(pool->free(h).ok());
}

TEST(PoolErrors, InvalidOptions) {
  PoolOptions o;
  o.arena_capacity = Bytes(0);
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.arena_capacity = Bytes(std::size_t{4} << 40);
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = PoolOptions{};
  o.max_handles = 0;
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = PoolOptions{};
  o.background_interval = std::chrono::milliseconds(-1);
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  for (double bad : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    o = PoolOptions{};
    o.background_threshold = bad;
    EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PoolErrors, ReservationFailureFailsCreate) {
  os::FaultInjectingOs fos;
  for (int ok_calls = 0; ok_calls < 3; ++ok_calls) {  // arena, page map, handle table
    fos.FailAfter(os::OsOp::kReserve, ok_calls, ENOMEM);
    PoolOptions o;
    o.os = &fos;
    EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kResourceExhausted) << ok_calls;
  }
}

TEST(PoolErrors, MemoryLimitExhaustionKeepsEveryLiveObject) {
  PoolOptions o;
  o.memory_limit = Bytes(1 << 20);
  auto pool = NewPool(o);
  std::vector<Handle> live;
  absl::StatusOr<Handle> h;
  std::uint64_t seed = 0;
  while ((h = pool->allocate(1000)).ok()) {
    Pinned p = pool->pin(*h, Access::kWrite).value();
    testing::Fill(p.mutable_bytes(), seed++);
    live.push_back(*h);
  }
  EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(h.status().message().find("memory limit"), std::string::npos);
  EXPECT_GT(live.size(), 900u);
  for (std::size_t i = 0; i < live.size(); ++i) { ASSERT_TRUE(Intact(*pool, live[i], 1000, i)); }
  EXPECT_EQ(pool->allocate(alloc::kRegionSize).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->stats().live_objects, live.size());
  ASSERT_TRUE(pool->free(live.back()).ok());
  EXPECT_TRUE(pool->allocate(1000).ok());
}

TEST(PoolErrors, AddressSpaceExhaustion) {
  PoolOptions o;
  o.arena_capacity = Bytes(4 << 20);
  auto pool = NewPool(o);
  Handle a = AllocFilled(*pool, 3 << 20, 5);
  absl::StatusOr<Handle> b = pool->allocate(2 << 20);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("address space"), std::string::npos);
  EXPECT_TRUE(Intact(*pool, a, 3 << 20, 5));
}

TEST(PoolErrors, HandleTableExhaustion) {
  PoolOptions o;
  o.max_handles = 512;
  auto pool = NewPool(o);
  std::vector<Handle> live;
  absl::StatusOr<Handle> h;
  while ((h = pool->allocate(24)).ok()) live.push_back(*h);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(live.size(), 512u);
  ASSERT_TRUE(pool->free(live[7]).ok());
  EXPECT_TRUE(pool->allocate(24).ok());
}

TEST(PoolErrors, PopulateFailureOnANewBlockLosesNothing) {
  os::FaultInjectingOs fos;
  PoolOptions o;
  o.os = &fos;
  auto pool = NewPool(o);
  std::vector<Handle> live;
  for (int i = 0; i < 3000; ++i) live.push_back(AllocFilled(*pool, 300, i));
  fos.FailAfter(os::OsOp::kPopulate, 0, ENOMEM);
  absl::Status first_error;
  for (int i = 0; i < 3000 && first_error.ok(); ++i) {
    absl::StatusOr<Handle> h = pool->allocate(300);
    if (h.ok()) {
      Pinned p = pool->pin(*h, Access::kWrite).value();
      testing::Fill(p.mutable_bytes(), live.size());
      live.push_back(*h);
    } else {
      first_error = h.status();
    }
  }
  EXPECT_EQ(first_error.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(fos.failures(os::OsOp::kPopulate), 0);
  // A huge object's run fails the same way.
  EXPECT_EQ(pool->allocate(1 << 20).status().code(), absl::StatusCode::kResourceExhausted);
  for (std::size_t i = 0; i < live.size(); ++i) { ASSERT_TRUE(Intact(*pool, live[i], 300, i)); }
  EXPECT_EQ(pool->stats().live_objects, live.size());
  fos.Clear(os::OsOp::kPopulate);
  EXPECT_TRUE(pool->allocate(300).ok());
}

TEST(PoolErrors, DiscardFailureDuringCompactionLosesNothing) {
  os::FaultInjectingOs fos;
  PoolOptions o;
  o.os = &fos;
  auto pool = NewPool(o);
  std::vector<Handle> all, kept;
  for (int i = 0; i < 20000; ++i) all.push_back(AllocFilled(*pool, 128, i));
  fos.FailAfter(os::OsOp::kDiscard, 0, EINVAL);
  for (int i = 0; i < 20000; ++i) {
    if (i % 7 == 0) {
      kept.push_back(all[i]);
    } else {
      ASSERT_TRUE(pool->free(all[i]).ok());
    }
  }
  const CompactResult r = pool->compact();
  EXPECT_GT(r.pages_released, 0u);
  PoolStats s = pool->stats();
  EXPECT_GT(s.discard_failures, 0u);
  EXPECT_GT(s.dirty_bytes, 0u);  // the pages could not be given back: they stay counted
  for (std::size_t k = 0; k < kept.size(); ++k) { ASSERT_TRUE(Intact(*pool, kept[k], 128, k * 7)); }
  fos.Clear(os::OsOp::kDiscard);
  pool->release_free_memory();
  EXPECT_EQ(pool->stats().dirty_bytes, 0u);
}

using PoolDeathTest = ::testing::Test;

TEST(PoolDeathTest, CheckedModeAbortsNamingTheHandle) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOptions o;
  o.checked = true;
  auto pool = NewPool(o);
  Handle h = pool->allocate(10).value();
  ASSERT_TRUE(pool->free(h).ok());
  const std::string hex = absl::StrFormat("%#x", h.raw);
  EXPECT_DEATH((void)pool->free(h), "checked mode: free: handle " + hex + " is stale");
  EXPECT_DEATH((void)pool->pin(h, Access::kRead), "pin: handle " + hex + " is stale");
  EXPECT_DEATH((void)pool->free(kNullHandle), "was not issued by this pool");
  Handle live = pool->allocate(10).value();
  Pinned p = pool->pin(live, Access::kRead).value();
  EXPECT_DEATH((void)pool->free(live), "is pinned");
}

TEST(PoolDeathTest, CheckedModeCatchesAnOverwrittenBlockDescriptor) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOptions o;
  o.checked = true;
  auto pool = NewPool(o);
  const alloc::SizeClassMap map;
  ASSERT_EQ(map.info(map.ClassFor(48)).pages_per_block, 1u);  // so the block starts at the object's page
  Handle h = pool->allocate(48).value();
  {
    Pinned p = pool->pin(h, Access::kWrite).value();
    // Write below the object, as an underflow would: the block's descriptor opens its first page.
    auto* block = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p.mutable_data()) & ~std::uintptr_t{4095});
    std::memset(block, 0xEE, 4);
  }
  EXPECT_DEATH((void)pool->free(h), "descriptor of its block is overwritten");
  EXPECT_DEATH((void)pool->pin(h, Access::kRead), "descriptor of its block is overwritten");
}

TEST(PoolDeathTest, WritingThroughAReadPinAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto pool = NewPool();
  Handle h = pool->allocate(10).value();
  Pinned p = pool->pin(h, Access::kRead).value();
  EXPECT_DEATH((void)p.mutable_data(), "Access::kRead");
}

}  // namespace
}  // namespace mova
