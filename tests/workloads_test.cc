// The fragmentation workloads' own accounting, checked against a heap that keeps its own books: the live
// bytes and objects a workload reports are what the heap really holds, and each workload has the shape its
// description promises.
#include "bench/workloads.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "bench/heap.h"

namespace mova::bench {
namespace {

// Tokens are sequence numbers; the heap records every live object's size.
class CountingHeap final : public Heap {
 public:
  std::string name() const override { return "counting"; }
  std::uint64_t Allocate(std::size_t size) override {
    live_[++next_] = size;
    bytes_ += size;
    peak_ = std::max(peak_, bytes_);
    return next_;
  }
  void Free(std::uint64_t token) override {
    auto it = live_.find(token);
    ASSERT_NE(it, live_.end()) << "double or wild free of " << token;
    bytes_ -= it->second;
    live_.erase(it);
  }
  std::uint8_t Touch(std::uint64_t token) override {
    EXPECT_TRUE(live_.contains(token));
    return 0;
  }
  void BestEffort() override {}

  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t objects() const { return live_.size(); }
  std::uint64_t peak() const { return peak_; }

 private:
  absl::flat_hash_map<std::uint64_t, std::size_t> live_;
  std::uint64_t next_ = 0, bytes_ = 0, peak_ = 0;
};

struct Outcome {
  WorkloadOutcome out;
  std::uint64_t heap_bytes, heap_objects, heap_peak;
};

Outcome RunOn(const std::string& name, std::uint64_t live_bytes) {
  WorkloadParams p;
  p.live_bytes = live_bytes;
  MmapArray<Object> objects(BookkeepingCapacity(name, p));
  Recorder rec;
  rec.Start();
  CountingHeap heap;
  Outcome r;
  r.out = RunWorkload(name, heap, rec, objects, p);
  r.heap_bytes = heap.bytes();
  r.heap_objects = heap.objects();
  r.heap_peak = heap.peak();
  // The bookkeeping lists exactly the live objects.
  std::uint64_t listed = 0;
  for (std::size_t i = 0; i < objects.size(); ++i) listed += objects[i].size;
  EXPECT_EQ(listed, heap.bytes()) << name;
  EXPECT_EQ(objects.size(), heap.objects()) << name;
  return r;
}

constexpr std::uint64_t kL = 4 << 20;

TEST(Workloads, EveryWorkloadReportsWhatTheHeapHolds) {
  for (const WorkloadInfo& w : Workloads()) {
    const Outcome r = RunOn(w.name, kL);
    EXPECT_EQ(r.out.live_bytes, r.heap_bytes) << w.name;
    EXPECT_EQ(r.out.live_objects, r.heap_objects) << w.name;
    EXPECT_GT(r.out.live_objects, 0u) << w.name;
  }
}

TEST(Workloads, ShapesMatchTheirDescriptions) {
  const Outcome thin = RunOn("thin-out", kL);
  EXPECT_NEAR(double(thin.out.live_bytes) / kL, 0.10, 0.02);  // 90% freed
  EXPECT_GE(thin.heap_peak, kL);

  const Outcome scattered = RunOn("scattered", kL);
  EXPECT_EQ(scattered.out.live_objects, (kL / 64 + 15) / 16);  // 1 in 16 of the 64 B objects
  EXPECT_EQ(scattered.out.live_bytes, scattered.out.live_objects * 64);

  const Outcome mesh = RunOn("mesh", kL);
  EXPECT_NEAR(double(mesh.out.live_bytes) / kL, 1.0, 0.01);  // half of L in 512 B + half of 2L in 1 KiB
  EXPECT_GE(mesh.heap_peak, kL * 3 / 2);

  const Outcome shift = RunOn("size-shift", kL);
  EXPECT_GE(shift.out.live_bytes, kL);
  EXPECT_LT(shift.out.live_bytes, kL + 4096);

  const Outcome churn = RunOn("churn", kL);
  EXPECT_LE(churn.out.live_bytes, kL);
  EXPECT_GT(churn.out.live_bytes, kL - 2048);
  EXPECT_LE(churn.heap_peak, kL + 128);  // the fill stops at the first object past L; replacement stays under

  const Outcome lru = RunOn("lru-cache", kL);
  EXPECT_LE(lru.heap_peak, kL);  // the budget holds at every moment
  EXPECT_GT(lru.out.live_bytes, kL * 8 / 10);
}

TEST(Workloads, TheTestProcessRunsOnGlibc) { EXPECT_EQ(DetectMalloc(), "glibc"); }

}  // namespace
}  // namespace mova::bench
