// tests/install/cxx_consumer/main.cc — what a C++ program does with an installed mova: options from text,
// objects written through pins, compaction, contents checked, stats; an OwnedIndex whose handles the pool moves.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <mova/owned_index.h>
#include <mova/pool.h>
#include <mova/version.h>

#define CHECK(cond)                                               \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "consumer: %s failed\n", #cond);       \
      return 1;                                                   \
    }                                                             \
  } while (0)

int main() {
  mova::PoolOptions options;
  CHECK(mova::ParsePoolOptions("arena_capacity=1g,decay_ms=0", options).ok());
  CHECK(!mova::ParsePoolOptions("decay_ms=never", options).ok());
  absl::StatusOr<std::unique_ptr<mova::Pool>> pool = mova::Pool::Create(options);
  CHECK(pool.ok());
  std::vector<mova::Handle> handles;
  for (int i = 0; i < 20000; ++i) {
    absl::StatusOr<mova::Handle> h = (*pool)->allocate(16 + i % 700);
    CHECK(h.ok());
    mova::Pinned p = (*pool)->pin(*h, mova::Access::kWrite).value();
    std::memset(p.mutable_data(), i & 0xFF, p.size());
    handles.push_back(*h);
  }
  for (std::size_t i = 0; i < handles.size(); i += 2) CHECK((*pool)->free(handles[i]).ok());
  CHECK((*pool)->free(handles[0]).code() == absl::StatusCode::kNotFound);
  const mova::CompactResult c = (*pool)->compact();
  for (std::size_t i = 1; i < handles.size(); i += 2) {
    mova::Pinned p = (*pool)->pin(handles[i], mova::Access::kRead).value();
    CHECK(p.size() == 16 + i % 700);
    for (std::byte b : p.bytes()) CHECK(b == static_cast<std::byte>(i & 0xFF));
  }
  {
    // A read section: reads that never wait for a mover.
    mova::ReadGuard g = (*pool)->read_section();
    for (std::size_t i = 1; i < handles.size(); i += 2) {
      const std::span<const std::byte> bytes = g.read(handles[i]).value();
      CHECK(bytes.size() == 16 + i % 700);
      CHECK(bytes[0] == static_cast<std::byte>(i & 0xFF));
    }
  }
  {
    // Owned handles (mova/owned_index.h: Abseil's flat_hash_map through the installed dependencies).
    mova::OwnedIndex<std::string> index(**pool);
    for (int i = 0; i < 4096; ++i) {
      mova::Handle h = (*pool)->allocate(32).value();
      std::memset((*pool)->pin(h, mova::Access::kWrite).value().mutable_data(), i & 0xFF, 32);
      CHECK(index.insert(std::to_string(i), h));
    }
    for (int i = 0; i < 4096; ++i) {
      if (i % 16 != 0) CHECK(index.erase(std::to_string(i)).ok());
    }
    (*pool)->flush_thread_cache();
    CHECK((*pool)->compact_handles().cells_owned == 256);
    for (int i = 0; i < 4096; i += 16) {
      mova::Pinned p = index.pin(std::to_string(i), mova::Access::kRead).value();
      CHECK(p.data()[31] == static_cast<std::byte>(i & 0xFF));
    }
  }
  const mova::PoolStats s = (*pool)->stats();
  CHECK(s.live_objects == 10000);
  CHECK(!mova::FormatStatsText(s).empty());
  std::printf("c++ consumer: mova %s, %llu objects moved by compaction, contents intact\n", MOVA_VERSION_STRING,
              static_cast<unsigned long long>(c.objects_moved));
  return 0;
}
