// bench/fragbench_worker.cc — runs one fragmentation workload on one allocator and prints what it measured.
//
// Built once per malloc (glibc, jemalloc, mimalloc, tcmalloc: each binary links its own); the glibc build also
// runs mova (--allocator=mova). mova-fragbench starts these in separate processes, one row each.
// Output: one line "result key=value ...", then "series <seconds> <rss bytes>" lines when --series is given.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/heap.h"
#include "bench/workloads.h"

ABSL_FLAG(std::string, allocator, "",
          "mova, mova-owned, mova-periodic, mova-periodic-owned, mova-background, or the malloc this binary is linked with");
ABSL_FLAG(std::string, workload, "thin-out", "which workload");
ABSL_FLAG(std::uint64_t, live_mib, 64, "live size the workload is scaled to, MiB");
ABSL_FLAG(std::uint64_t, seed, 1, "random seed");
ABSL_FLAG(bool, series, false, "print the RSS samples over time");
ABSL_FLAG(std::int64_t, mova_decay_ms, -1, "mova rows: PoolOptions::decay in ms (-1: the default)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace mova::bench;
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (!IsWorkload(workload)) {
    std::fprintf(stderr, "unknown workload %s\n", workload.c_str());
    return 2;
  }
  WorkloadParams params;
  params.live_bytes = absl::GetFlag(FLAGS_live_mib) << 20;
  params.seed = absl::GetFlag(FLAGS_seed);
  std::string allocator = absl::GetFlag(FLAGS_allocator);
  if (allocator.empty()) allocator = DetectMalloc();

  // Bookkeeping first, then the baseline, then the heap.
  MmapArray<Object> objects(BookkeepingCapacity(workload, params));
  Recorder recorder;
  recorder.Start();
  std::unique_ptr<Heap> heap;
  if (allocator == "mova") {
    heap = MakeMovaHeap(0, absl::GetFlag(FLAGS_mova_decay_ms));
  } else if (allocator == "mova-periodic") {
    heap = MakeMovaHeap(params.live_bytes / 2, absl::GetFlag(FLAGS_mova_decay_ms));  // compact after half the live size
  } else if (allocator == "mova-owned") {
    heap = MakeMovaHeap(0, absl::GetFlag(FLAGS_mova_decay_ms), /*owned=*/true);
  } else if (allocator == "mova-periodic-owned") {
    heap = MakeMovaHeap(params.live_bytes / 2, absl::GetFlag(FLAGS_mova_decay_ms), /*owned=*/true);
  } else if (allocator == "mova-background") {
    heap = MakeMovaBackgroundHeap(std::chrono::milliseconds(10), absl::GetFlag(FLAGS_mova_decay_ms));
  } else {
    heap = MakeMallocHeap(allocator);
  }

  const auto t0 = std::chrono::steady_clock::now();
  const WorkloadOutcome out = RunWorkload(workload, *heap, recorder, objects, params);
  const auto t1 = std::chrono::steady_clock::now();
  const std::int64_t syscalls = heap->SystemCalls();  // during the workload, before the best effort
  const std::uint64_t rss_before = recorder.Delta();
  heap->BestEffort();
  const auto t2 = std::chrono::steady_clock::now();
  recorder.Sample();
  const std::uint64_t rss = recorder.Delta();

  std::printf("result allocator=%s workload=%s live_bytes=%llu live_objects=%llu rss_bytes=%llu "
              "rss_before_best_effort=%llu peak_rss_bytes=%llu seconds=%.6f best_effort_seconds=%.6f ops=%llu "
              "syscalls=%lld\n",
              heap->name().c_str(), workload.c_str(), static_cast<unsigned long long>(out.live_bytes),
              static_cast<unsigned long long>(out.live_objects), static_cast<unsigned long long>(rss),
              static_cast<unsigned long long>(rss_before), static_cast<unsigned long long>(recorder.peak()),
              std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count(),
              static_cast<unsigned long long>(recorder.ops()), static_cast<long long>(syscalls));
  if (absl::GetFlag(FLAGS_series)) {
    for (const Recorder::Point& p : recorder.series()) {
      std::printf("series %.6f %llu\n", p.seconds, static_cast<unsigned long long>(p.rss_bytes));
    }
  }
  return 0;
}
