// bench/move_bench.cc — mova_movebench: what moving a block or a run costs, per way, side by side.
//
// Moves/<way>/<bytes>: one move of `bytes` (4 KiB, 64 KiB, 2 MiB) per iteration through the MoveEngine, with:
//   uffd         UFFDIO_MOVE (the pages change place; nothing is copied)
//   uffd-thp     the same for a 2 MiB run on one transparent huge page (MADV_COLLAPSE): one page-table entry
//   mremap       mremap(MREMAP_DONTUNMAP) — the engine's way for huge runs without UFFDIO_MOVE
//   copy         the engine's memcpy fallback: populate the destination, then memcpy
//   fresh-memcpy the baseline: memcpy into pages never touched (each first write faults one in)
// uffd and mremap pass the run along a ring of places (each move leaves its source empty); copy and
// fresh-memcpy copy one source into a ring of destinations that are discarded, untimed, after each lap.
// Bytes/s and time per move are reported; bench/run_moves.sh prints them as one table with ratios.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>

#include "compactor/move_engine.h"
#include "os/os.h"

namespace {

using mova::Bytes;
using mova::compactor::MoveEngine;
using mova::compactor::MoveEngineOptions;
using mova::compactor::MoveKind;

enum class Way { kUffd, kUffdThp, kMremap, kCopy, kFreshMemcpy };

constexpr std::size_t kRegion = std::size_t{2} << 20;

void Fill(std::byte* p, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; i += 64) p[i] = std::byte(i >> 6);
}
bool Check(const std::byte* p, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; i += 64) {
    if (p[i] != std::byte(i >> 6)) return false;
  }
  return true;
}

void Moves(benchmark::State& state, Way way) {
  mova::os::Os& os = mova::os::SystemOs();
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t places = bytes >= kRegion ? 32 : 256;
  const std::size_t range = places * bytes;
  std::byte* base = os.Reserve(Bytes(range), Bytes(kRegion)).value();
  MoveEngineOptions options;
  options.use_userfaultfd = way == Way::kUffd || way == Way::kUffdThp;
  options.use_remap = way == Way::kMremap;
  options.remap_budget = ~std::uint64_t{0};
  auto engine = std::make_unique<MoveEngine>(os, base, Bytes(range), options);
  if (options.use_userfaultfd && !engine->stats().userfaultfd_ready) {
    state.SkipWithError(("UFFDIO_MOVE unavailable: " + engine->userfaultfd_unavailable_reason()).c_str());
    (void)os.Unreserve(base, Bytes(range));
    return;
  }
  auto place = [&](std::size_t i) { return base + i * bytes; };
  (void)os.Populate(place(0), Bytes(bytes));
  Fill(place(0), bytes);
  if (way == Way::kUffdThp && !os.CollapseHugepages(place(0), Bytes(bytes)).ok()) {
    state.SkipWithError("MADV_COLLAPSE refused");
    (void)os.Unreserve(base, Bytes(range));
    return;
  }
  const MoveKind kind = way == Way::kMremap ? MoveKind::kRun : MoveKind::kBlock;
  std::size_t at = 0, next = 1;
  bool ok = true;
  for (auto _ : state) {
    switch (way) {
      case Way::kUffd:
      case Way::kUffdThp:
      case Way::kMremap:
        ok &= engine->Move(place(next), place(at), Bytes(bytes), kind).ok();
        at = next;
        next = (next + 1) % places;
        break;
      case Way::kCopy:
        ok &= engine->Move(place(next), place(0), Bytes(bytes), kind).ok();
        at = next;
        break;
      case Way::kFreshMemcpy:
        std::memcpy(place(next), place(0), bytes);
        benchmark::ClobberMemory();
        at = next;
        break;
    }
    if (way == Way::kCopy || way == Way::kFreshMemcpy) {
      if (++next == places) {  // a lap done: make the destinations fresh again, untimed
        state.PauseTiming();
        (void)os.Discard(place(1), Bytes(range - bytes));
        next = 1;
        at = 0;
        state.ResumeTiming();
      }
    }
  }
  if (!ok || !Check(place(at), bytes)) state.SkipWithError("a move failed or lost bytes");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  engine.reset();
  (void)os.Unreserve(base, Bytes(range));
}

}  // namespace

int main(int argc, char** argv) {
  const std::pair<const char*, Way> ways[] = {{"uffd", Way::kUffd},
                                              {"uffd-thp", Way::kUffdThp},
                                              {"mremap", Way::kMremap},
                                              {"copy", Way::kCopy},
                                              {"fresh-memcpy", Way::kFreshMemcpy}};
  for (const auto& [name, way] : ways) {
    auto* b = benchmark::RegisterBenchmark((std::string("Moves/") + name).c_str(),
                                           [way = way](benchmark::State& s) { Moves(s, way); });
    if (way == Way::kUffdThp) {
      b->Arg(2 << 20);
    } else {
      b->Arg(4 << 10)->Arg(64 << 10)->Arg(2 << 20);
    }
    b->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
