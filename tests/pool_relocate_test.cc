// Pool::relocate, batch relocation in migrate_vma's three steps: the named objects of a class end up in
// consecutive slots of fresh blocks, in the order named, with every byte intact; each handle gets its outcome
// (moved, pinned, busy, stale, not issued, huge, no memory) and the result counts them; an object that did not
// move is exactly where it was; checked mode aborts on a stale handle; and readers and freers race relocation
// under ThreadSanitizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "mova/pool.h"
#include "tests/test_objects.h"

namespace mova {
namespace {

using testing::AllocFilled;
using testing::Intact;
using testing::Obj;

const std::byte* DataOf(Pool& pool, Handle h) { return pool.pin(h, Access::kRead).value().data(); }

std::uint32_t ObjectsPerBlock(Pool& pool, std::uint32_t slot_size) {
  for (const ClassStats& c : pool.stats().classes) {
    if (c.slot_size == slot_size) return c.objects_per_block;
  }
  ADD_FAILURE() << "no class of " << slot_size << " B slots";
  return 1;
}

TEST(PoolRelocate, GathersTheNamedObjectsInOrderIntoFreshBlocks) {
  auto pool = Pool::Create(PoolOptions()).value();
  // Two classes' objects interleaved, and kept one in sixteen: each kept object sits in a block of its own
  // neighbours' holes.
  std::vector<Obj> all;
  for (std::uint64_t i = 0; i < 32000; ++i) {
    const std::size_t size = i % 2 == 0 ? 64 : 256;
    all.push_back({AllocFilled(*pool, size, i), size, i});
  }
  std::vector<Obj> named64, named256;
  std::vector<Handle> handles;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if ((i / 2) % 16 != 0) continue;
    (all[i].size == 64 ? named64 : named256).push_back(all[i]);
    handles.push_back(all[i].h);
  }
  std::vector<RelocateOutcome> outcomes(handles.size(), RelocateOutcome::kBusy);
  const RelocateResult r = pool->relocate(handles, outcomes).value();
  EXPECT_EQ(r.moved, handles.size());
  EXPECT_EQ(r.bytes_moved, named64.size() * 64 + named256.size() * 256);
  EXPECT_EQ(r.pinned + r.busy + r.stale + r.not_issued + r.huge + r.no_memory, 0u);
  for (RelocateOutcome o : outcomes) ASSERT_EQ(o, RelocateOutcome::kMoved);
  for (const Obj& o : all) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  // In the order named, each object in the slot after the one before it, but where a fresh block begins: as
  // few blocks as the objects fill.
  for (const auto& [named, slot] : {std::pair{&named64, 64u}, std::pair{&named256, 256u}}) {
    const std::uint32_t per_block = ObjectsPerBlock(*pool, slot);
    std::size_t breaks = 0;
    for (std::size_t i = 1; i < named->size(); ++i) {
      if (DataOf(*pool, (*named)[i].h) != DataOf(*pool, (*named)[i - 1].h) + slot) ++breaks;
    }
    EXPECT_EQ(breaks, (named->size() - 1) / per_block) << slot;
  }
  const std::size_t blocks = (named64.size() + ObjectsPerBlock(*pool, 64) - 1) / ObjectsPerBlock(*pool, 64) +
                             (named256.size() + ObjectsPerBlock(*pool, 256) - 1) / ObjectsPerBlock(*pool, 256);
  EXPECT_EQ(r.blocks_filled, blocks);
  // Nothing emptied: every old block keeps fifteen in sixteen of its objects.
  EXPECT_EQ(r.blocks_emptied, 0u);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.relocations, 1u);
  EXPECT_EQ(s.objects_relocated, handles.size());
  EXPECT_EQ(s.live_objects, all.size());
}

TEST(PoolRelocate, ObjectsLeftAloneEmptyTheirBlocksWhenTheRestMoves) {
  auto pool = Pool::Create(PoolOptions()).value();
  std::vector<Obj> kept;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    Obj o{AllocFilled(*pool, 100, i), 100, i};
    if (i % 50 == 0) {
      kept.push_back(o);
    } else {
      ASSERT_TRUE(pool->free(o.h).ok());
    }
  }
  pool->flush_thread_cache();  // the freed slots back in their blocks: a block of one object empties when it goes
  std::vector<Handle> handles;
  for (const Obj& o : kept) handles.push_back(o.h);
  std::vector<RelocateOutcome> outcomes(handles.size());
  const RelocateResult r = pool->relocate(handles, outcomes).value();
  EXPECT_EQ(r.moved, kept.size());
  EXPECT_GT(r.blocks_emptied, 0u);
  EXPECT_LT(r.blocks_filled, r.blocks_emptied);
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolRelocate, EachHandleGetsItsOutcome) {
  auto pool = Pool::Create(PoolOptions()).value();
  const Obj movable{AllocFilled(*pool, 64, 1), 64, 1};
  const Obj counted{AllocFilled(*pool, 64, 2), 64, 2};
  const Obj owned{AllocFilled(*pool, 64, 3), 64, 3};
  const Obj huge{AllocFilled(*pool, 1 << 20, 4), 1 << 20, 4};
  const Handle freed = pool->allocate(64).value();
  ASSERT_TRUE(pool->free(freed).ok());
  const Handle forged{movable.h.raw ^ (std::uint64_t{0x5a5a} << 20)};
  Pinned counted_pin = pool->pin(counted.h, Access::kRead).value();
  Pinned owned_pin = pool->pin_owned(owned.h, Access::kRead).value();
  const std::byte* counted_at = counted_pin.data();
  const std::byte* owned_at = owned_pin.data();

  const std::vector<Handle> handles = {movable.h, counted.h, owned.h, huge.h, freed, forged, Handle{}, movable.h};
  std::vector<RelocateOutcome> outcomes(handles.size(), RelocateOutcome::kMoved);
  const RelocateResult r = pool->relocate(handles, outcomes).value();
  EXPECT_EQ(outcomes, (std::vector<RelocateOutcome>{
                          RelocateOutcome::kMoved, RelocateOutcome::kPinned, RelocateOutcome::kPinned,
                          RelocateOutcome::kHuge, RelocateOutcome::kStale, RelocateOutcome::kNotIssued,
                          RelocateOutcome::kNotIssued, RelocateOutcome::kBusy}));
  EXPECT_EQ(r.moved, 1u);
  EXPECT_EQ(r.pinned, 2u);
  EXPECT_EQ(r.huge, 1u);
  EXPECT_EQ(r.stale, 1u);
  EXPECT_EQ(r.not_issued, 2u);
  EXPECT_EQ(r.busy, 1u);
  EXPECT_EQ(r.no_memory, 0u);
  // The pinned objects are where they were, whole; every object is intact.
  EXPECT_EQ(DataOf(*pool, counted.h), counted_at);
  EXPECT_EQ(DataOf(*pool, owned.h), owned_at);
  counted_pin = Pinned();
  owned_pin = Pinned();
  for (const Obj& o : {movable, counted, owned, huge}) EXPECT_TRUE(Intact(*pool, o.h, o.size, o.seed));

  // Spans of different lengths are refused, with nothing done.
  std::vector<RelocateOutcome> short_outcomes(1);
  const absl::StatusOr<RelocateResult> bad = pool->relocate(handles, short_outcomes);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->stats().relocations, 1u);
  // An empty list is a call that does nothing.
  EXPECT_EQ(pool->relocate({}, {}).value().moved, 0u);
}

TEST(PoolRelocate, WithNoRoomForAFreshBlockNothingMoves) {
  PoolOptions options;
  options.memory_limit = Bytes(std::size_t{1} << 20);
  auto pool = Pool::Create(options).value();
  // Fill the limit: no class can make another block.
  std::vector<Obj> objs;
  for (std::uint64_t i = 0;; ++i) {
    absl::StatusOr<Handle> h = pool->allocate(64);
    if (!h.ok()) {
      ASSERT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted);
      break;
    }
    Pinned p = pool->pin(*h, Access::kWrite).value();
    testing::Fill(p.mutable_bytes(), i);
    objs.push_back({*h, 64, i});
  }
  ASSERT_GT(objs.size(), 1000u);
  std::vector<Handle> handles;
  std::vector<const std::byte*> at;
  for (std::size_t i = 0; i < objs.size(); i += 7) {
    handles.push_back(objs[i].h);
    at.push_back(DataOf(*pool, objs[i].h));
  }
  std::vector<RelocateOutcome> outcomes(handles.size());
  const RelocateResult r = pool->relocate(handles, outcomes).value();
  EXPECT_EQ(r.no_memory, handles.size());
  EXPECT_EQ(r.moved, 0u);
  EXPECT_EQ(r.blocks_filled, 0u);
  for (std::size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(outcomes[i], RelocateOutcome::kNoMemory);
    EXPECT_EQ(DataOf(*pool, handles[i]), at[i]);
  }
  for (const Obj& o : objs) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
}

TEST(PoolRelocateDeathTest, CheckedModeAbortsOnAStaleHandle) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child runs the test again from the start
  PoolOptions options;
  options.checked = true;
  auto pool = Pool::Create(options).value();
  const Handle h = pool->allocate(64).value();
  ASSERT_TRUE(pool->free(h).ok());
  std::vector<Handle> handles = {h};
  std::vector<RelocateOutcome> outcomes(1);
  EXPECT_DEATH((void)pool->relocate(handles, outcomes), "relocate: handle .* is stale");
}

// Readers pin (counted and through their records) and check objects while one thread relocates them over and
// over and another frees some of them: every read sees the whole object, every free succeeds once, and what
// is left is intact.
TEST(PoolRelocate, ReadersAndFreersRaceRelocation) {
  auto pool = Pool::Create(PoolOptions()).value();
  std::vector<Obj> kept, doomed;
  std::vector<Handle> all;
  for (std::uint64_t i = 0; i < 3000; ++i) {
    const std::size_t size = 16 + (i * 37) % 300;
    const Obj o{AllocFilled(*pool, size, i), size, i};
    (i % 3 == 0 ? doomed : kept).push_back(o);
    all.push_back(o.h);
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> moved{0}, stale{0};
  std::thread mover([&] {
    std::vector<RelocateOutcome> outcomes(all.size());
    for (int round = 0; round < 40; ++round) {
      std::vector<Handle> order = all;
      std::rotate(order.begin(), order.begin() + (round * 97) % order.size(), order.end());
      const RelocateResult r = pool->relocate(order, outcomes).value();
      moved += r.moved;
      stale += r.stale;
      ASSERT_EQ(r.moved + r.pinned + r.busy + r.stale, order.size());
    }
    stop = true;
  });
  std::thread reader([&] {
    for (std::size_t i = 0; !stop; i = (i + 1) % kept.size()) {
      const Obj& o = kept[i];
      absl::StatusOr<Pinned> p = i % 2 == 0 ? pool->pin(o.h, Access::kRead) : pool->pin_owned(o.h, Access::kRead);
      ASSERT_TRUE(p.ok()) << p.status();
      ASSERT_TRUE(testing::Matches(p->bytes(), o.seed)) << i;
    }
  });
  for (const Obj& o : doomed) {
    ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
    ASSERT_TRUE(pool->free(o.h).ok());
  }
  mover.join();
  reader.join();
  EXPECT_GT(moved.load(), 0u);
  EXPECT_GT(stale.load(), 0u);  // the rounds after the frees
  for (const Obj& o : kept) ASSERT_TRUE(Intact(*pool, o.h, o.size, o.seed));
  for (const Obj& o : doomed) EXPECT_EQ(pool->free(o.h).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->stats().live_objects, kept.size());
}

}  // namespace
}  // namespace mova
