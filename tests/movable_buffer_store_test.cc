// The framework's second driver: growable buffers moved by defragmentation; contents survive, pinned
// buffers stay, destroyed ids are refused, growth works before and after moves. Runs under TSan too.
#include "buffers/movable_buffer_store.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "tests/test_objects.h"

namespace mova::buffers {
namespace {

struct Buf {
  BufferId id;
  std::size_t size;
  std::uint64_t seed;
};

std::vector<std::byte> Bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  testing::Fill(v, seed);
  return v;
}

bool Intact(MovableBufferStore& store, const Buf& b) {
  absl::StatusOr<PinnedBuffer> p = store.Pin(b.id);
  return p.ok() && p->bytes().size() == b.size && testing::Matches(p->bytes(), b.seed);
}

// 600 buffers of 1–60 KiB over ~8 regions, then 85% destroyed at random.
std::vector<Buf> Scattered(MovableBufferStore& store, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Buf> all;
  for (int i = 0; i < 600; ++i) {
    const std::size_t n = 1024 + rng() % (60 * 1024);
    Buf b{store.Create(n).value(), n, rng()};
    EXPECT_TRUE(store.Append(b.id, Bytes(n, b.seed)).ok());
    all.push_back(b);
  }
  std::vector<Buf> kept;
  for (const Buf& b : all) {
    if (rng() % 100 < 15) {
      kept.push_back(b);
    } else {
      EXPECT_TRUE(store.Destroy(b.id).ok());
    }
  }
  return kept;
}

std::size_t RegionsInUse(const MovableBufferStore& store) {
  std::size_t n = 0;
  for (std::uint32_t u : store.RegionUsage()) n += u > 0;
  return n;
}

TEST(MovableBufferStore, DefragmentMovesBuffersDownAndKeepsTheirBytes) {
  auto store = MovableBufferStore::Create(mova::Bytes(std::size_t{1} << 30)).value();
  std::vector<Buf> kept = Scattered(*store, 1);
  const std::size_t before = RegionsInUse(*store);
  const DefragResult r = store->Defragment();
  const std::size_t after = RegionsInUse(*store);
  EXPECT_GT(r.blocks_migrated, 0u);
  EXPECT_GT(r.regions_freed, 0u);
  EXPECT_LT(after, before);
  for (const Buf& b : kept) ASSERT_TRUE(Intact(*store, b));
  // Moved buffers still grow, and their old ids still work.
  for (Buf& b : kept) {
    ASSERT_TRUE(store->Append(b.id, Bytes(100000, b.seed + 1)).ok());
    absl::StatusOr<PinnedBuffer> p = store->Pin(b.id);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->bytes().size(), b.size + 100000);
    ASSERT_TRUE(testing::Matches(p->bytes().first(b.size), b.seed));
    ASSERT_TRUE(testing::Matches(p->bytes().subspan(b.size), b.seed + 1));
  }
}

TEST(MovableBufferStore, PinnedBuffersStayAndDestroyedIdsAreRefused) {
  auto store = MovableBufferStore::Create(mova::Bytes(std::size_t{1} << 30)).value();
  std::vector<Buf> kept = Scattered(*store, 2);
  std::vector<PinnedBuffer> pins;
  std::vector<const std::byte*> where;
  for (std::size_t i = 0; i < kept.size(); i += 5) {
    pins.push_back(store->Pin(kept[i].id).value());
    where.push_back(pins.back().bytes().data());
  }
  EXPECT_EQ(store->Destroy(kept[0].id).code(), absl::StatusCode::kFailedPrecondition);  // pinned
  EXPECT_EQ(store->Append(kept[0].id, Bytes(1 << 20, 0)).code(), absl::StatusCode::kFailedPrecondition);
  const DefragResult r = store->Defragment();
  EXPECT_GT(r.isolate_failed, 0u);
  for (std::size_t k = 0; k < pins.size(); ++k) {
    EXPECT_EQ(store->Pin(kept[k * 5].id).value().bytes().data(), where[k]);  // not moved
  }
  pins.clear();
  ASSERT_TRUE(store->Destroy(kept[1].id).ok());
  EXPECT_EQ(store->Pin(kept[1].id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Destroy(kept[1].id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Append(kept[1].id, Bytes(10, 0)).code(), absl::StatusCode::kNotFound);
  for (std::size_t i = 2; i < kept.size(); ++i) ASSERT_TRUE(Intact(*store, kept[i]));
}

TEST(MovableBufferStore, ReadersAndWritersDuringDefragmentation) {
  auto store = MovableBufferStore::Create(mova::Bytes(std::size_t{1} << 30)).value();
  std::vector<Buf> kept = Scattered(*store, 3);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    std::mt19937_64 rng(4);
    while (!stop.load()) {
      const Buf& b = kept[rng() % kept.size()];
      if (!Intact(*store, b)) ++bad;
    }
  });
  std::thread churner([&] {  // creates and destroys other buffers, so there is room to move into and out of
    std::mt19937_64 rng(5);
    std::vector<Buf> mine;
    for (int i = 0; i < 300; ++i) {
      const std::size_t n = 1024 + rng() % 30000;
      Buf b{store->Create(n).value(), n, rng()};
      if (!store->Append(b.id, Bytes(n, b.seed)).ok()) ++bad;
      mine.push_back(b);
      if (mine.size() > 20) {
        if (!Intact(*store, mine.front())) ++bad;
        if (!store->Destroy(mine.front().id).ok()) ++bad;
        mine.erase(mine.begin());
      }
    }
  });
  std::uint64_t moved = 0;
  for (int i = 0; i < 10; ++i) moved += store->Defragment().blocks_migrated;
  churner.join();
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(moved + store->Defragment().blocks_migrated, 0u);
  for (const Buf& b : kept) ASSERT_TRUE(Intact(*store, b));
}

}  // namespace
}  // namespace mova::buffers
