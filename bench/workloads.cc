// bench/workloads.cc — see workloads.h.
#include "bench/workloads.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace mova::bench {
namespace {

using Rng = std::mt19937_64;

std::uint32_t Uniform(Rng& rng, std::uint32_t lo, std::uint32_t hi) {
  return lo + static_cast<std::uint32_t>(rng() % (hi - lo + 1));
}

// Live-set bookkeeping shared by the workloads: objects[0 .. size) are live.
struct Live {
  Heap& heap;
  Recorder& rec;
  MmapArray<Object>& objs;
  std::uint64_t bytes = 0;

  void Add(std::uint32_t size) {
    objs.push_back(Object::Of(heap.Allocate(size), size));
    bytes += size;
    rec.Tick();
  }
  // Frees objects[i] and moves the last object into its place.
  void RemoveAt(std::size_t i) {
    heap.Free(objs[i].token());
    bytes -= objs[i].size;
    objs[i] = objs.back();
    objs.pop_back();
    rec.Tick();
  }
  // Frees every object for which keep(index_in_allocation_order) is false, keeping order.
  template <typename Keep>
  void Filter(Keep keep) {
    std::size_t out = 0;
    for (std::size_t i = 0; i < objs.size(); ++i) {
      if (keep(i)) {
        objs[out++] = objs[i];
      } else {
        heap.Free(objs[i].token());
        bytes -= objs[i].size;
        rec.Tick();
      }
    }
    objs.resize(out);
  }
  WorkloadOutcome Outcome() const { return WorkloadOutcome{bytes, objs.size()}; }
};

WorkloadOutcome ThinOut(Live& live, Rng& rng, std::uint64_t target) {
  while (live.bytes < target) live.Add(Uniform(rng, 16, 512));
  live.rec.Sample();
  live.Filter([&](std::size_t) { return rng() % 10 == 0; });
  return live.Outcome();
}

WorkloadOutcome SizeShift(Live& live, Rng& rng, std::uint64_t target) {
  while (live.bytes < target) live.Add(Uniform(rng, 16, 256));
  live.rec.Sample();
  live.Filter([&](std::size_t) { return rng() % 10 == 0; });
  live.rec.Sample();
  while (live.bytes < target) live.Add(Uniform(rng, 1024, 4096));
  return live.Outcome();
}

WorkloadOutcome Churn(Live& live, Rng& rng, std::uint64_t target) {
  while (live.bytes < target) live.Add(Uniform(rng, 16, 128));
  live.rec.Sample();
  // Replace objects at random, by bytes, for 4x the live size; the size range drifts from 16–128 B up to
  // 512–2048 B, so live bytes stay near the target while the mix of sizes changes under the allocator.
  const std::uint64_t total = 4 * target;
  std::uint64_t replaced = 0;
  while (replaced < total) {
    const double f = static_cast<double>(replaced) / total;
    const std::uint32_t lo = static_cast<std::uint32_t>(16 + f * (512 - 16));
    const std::uint32_t hi = static_cast<std::uint32_t>(128 + f * (2048 - 128));
    const std::uint32_t size = Uniform(rng, lo, hi);
    while (live.bytes + size > target && live.objs.size() > 0) live.RemoveAt(rng() % live.objs.size());
    live.Add(size);
    replaced += size;
  }
  return live.Outcome();
}

// Operations-heavy churn: replaces objects one at a time, 4x the object count at fill, while sizes drift
// from 16-128 B to 512-2048 B; live bytes stay at the target (each new object first frees random ones until it
// fits). Most operations are small, so this is where an allocator's per-operation cost and its page traffic
// (blocks emptied and refilled) show.
WorkloadOutcome ChurnOps(Live& live, Rng& rng, std::uint64_t target) {
  while (live.bytes < target) live.Add(Uniform(rng, 16, 128));
  live.rec.Sample();
  const std::uint64_t total = 4 * live.objs.size();
  for (std::uint64_t i = 0; i < total; ++i) {
    const double f = static_cast<double>(i) / total;
    const std::uint32_t size = Uniform(rng, static_cast<std::uint32_t>(16 + f * (512 - 16)),
                                       static_cast<std::uint32_t>(128 + f * (2048 - 128)));
    while (live.bytes + size > target && live.objs.size() > 0) live.RemoveAt(rng() % live.objs.size());
    live.Add(size);
  }
  return live.Outcome();
}

WorkloadOutcome ScatteredSurvivors(Live& live, Rng&, std::uint64_t target) {
  while (live.bytes < target) live.Add(64);
  live.rec.Sample();
  live.Filter([](std::size_t i) { return i % 16 == 0; });
  return live.Outcome();
}

WorkloadOutcome MeshAdversarial(Live& live, Rng&, std::uint64_t target) {
  while (live.bytes < target) live.Add(512);
  live.rec.Sample();
  live.Filter([](std::size_t i) { return i % 2 == 0; });
  const std::size_t first = live.objs.size();
  const std::uint64_t goal = live.bytes + target;
  while (live.bytes < goal) live.Add(1024);
  live.rec.Sample();
  live.Filter([first](std::size_t i) { return i < first || (i - first) % 2 == 0; });
  return live.Outcome();
}

// A key-value cache with LRU eviction at a byte budget. Keys are drawn from a space twice what fits; a hit
// reads the value and makes it most recent, a miss inserts a new value whose size follows a distribution that
// drifts from 32–256 B to 256–2048 B, evicting least recent entries until the budget holds.
WorkloadOutcome LruCache(Live& live, Rng& rng, std::uint64_t budget, MmapArray<Object>& objs) {
  // objs is indexed by key (token 0: absent); the last entry is the LRU list's sentinel.
  const std::uint32_t keys = static_cast<std::uint32_t>(objs.capacity() - 1);
  const std::uint32_t head = keys;
  objs.resize(keys + 1);
  for (std::uint32_t k = 0; k <= keys; ++k) objs[k] = Object::Of(0, 0, k, k);
  auto unlink = [&](std::uint32_t k) {
    objs[objs[k].prev].next = objs[k].next;
    objs[objs[k].next].prev = objs[k].prev;
  };
  auto push_front = [&](std::uint32_t k) {
    objs[k].prev = head;
    objs[k].next = objs[head].next;
    objs[objs[head].next].prev = k;
    objs[head].next = k;
  };
  std::uint64_t bytes = 0, objects = 0, checksum = 0;
  const std::uint64_t ops = 8ull * keys;
  for (std::uint64_t op = 0; op < ops; ++op) {
    const std::uint32_t k = static_cast<std::uint32_t>(rng() % keys);
    if (objs[k].token() != 0) {
      checksum += live.heap.Touch(objs[k].token());
      unlink(k);
      push_front(k);
      continue;
    }
    const double f = static_cast<double>(op) / ops;
    const std::uint32_t size = Uniform(rng, static_cast<std::uint32_t>(32 + f * 224),
                                       static_cast<std::uint32_t>(256 + f * 1792));
    while (bytes + size > budget && objects > 0) {
      const std::uint32_t victim = objs[head].prev;
      unlink(victim);
      live.heap.Free(objs[victim].token());
      bytes -= objs[victim].size;
      --objects;
      objs[victim].cell.store(kNullHandle);
      live.rec.Tick();
    }
    objs[k].cell.store(Handle{live.heap.Allocate(size)});
    objs[k].size = size;
    bytes += size;
    ++objects;
    push_front(k);
    live.rec.Tick();
  }
  if (checksum == 1) std::fputc(' ', stderr);  // keeps the reads
  // Gather the live entries at the front, so the caller sees a plain live list.
  std::size_t out = 0;
  for (std::uint32_t k = 0; k < keys; ++k) {
    if (objs[k].token() != 0) objs[out++] = objs[k];
  }
  objs.resize(out);
  live.bytes = bytes;
  return live.Outcome();
}

}  // namespace

const std::vector<WorkloadInfo>& Workloads() {
  static const auto* w = new std::vector<WorkloadInfo>{
      {"thin-out", "fill with 16-512 B, free 90% at random"},
      {"size-shift", "fill with 16-256 B, free 90%, refill to the same live bytes with 1-4 KiB"},
      {"churn", "16-128 B, random replacement of 4x the live bytes drifting to 512-2048 B"},
      {"churn-ops", "16-128 B, random replacement of 4x the object count drifting to 512-2048 B"},
      {"scattered", "64 B objects, 1 in 16 survives"},
      {"mesh", "512 B, free every other; then 1 KiB, free every other"},
      {"lru-cache", "LRU cache at a byte budget, values drifting from 32-256 B to 256-2048 B"},
  };
  return *w;
}

bool IsWorkload(const std::string& name) {
  for (const WorkloadInfo& w : Workloads()) {
    if (w.name == name) return true;
  }
  return false;
}

Recorder::Recorder(std::uint64_t every) : series_(1 << 16), every_(every) {}

void Recorder::Start() {
  baseline_ = RssBaseline();
  start_ = std::chrono::steady_clock::now();
}

void Recorder::Sample() {
  const std::uint64_t rss = baseline_.Delta();
  peak_ = std::max(peak_, rss);
  if (series_.size() < series_.capacity()) {
    series_.push_back(Point{std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(), rss});
  }
}

std::size_t BookkeepingCapacity(const std::string& name, const WorkloadParams& p) {
  const std::uint64_t l = p.live_bytes;
  if (name == "thin-out") return l / 16 + 1024;
  if (name == "size-shift") return l / 16 + 1024;
  if (name == "churn") return l / 16 + 1024;
  if (name == "churn-ops") return l / 16 + 1024;
  if (name == "scattered") return l / 64 + 1024;
  if (name == "mesh") return l / 512 + l / 1024 + 1024;
  if (name == "lru-cache") return 2 * (l / 600) + 1024;  // keys: twice what the budget holds at mid-drift
  return 0;
}

WorkloadOutcome RunWorkload(const std::string& name, Heap& heap, Recorder& recorder, MmapArray<Object>& objects,
                            const WorkloadParams& params) {
  Rng rng(params.seed);
  heap.Own(objects);
  Live live{heap, recorder, objects};
  const std::uint64_t l = params.live_bytes;
  WorkloadOutcome out;
  if (name == "thin-out") out = ThinOut(live, rng, l);
  else if (name == "size-shift") out = SizeShift(live, rng, l);
  else if (name == "churn") out = Churn(live, rng, l);
  else if (name == "churn-ops") out = ChurnOps(live, rng, l);
  else if (name == "scattered") out = ScatteredSurvivors(live, rng, l);
  else if (name == "mesh") out = MeshAdversarial(live, rng, l);
  else if (name == "lru-cache") out = LruCache(live, rng, l, objects);
  else {
    std::fprintf(stderr, "unknown workload %s\n", name.c_str());
    std::abort();
  }
  recorder.Sample();
  return out;
}

}  // namespace mova::bench
