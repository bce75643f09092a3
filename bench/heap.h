// bench/heap.h — the allocator under test, as the fragmentation workloads see it.
//
// Types: Heap (allocate / free / best effort), MallocHeap (whatever malloc the process was linked with:
// glibc, jemalloc, mimalloc or tcmalloc, told apart by the symbols it exports), MovaHeap (a mova::Pool,
// optionally compacting every so many allocated bytes).
// Every allocation is written in full, as a program fills what it allocates.
#ifndef MOVA_BENCH_HEAP_H_
#define MOVA_BENCH_HEAP_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mova::bench {

class Heap {
 public:
  virtual ~Heap() = default;
  virtual std::string name() const = 0;
  // Allocates `size` bytes, writes them, and returns a token that names the object.
  virtual std::uint64_t Allocate(std::size_t size) = 0;
  virtual void Free(std::uint64_t token) = 0;
  // Reads the object's first byte (a cache hit).
  virtual std::uint8_t Touch(std::uint64_t token) = 0;
  // The allocator's own best effort to return free memory to the OS.
  virtual void BestEffort() = 0;
  // System calls the allocator made, where it can tell (mova: every call through its OS seam); -1 if not.
  virtual std::int64_t SystemCalls() const { return -1; }
};

// The malloc this process runs on. `expected` ("glibc", "jemalloc", "mimalloc", "tcmalloc") must match what
// the exported symbols say, or the process aborts: a benchmark row must never be labelled wrongly.
std::unique_ptr<Heap> MakeMallocHeap(const std::string& expected);
// Which malloc the process runs on, by the symbols it exports.
std::string DetectMalloc();
// A mova::Pool; with compact_every_bytes > 0 it also compacts each time that many bytes were allocated
// (standing in for a service's periodic compaction), and calls itself "mova-periodic".
// `decay_ms` >= 0 overrides PoolOptions::decay (for choosing its default; -1 keeps it).
std::unique_ptr<Heap> MakeMovaHeap(std::uint64_t compact_every_bytes = 0, std::int64_t decay_ms = -1);
// A mova::Pool with its background compactor on (PoolOptions::background_interval), "mova-background".
std::unique_ptr<Heap> MakeMovaBackgroundHeap(std::chrono::milliseconds interval, std::int64_t decay_ms = -1);

}  // namespace mova::bench

#endif  // MOVA_BENCH_HEAP_H_
