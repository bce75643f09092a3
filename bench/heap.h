// bench/heap.h — the allocator under test, as the fragmentation workloads see it.
//
// Types: Object (what a workload keeps of each object), Heap (allocate / free / best effort), MallocHeap
// (whatever malloc the process was linked with: glibc, jemalloc, mimalloc or tcmalloc, told apart by the
// symbols it exports), MovaHeap (a mova::Pool, optionally compacting every so many allocated bytes,
// optionally owning the workload's handles).
// Every allocation is written in full, as a program fills what it allocates.
#ifndef MOVA_BENCH_HEAP_H_
#define MOVA_BENCH_HEAP_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "bench/mmap_array.h"
#include "mova/handle_owner.h"

namespace mova::bench {

// What a workload keeps of each object: the heap's token in a cell, which a heap that owns the workload's
// handles (mova-owned) rewrites when handle compaction moves them; the workload reads it afresh before each
// call, and nothing moves between that read and the call.
struct Object {
  HandleCell cell;     // the token; null: no object
  std::uint32_t size;
  std::uint32_t prev;  // LRU links (lru-cache only)
  std::uint32_t next;
  std::uint32_t unused;
  std::uint64_t token() const { return cell.load().raw; }
  static Object Of(std::uint64_t token, std::uint32_t size, std::uint32_t prev = 0, std::uint32_t next = 0) {
    return Object{HandleCell(Handle{token}), size, prev, next, 0};
  }
};

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
  // The workload keeps its objects in `objects`: a heap that owns handles registers their cells (called
  // before the first Allocate).
  virtual void Own(MmapArray<Object>& objects) { (void)objects; }
};

// The malloc this process runs on. `expected` ("glibc", "jemalloc", "mimalloc", "tcmalloc") must match what
// the exported symbols say, or the process aborts: a benchmark row must never be labelled wrongly.
std::unique_ptr<Heap> MakeMallocHeap(const std::string& expected);
// Which malloc the process runs on, by the symbols it exports.
std::string DetectMalloc();
// A mova::Pool; with compact_every_bytes > 0 it also compacts each time that many bytes were allocated
// (standing in for a service's periodic compaction), and calls itself "mova-periodic".
// `decay_ms` >= 0 overrides PoolOptions::decay (for choosing its default; -1 keeps it).
// With `owned`, the pool owns the workload's handles (mova/handle_owner.h: its compactions also compact the
// handle table), and the heap calls itself "mova-owned" / "mova-periodic-owned".
std::unique_ptr<Heap> MakeMovaHeap(std::uint64_t compact_every_bytes = 0, std::int64_t decay_ms = -1,
                                   bool owned = false);
// A mova::Pool with its background compactor on (PoolOptions::background_interval), "mova-background".
std::unique_ptr<Heap> MakeMovaBackgroundHeap(std::chrono::milliseconds interval, std::int64_t decay_ms = -1);

}  // namespace mova::bench

#endif  // MOVA_BENCH_HEAP_H_
