// The move engine from several threads at once: engines come and go (sharing, opening and closing the
// process's one userfaultfd) while others move pages; every byte arrives and the counters add up.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "compactor/move_engine.h"
#include "os/os.h"

namespace mova::compactor {
namespace {

TEST(MoveEngineConcurrency, EnginesComeAndGoWhileOthersMove) {
  os::Os& the_os = os::SystemOs();
  constexpr int kThreads = 4, kRounds = 20, kMoves = 200;
  constexpr std::size_t kPlaces = 64, kRunPages = 4, kRange = kPlaces * kRunPages * kPageSize;
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> moves{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        std::byte* base = the_os.Reserve(Bytes(kRange), Bytes(std::size_t{2} << 20)).value();
        {
          MoveEngine engine(the_os, base, Bytes(kRange));
          auto place = [&](std::size_t i) { return base + i * kRunPages * kPageSize; };
          if (!the_os.Populate(place(0), Bytes(kRunPages * kPageSize)).ok()) ++bad;
          auto* words = reinterpret_cast<std::uint64_t*>(place(0));
          for (std::size_t i = 0; i < kRunPages * kPageSize / 8; ++i) words[i] = (std::uint64_t(t) << 48) | i;
          std::size_t at = 0;
          for (int m = 0; m < kMoves; ++m) {
            const std::size_t to = (at + 1) % kPlaces;
            absl::StatusOr<MoveOutcome> out = engine.Move(place(to), place(at), Bytes(kRunPages * kPageSize),
                                                          m % 2 == 0 ? MoveKind::kBlock : MoveKind::kRun);
            if (!out.ok()) {
              ++bad;
              continue;
            }
            if (!out->source_vacated) (void)the_os.Discard(place(at), Bytes(kRunPages * kPageSize));
            at = to;
          }
          words = reinterpret_cast<std::uint64_t*>(place(at));
          for (std::size_t i = 0; i < kRunPages * kPageSize / 8; ++i) {
            if (words[i] != ((std::uint64_t(t) << 48) | i)) ++bad;
          }
          const MoveEngineStats s = engine.stats();
          if (s.uffd_moves + s.remap_moves + s.copy_moves != kMoves) ++bad;
          moves += kMoves;
        }
        (void)the_os.Unreserve(base, Bytes(kRange));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(moves.load(), std::uint64_t{kThreads} * kRounds * kMoves);
}

}  // namespace
}  // namespace mova::compactor
