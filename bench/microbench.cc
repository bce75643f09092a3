// bench/microbench.cc — Google Benchmark microbenchmarks, the same loops for mova and for the malloc this
// binary is linked with (one binary per malloc; run_microbench.sh runs them all and prints one table).
//
// Names: "<allocator>/<benchmark>/<arg>", where allocator is mova, mova-decay1s or the detected malloc. Every
// loop reports items per second, one item being the operation its comment names (an alloc+free pair, one
// replacement, one pin+unpin, ...), so ns/op = 1e9 / items_per_second.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/heap.h"
#include "mova/pool.h"

namespace {

// The two kinds of allocator behind one tiny interface the compiler can inline.
struct MallocApi {
  using Token = void*;
  static MallocApi* Make() { return new MallocApi; }
  Token Alloc(std::size_t n) { return std::malloc(n); }
  void Free(Token t) { std::free(t); }
};

// `DecayMs` is PoolOptions::decay, -1 for the default (1 s: emptied blocks stay resident that long for reuse
// without a page fault); 0 gives them back at every free.
template <int DecayMs>
struct MovaApiT {
  using Token = mova::Handle;
  std::unique_ptr<mova::Pool> pool;
  static MovaApiT* Make() {
    auto* api = new MovaApiT;
    mova::PoolOptions o;
    if (DecayMs >= 0) o.decay = std::chrono::milliseconds(DecayMs);
    api->pool = mova::Pool::Create(o).value();
    return api;
  }
  Token Alloc(std::size_t n) { return pool->allocate(n).value(); }
  void Free(Token t) { (void)pool->free(t); }
};
using MovaApi = MovaApiT<-1>;
using MovaDecay0Api = MovaApiT<0>;

// One pool for every thread of a multi-threaded run (default options), each thread on its own objects: what
// two threads of a service share. Never destroyed (threads of later runs use it too).
mova::Pool& SharedPool() {
  static mova::Pool* const pool = mova::Pool::Create().value().release();
  return *pool;
}
struct MovaSharedApi {
  using Token = mova::Handle;
  mova::Pool* pool = nullptr;
  static MovaSharedApi* Make() { return new MovaSharedApi{&SharedPool()}; }
  Token Alloc(std::size_t n) { return pool->allocate(n).value(); }
  void Free(Token t) { (void)pool->free(t); }
};

// An alloc+free pair of one size, hot.
template <typename Api>
void AllocFree(benchmark::State& state) {
  std::unique_ptr<Api> api(Api::Make());
  const std::size_t size = state.range(0);
  for (auto _ : state) {
    auto t = api->Alloc(size);
    benchmark::DoNotOptimize(t);
    api->Free(t);
  }
  state.SetItemsProcessed(state.iterations());
}

// 1000 allocations, then 1000 frees; time per allocation+free.
template <typename Api>
void Batch1000(benchmark::State& state) {
  std::unique_ptr<Api> api(Api::Make());
  const std::size_t size = state.range(0);
  std::vector<typename Api::Token> v(1000);
  for (auto _ : state) {
    for (auto& t : v) t = api->Alloc(size);
    benchmark::DoNotOptimize(v.data());
    for (auto& t : v) api->Free(t);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}

// Random replacement in a 10k-object live set of 8–512 B (sizes and victims precomputed); per replacement.
template <typename Api>
void RandomReplace(benchmark::State& state) {
  std::unique_ptr<Api> api(Api::Make());
  constexpr std::size_t kLive = 10000, kPlan = 1 << 16;
  std::mt19937_64 rng(42);
  std::vector<std::uint32_t> sizes(kPlan), victims(kPlan);
  for (std::size_t i = 0; i < kPlan; ++i) {
    sizes[i] = 8 + rng() % 505;
    victims[i] = rng() % kLive;
  }
  std::vector<typename Api::Token> live(kLive);
  for (std::size_t i = 0; i < kLive; ++i) live[i] = api->Alloc(sizes[i]);
  std::size_t k = 0;
  for (auto _ : state) {
    const std::size_t i = victims[k];
    api->Free(live[i]);
    live[i] = api->Alloc(sizes[k]);
    k = (k + 1) & (kPlan - 1);
  }
  for (auto& t : live) api->Free(t);
  state.SetItemsProcessed(state.iterations());
}

// pin + unpin of one object (mova only): pin() counts the pin in the entry (two RMWs), pin_owned() keeps it
// in the thread's own record (no RMW).
template <bool kOwned>
void MovaPinUnpin(benchmark::State& state) {
  auto pool = mova::Pool::Create().value();
  mova::Handle h = pool->allocate(64).value();
  for (auto _ : state) {
    mova::Pinned p = (kOwned ? pool->pin_owned(h, mova::Access::kRead) : pool->pin(h, mova::Access::kRead)).value();
    benchmark::DoNotOptimize(p.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// Reads in a read section (mova only): ReadGuard::read of a 64 B object and a load of all its bytes, with the
// section open across the loop (kWholeSection false) or opened and ended for each read (true).
std::uint64_t Sum64(std::span<const std::byte> b) {
  std::uint64_t words[8];
  std::memcpy(words, b.data(), sizeof(words));
  std::uint64_t s = 0;
  for (std::uint64_t w : words) s += w;
  return s;
}
template <bool kWholeSection>
void MovaRead(benchmark::State& state) {
  auto pool = mova::Pool::Create().value();
  mova::Handle h = pool->allocate(64).value();
  std::memset(pool->pin(h, mova::Access::kWrite).value().mutable_data(), 1, 64);
  mova::ReadGuard outer = pool->read_section();
  for (auto _ : state) {
    if (kWholeSection) {
      mova::ReadGuard g = pool->read_section();
      benchmark::DoNotOptimize(Sum64(g.read(h).value()));
    } else {
      benchmark::DoNotOptimize(Sum64(outer.read(h).value()));
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// The floor under Read/64: the same load and sum of 64 bytes through a pointer the compiler cannot keep
// (what a read costs beyond this is the handle's).
void Read64Floor(benchmark::State& state) {
  std::vector<std::byte> bytes(64, std::byte{1});
  const std::byte* p = bytes.data();
  for (auto _ : state) {
    benchmark::DoNotOptimize(p);
    benchmark::DoNotOptimize(Sum64({p, 64}));
  }
  state.SetItemsProcessed(state.iterations());
}

// The same through a HandleCell (mova/handle_owner.h): the cost of owning on the pin path — a load of the
// cell, the same pin; the cell's move check runs only when a pin is refused.
template <bool kOwned>
void MovaPinCellUnpin(benchmark::State& state) {
  auto pool = mova::Pool::Create().value();
  mova::HandleCell cell(pool->allocate(64).value());
  for (auto _ : state) {
    mova::Pinned p =
        (kOwned ? pool->pin_owned(cell, mova::Access::kRead) : pool->pin(cell, mova::Access::kRead)).value();
    benchmark::DoNotOptimize(p.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// allocate + free through a cell (free(cell) also stores the null handle in it).
void MovaAllocFreeCell(benchmark::State& state) {
  auto pool = mova::Pool::Create().value();
  mova::HandleCell cell;
  for (auto _ : state) {
    cell.store(pool->allocate(64).value());
    benchmark::DoNotOptimize(pool->free(cell));
  }
  state.SetItemsProcessed(state.iterations());
}

// pin + unpin of a thread's own object in the shared pool (the two-thread rows).
template <bool kOwned>
void MovaSharedPinUnpin(benchmark::State& state) {
  mova::Pool& pool = SharedPool();
  mova::Handle h = pool.allocate(64).value();
  for (auto _ : state) {
    mova::Pinned p = (kOwned ? pool.pin_owned(h, mova::Access::kRead) : pool.pin(h, mova::Access::kRead)).value();
    benchmark::DoNotOptimize(p.data());
  }
  (void)pool.free(h);
  state.SetItemsProcessed(state.iterations());
}

// The floor under pin+unpin on this machine: two atomic RMWs on one word (a CAS loop and a fetch_sub).
void AtomicPair(benchmark::State& state) {
  std::atomic<std::uint64_t> word{1};
  for (auto _ : state) {
    std::uint64_t w = word.load(std::memory_order_acquire);
    while (!word.compare_exchange_weak(w, w + 16, std::memory_order_acquire)) {
    }
    word.fetch_sub(16, std::memory_order_release);
  }
  benchmark::DoNotOptimize(word.load());
  state.SetItemsProcessed(state.iterations());
}

// `fill` bytes of 16–512 B objects, 90% of them freed at random (the same heap every call): the survivors.
std::vector<mova::Handle> ThinnedHeap(mova::Pool& pool, std::size_t fill) {
  std::mt19937_64 rng(7);
  std::vector<mova::Handle> hs, kept;
  std::size_t bytes = 0;
  while (bytes < fill) {
    const std::size_t s = 16 + rng() % 497;
    hs.push_back(pool.allocate(s).value());
    bytes += s;
  }
  for (mova::Handle h : hs) {
    if (rng() % 10 != 0) {
      (void)pool.free(h);
    } else {
      kept.push_back(h);
    }
  }
  return kept;
}

// Compaction throughput on a 90%-thinned heap of 16–512 B objects: bytes moved per second.
void MovaCompaction(benchmark::State& state) {
  std::uint64_t moved = 0;
  for (auto _ : state) {
    auto pool = mova::Pool::Create().value();
    ThinnedHeap(*pool, state.range(0) << 20);
    const mova::CompactResult r = pool->compact();
    state.SetIterationTime(r.seconds);
    moved += r.bytes_moved;
  }
  state.SetBytesProcessed(moved);
}

// Batch relocation (Pool::relocate) on the same heap as Compaction, of every survivor in the order they were
// allocated: bytes moved per second.
void MovaRelocate(benchmark::State& state) {
  std::uint64_t moved = 0;
  for (auto _ : state) {
    auto pool = mova::Pool::Create().value();
    const std::vector<mova::Handle> kept = ThinnedHeap(*pool, state.range(0) << 20);
    std::vector<mova::RelocateOutcome> outcomes(kept.size());
    const mova::RelocateResult r = pool->relocate(kept, outcomes).value();
    state.SetIterationTime(r.seconds);
    moved += r.bytes_moved;
  }
  state.SetBytesProcessed(moved);
}

// Arena defragmentation after a 90% thin-out and compact(): blocks of four classes, dense but scattered over
// the regions, moved down by defragment(). Time per run; bytes/s of blocks moved; regions freed in the label.
void MovaDefragment(benchmark::State& state) {
  const std::size_t fill = state.range(0) << 20;
  std::uint64_t moved = 0, regions = 0;
  for (auto _ : state) {
    auto pool = mova::Pool::Create().value();
    std::mt19937_64 rng(11);
    std::vector<mova::Handle> hs;
    const std::size_t sizes[] = {48, 200, 700, 3000};
    std::size_t bytes = 0;
    for (std::size_t i = 0; bytes < fill; ++i) {
      hs.push_back(pool->allocate(sizes[i % 4]).value());
      bytes += sizes[i % 4];
    }
    for (mova::Handle h : hs) {
      if (rng() % 10 != 0) (void)pool->free(h);
    }
    pool->compact();
    const mova::DefragResult r = pool->defragment();
    state.SetIterationTime(r.seconds);
    moved += r.pages_moved * 4096;
    regions += r.regions_freed;
  }
  state.SetBytesProcessed(moved);
  // A label, not a counter: the CSV reporter wants every counter in every row.
  state.SetLabel(std::to_string(regions / std::max<std::uint64_t>(1, state.iterations())) + " regions freed per run");
}

template <typename Api, typename Reg>
void RegisterThreaded(Reg& reg) {
  reg("AllocFreeMT", AllocFree<Api>)->Arg(64)->Threads(1)->Threads(2)->UseRealTime();
  reg("Batch1000MT", Batch1000<Api>)->Arg(64)->Threads(1)->Threads(2)->UseRealTime();
  reg("RandomReplaceMT", RandomReplace<Api>)->Threads(1)->Threads(2)->UseRealTime();
}

void Register(const std::string& who, bool mova) {
  auto reg = [&](const char* name, auto fn) { return benchmark::RegisterBenchmark((who + "/" + name).c_str(), fn); };
  if (mova) {
    reg("AllocFree", AllocFree<MovaApi>)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);
    reg("Batch1000", Batch1000<MovaApi>)->Arg(64);
    reg("RandomReplace", RandomReplace<MovaApi>);
    benchmark::RegisterBenchmark("mova-decay0/Batch1000", Batch1000<MovaDecay0Api>)->Arg(64);
    benchmark::RegisterBenchmark("mova-decay0/RandomReplace", RandomReplace<MovaDecay0Api>);
    reg("PinUnpin", MovaPinUnpin<false>);
    reg("PinOwnedUnpin", MovaPinUnpin<true>);
    reg("PinCellUnpin", MovaPinCellUnpin<false>);
    reg("PinOwnedCellUnpin", MovaPinCellUnpin<true>);
    reg("Read/64", MovaRead<false>);
    reg("ReadSection/64", MovaRead<true>);
    reg("Read64Floor", Read64Floor);
    reg("AllocFreeCell/64", MovaAllocFreeCell);
    reg("AtomicPairFloor", AtomicPair);
    reg("Compaction", MovaCompaction)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
    reg("Relocate", MovaRelocate)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
    reg("Defragment", MovaDefragment)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
    reg("PinUnpinMT", MovaSharedPinUnpin<false>)->Threads(1)->Threads(2)->UseRealTime();
    reg("PinOwnedUnpinMT", MovaSharedPinUnpin<true>)->Threads(1)->Threads(2)->UseRealTime();
  }
  // One and two threads, each on its own objects, one shared pool (mova) or the process's malloc: the time is
  // per operation of all threads together, so two threads that scale perfectly show half the one-thread figure.
  if (mova) {
    RegisterThreaded<MovaSharedApi>(reg);
  } else {
    reg("AllocFree", AllocFree<MallocApi>)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);
    reg("Batch1000", Batch1000<MallocApi>)->Arg(64);
    reg("RandomReplace", RandomReplace<MallocApi>);
    RegisterThreaded<MallocApi>(reg);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string malloc_kind = mova::bench::DetectMalloc();
  bool with_mova = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--with_mova") == 0) with_mova = true;
  }
  Register(malloc_kind, false);
  if (with_mova) Register("mova", true);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
