// bench/workloads.h — the fragmentation workloads, run against any Heap.
//
// Types: WorkloadInfo (name and the size distribution it uses, as printed), WorkloadParams, Recorder (RSS
// samples over time and the peak), WorkloadOutcome. Every workload keeps its bookkeeping in MmapArrays made
// before the RSS baseline, and tracks live bytes itself (bytes requested and not yet freed).
#ifndef MOVA_BENCH_WORKLOADS_H_
#define MOVA_BENCH_WORKLOADS_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/heap.h"
#include "bench/mmap_array.h"
#include "bench/rss.h"

namespace mova::bench {

struct WorkloadInfo {
  std::string name;
  std::string distribution;  // what is allocated and freed, in words
};
const std::vector<WorkloadInfo>& Workloads();
bool IsWorkload(const std::string& name);

struct WorkloadParams {
  std::uint64_t live_bytes = 64ull << 20;  // the live size each workload is scaled to
  std::uint64_t seed = 1;
};

// Samples anonymous RSS every `every` operations and at phase ends, less the baseline it takes when made
// (after its own sample buffer exists, so the buffer is not counted).
class Recorder {
 public:
  struct Point {
    double seconds;
    std::uint64_t rss_bytes;
  };
  explicit Recorder(std::uint64_t every = 1024);
  // Starts the clock and takes the baseline: call after all bookkeeping is made, right before the heap.
  void Start();
  std::uint64_t Delta() const { return baseline_.Delta(); }
  void Tick() {
    if (++ops_ % every_ == 0) Sample();
  }
  void Sample();
  std::uint64_t peak() const { return peak_; }
  std::uint64_t ops() const { return ops_; }  // allocations and frees the workload made
  const MmapArray<Point>& series() const { return series_; }

 private:
  MmapArray<Point> series_;
  RssBaseline baseline_;
  const std::uint64_t every_;
  std::uint64_t ops_ = 0;
  std::uint64_t peak_ = 0;
  std::chrono::steady_clock::time_point start_;
};

struct WorkloadOutcome {
  std::uint64_t live_bytes = 0;
  std::uint64_t live_objects = 0;
};

// How many bookkeeping entries `name` needs at `params`, so the caller can make them before its baseline.
std::size_t BookkeepingCapacity(const std::string& name, const WorkloadParams& params);

// Runs workload `name` on `heap`, keeping objects in `objects` (capacity from BookkeepingCapacity).
WorkloadOutcome RunWorkload(const std::string& name, Heap& heap, Recorder& recorder, MmapArray<Object>& objects,
                            const WorkloadParams& params);

}  // namespace mova::bench

#endif  // MOVA_BENCH_WORKLOADS_H_
