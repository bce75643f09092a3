// stress/soak_main.cc — mova-soak: several threads use one pool for minutes while it compacts under them.
//
// Each worker thread allocates, frees, pin-writes and verifies its own objects, holds pins across moves (the
// bytes at a held pin's address must stay the object's), and reads shared objects that every thread reads.
// A writer thread replaces shared objects the way a cache replaces a value (read-copy-update: a new object is
// filled, its handle swapped into the slot, the old one freed once no reader pins it), so readers race frees:
// a reader may find the handle it loaded stale (counted), never a torn or foreign object (each shared object
// carries its seed in its first 8 bytes, so a reader checks the rest against it). Meanwhile the pool's
// background compactor runs, and a compactor thread calls compact() and defragment() in turn. Prints
// operations, verifications, objects moved and mismatches; exits 1 on any mismatch.
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mova/pool.h"
#include "stress/content.h"

ABSL_FLAG(double, minutes, 0, "how long to run, minutes");
ABSL_FLAG(double, seconds, 0, "how long to run, seconds (adds to --minutes)");
ABSL_FLAG(int, threads, 3, "worker threads (besides the shared-object writer and the compactor)");
ABSL_FLAG(std::uint64_t, seed, 1, "random seed");

namespace mova::stress {
namespace {

struct Counters {
  std::atomic<std::uint64_t> ops{0}, verifications{0}, mismatches{0}, stale_reads{0}, replaced{0};
};

constexpr std::size_t kShared = 256;

void Report(Counters& c, const std::string& what) {
  if (c.mismatches.fetch_add(1) < 20) std::printf("MISMATCH %s\n", what.c_str());
}

// A shared object: its seed in the first 8 bytes, the rest filled from it.
void WriteShared(std::span<std::byte> bytes, std::uint64_t seed) {
  std::memcpy(bytes.data(), &seed, sizeof seed);
  Fill(bytes.subspan(sizeof seed), seed);
}
bool SharedIntact(std::span<const std::byte> bytes) {
  std::uint64_t seed;
  std::memcpy(&seed, bytes.data(), sizeof seed);
  return Matches(bytes.subspan(sizeof seed), seed);
}

struct Own {
  Handle h;
  std::size_t size;
  std::uint64_t seed;
};

using SharedSlots = std::vector<std::atomic<std::uint64_t>>;  // raw handles

void Worker(Pool& pool, const SharedSlots& shared, std::atomic<bool>& stop, Counters& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Own> own;
  Pinned held;               // a pin kept across operations, of own[held_index]
  std::size_t held_index = 0;
  const std::byte* held_at = nullptr;
  auto verify = [&](const Own& o) {
    c.verifications.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<Pinned> p = pool.pin(o.h, Access::kRead);
    if (!p.ok() || p->size() != o.size || !Matches(p->bytes(), o.seed)) {
      Report(c, absl::StrFormat("own object %#x (%u B) lost its bytes: %s", o.h.raw, o.size,
                                p.ok() ? "content differs" : p.status().ToString()));
    }
  };
  while (!stop.load(std::memory_order_relaxed)) {
    c.ops.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t r = rng() % 100;
    if (r < 30 || own.size() < 200) {
      const std::size_t size = rng() % 50 == 0 ? 1 + rng() % 100000 : 1 + rng() % 700;
      absl::StatusOr<Handle> h = pool.allocate(size);
      if (!h.ok()) {
        Report(c, absl::StrFormat("allocate %u: %s", size, h.status().ToString()));
        continue;
      }
      Own o{*h, size, rng()};
      {
        Pinned p = pool.pin(o.h, Access::kWrite).value();
        Fill(p.mutable_bytes(), o.seed);
      }
      own.push_back(o);
    } else if (r < 58 && own.size() > 200) {
      const std::size_t k = rng() % own.size();
      if (held.valid() && k == held_index) continue;
      if (absl::Status s = pool.free(own[k].h); !s.ok()) Report(c, absl::StrFormat("free: %s", s.ToString()));
      own[k] = own.back();
      own.pop_back();
      if (held.valid() && held_index == own.size()) held_index = k;  // the held object was the one moved into k
    } else if (r < 68) {
      const std::size_t k = rng() % own.size();
      if (held.valid() && k == held_index) continue;
      Own& o = own[k];
      o.seed = rng();
      Pinned p = pool.pin(o.h, Access::kWrite).value();
      Fill(p.mutable_bytes(), o.seed);
    } else if (r < 80) {
      verify(own[rng() % own.size()]);
    } else if (r < 95) {
      const Handle h{shared[rng() % shared.size()].load(std::memory_order_acquire)};
      absl::StatusOr<Pinned> p = pool.pin(h, Access::kRead);
      if (!p.ok()) {
        if (absl::IsNotFound(p.status())) {
          c.stale_reads.fetch_add(1, std::memory_order_relaxed);  // replaced and freed since it was loaded
        } else {
          Report(c, absl::StrFormat("shared object %#x: %s", h.raw, p.status().ToString()));
        }
        continue;
      }
      c.verifications.fetch_add(1, std::memory_order_relaxed);
      if (!SharedIntact(p->bytes())) Report(c, absl::StrFormat("shared object %#x torn or lost", h.raw));
    } else {
      // Hold a pin for a while: the object must not move under it.
      if (held.valid()) {
        if (held.data() != held_at || !Matches(held.bytes(), own[held_index].seed)) {
          Report(c, absl::StrFormat("a held pin's object %#x moved or changed", own[held_index].h.raw));
        }
        held.reset();
      } else {
        held_index = rng() % own.size();
        held = pool.pin(own[held_index].h, Access::kRead).value();
        held_at = held.data();
      }
    }
  }
  held.reset();
  for (const Own& o : own) {
    verify(o);
    (void)pool.free(o.h);
  }
}

}  // namespace
}  // namespace mova::stress

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace mova;
  using namespace mova::stress;
  const double seconds = absl::GetFlag(FLAGS_minutes) * 60 + absl::GetFlag(FLAGS_seconds);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  PoolOptions o;
  o.background_interval = std::chrono::milliseconds(5);
  o.background_threshold = 0.05;
  o.decay = std::chrono::milliseconds(10);
  std::unique_ptr<Pool> pool = Pool::Create(o).value();
  SharedSlots shared(kShared);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  auto new_shared = [&pool](std::mt19937_64& r) {
    const Handle h = pool->allocate(16 + r() % 2000).value();
    Pinned p = pool->pin(h, Access::kWrite).value();
    WriteShared(p.mutable_bytes(), r());
    return h;
  };
  for (std::atomic<std::uint64_t>& slot : shared) slot.store(new_shared(rng).raw);
  Counters c;
  std::atomic<bool> stop{false};
  std::vector<std::thread> all;
  for (int t = 0; t < threads; ++t) {
    all.emplace_back(Worker, std::ref(*pool), std::cref(shared), std::ref(stop), std::ref(c), rng());
  }
  std::vector<Handle> retired;  // replaced shared objects not yet freed (a reader pinned them)
  all.emplace_back([&] {  // replaces shared objects: new object, swap, free the old one when unpinned
    std::mt19937_64 wr(rng());
    while (!stop.load(std::memory_order_relaxed)) {
      const Handle fresh = new_shared(wr);
      retired.push_back(Handle{shared[wr() % shared.size()].exchange(fresh.raw, std::memory_order_acq_rel)});
      c.replaced.fetch_add(1, std::memory_order_relaxed);
      std::erase_if(retired, [&](Handle old) {
        const absl::Status s = pool->free(old);
        if (!s.ok() && !absl::IsFailedPrecondition(s)) Report(c, absl::StrFormat("free of a replaced object: %s", s.ToString()));
        return s.ok() || !absl::IsFailedPrecondition(s);
      });
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  all.emplace_back([&] {  // explicit compaction besides the background compactor
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      if (i % 2 == 0) {
        pool->compact();
      } else {
        pool->defragment();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const absl::Time start = absl::Now();
  while (absl::ToDoubleSeconds(absl::Now() - start) < seconds && c.mismatches.load() == 0) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  stop.store(true);
  for (std::thread& t : all) t.join();
  for (Handle old : retired) {
    if (absl::Status s = pool->free(old); !s.ok()) Report(c, absl::StrFormat("final free of a replaced object: %s", s.ToString()));
  }
  for (const std::atomic<std::uint64_t>& slot : shared) {
    Pinned p = pool->pin(Handle{slot.load()}, Access::kRead).value();
    if (!SharedIntact(p.bytes())) Report(c, "shared object lost at the end");
  }
  const PoolStats s = pool->stats();
  std::printf("mova-soak: %d worker threads, %.0f s: %" PRIu64 " operations, %" PRIu64 " verifications\n", threads,
              absl::ToDoubleSeconds(absl::Now() - start), c.ops.load(), c.verifications.load());
  std::printf("  objects moved %" PRIu64 " (%" PRIu64 " compactions), blocks migrated %" PRIu64
              " (%" PRIu64 " defragmentations), background runs %" PRIu64 "\n",
              s.objects_moved, s.compactions, s.blocks_migrated, s.defrag_runs, s.background_runs);
  std::printf("  shared objects replaced %" PRIu64 ", reads that found a replaced handle stale %" PRIu64 "\n",
              c.replaced.load(), c.stale_reads.load());
  std::printf("  live objects at the end %" PRIu64 " (the %zu shared)\n", s.live_objects, shared.size());
  std::printf("  mismatches %" PRIu64 "\n", c.mismatches.load());
  return c.mismatches.load() == 0 && s.live_objects == shared.size() ? 0 : 1;
}
