// bench/defrag_bench.cc — mova-defragbench: arena defragmentation, end to end, per move way.
//
// Two heaps, each built fresh for every row and repetition:
//   blocks  --fill_mib of objects of four sizes (48, 200, 700, 3000 B) interleaved, 90% freed at random,
//           then compact(): dense blocks scattered over many 2 MiB regions.
//   huge    huge objects (70 KiB .. 2.6 MiB) between spacers filling --fill_mib; the spacers and the lower
//           half of the huge objects freed: runs high up, room below.
// Then one defragment(). Each row prints the medians over --reps of: regions in use before and after, regions
// released, blocks (or huge objects) moved and how (UFFDIO_MOVE / mremap / memcpy), MiB moved, the time, and
// the process's anonymous RSS growth (bench/rss.h) just before and just after.
// Ways: uffd (the default), mremap (UFFDIO_MOVE off: huge runs by mremap, blocks by memcpy), memcpy (both off).
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "bench/rss.h"
#include "mova/pool.h"

ABSL_FLAG(std::uint64_t, fill_mib, 256, "bytes allocated before the thin-out, MiB");
ABSL_FLAG(int, reps, 3, "repetitions per row (medians are printed)");

namespace {

struct Sample {
  double regions_before = 0, regions_after = 0, regions_freed = 0, moved = 0, by_uffd = 0, by_mremap = 0,
         by_copy = 0, mib_moved = 0, ms = 0, rss_before = 0, rss_after = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void BuildBlocks(mova::Pool& pool, std::size_t fill, std::vector<mova::Handle>* kept) {
  std::mt19937_64 rng(11);
  const std::size_t sizes[] = {48, 200, 700, 3000};
  std::vector<mova::Handle> all;
  std::size_t bytes = 0;
  for (std::size_t i = 0; bytes < fill; ++i) {
    all.push_back(pool.allocate(sizes[i % 4]).value());
    bytes += sizes[i % 4];
  }
  for (mova::Handle h : all) {
    if (rng() % 10 == 0) {
      kept->push_back(h);
    } else {
      (void)pool.free(h);
    }
  }
  pool.compact();
}

void BuildHuge(mova::Pool& pool, std::size_t fill, std::vector<mova::Handle>* kept) {
  const std::size_t sizes[] = {70 << 10, 300 << 10, 1500 << 10, 2600 << 10};
  std::vector<mova::Handle> huge, spacers;
  std::size_t bytes = 0;
  for (std::size_t i = 0; bytes < fill; ++i) {
    const std::size_t s = sizes[i % 4];
    huge.push_back(pool.allocate(s).value());
    // Touch every page, as a service would: the moves then carry real pages.
    mova::Pinned p = pool.pin(huge.back(), mova::Access::kWrite).value();
    for (std::size_t off = 0; off < s; off += 4096) p.mutable_data()[off] = std::byte(i);
    spacers.push_back(pool.allocate(200 << 10).value());
    bytes += s + (200 << 10);
  }
  for (mova::Handle h : spacers) (void)pool.free(h);
  for (std::size_t i = 0; i < huge.size(); ++i) {
    if (i < huge.size() / 2) {
      (void)pool.free(huge[i]);
    } else {
      kept->push_back(huge[i]);
    }
  }
}

Sample RunOnce(const std::string& heap, const std::string& way, std::size_t fill) {
  mova::bench::RssBaseline baseline;
  mova::PoolOptions options;
  options.move_by_userfaultfd = way == "uffd";
  options.move_by_mremap = way != "memcpy";
  auto pool = mova::Pool::Create(options).value();
  std::vector<mova::Handle> kept;
  if (heap == "blocks") {
    BuildBlocks(*pool, fill, &kept);
  } else {
    BuildHuge(*pool, fill, &kept);
  }
  Sample s;
  s.regions_before = static_cast<double>(pool->stats().regions_in_use);
  s.rss_before = baseline.Delta() / 1048576.0;
  const mova::DefragResult r = pool->defragment();
  s.rss_after = baseline.Delta() / 1048576.0;
  s.regions_after = static_cast<double>(pool->stats().regions_in_use);
  s.regions_freed = static_cast<double>(r.regions_freed);
  s.moved = static_cast<double>(r.blocks_migrated);
  s.by_uffd = static_cast<double>(r.moves_uffd);
  s.by_mremap = static_cast<double>(r.moves_mremap);
  s.by_copy = static_cast<double>(r.moves_copy);
  s.mib_moved = r.pages_moved * 4096.0 / 1048576.0;
  s.ms = r.seconds * 1e3;
  for (mova::Handle h : kept) (void)pool->free(h);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::size_t fill = absl::GetFlag(FLAGS_fill_mib) << 20;
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  std::printf("fill %lu MiB, median of %d runs; RSS = anonymous RSS growth of this process (MiB)\n",
              static_cast<unsigned long>(fill >> 20), reps);
  std::printf("%-7s %-7s %8s %8s %8s %8s %7s %7s %7s %9s %9s %9s %9s %8s\n", "heap", "way", "regions", "after",
              "freed", "moved", "uffd", "mremap", "memcpy", "MiB", "ms", "MiB/s", "RSS", "after");
  for (const std::string heap : {"blocks", "huge"}) {
    for (const std::string way : {"uffd", "mremap", "memcpy"}) {
      if (heap == "blocks" && way == "mremap") continue;  // blocks never go by mremap: the same as memcpy
      std::vector<Sample> samples;
      for (int i = 0; i < reps; ++i) samples.push_back(RunOnce(heap, way, fill));
      auto med = [&](double Sample::*field) {
        std::vector<double> v;
        for (const Sample& s : samples) v.push_back(s.*field);
        return Median(v);
      };
      const double ms = med(&Sample::ms), mib = med(&Sample::mib_moved);
      std::printf("%-7s %-7s %8.0f %8.0f %8.0f %8.0f %7.0f %7.0f %7.0f %9.1f %9.2f %9.0f %9.1f %8.1f\n",
                  heap.c_str(), way.c_str(), med(&Sample::regions_before), med(&Sample::regions_after),
                  med(&Sample::regions_freed), med(&Sample::moved), med(&Sample::by_uffd), med(&Sample::by_mremap),
                  med(&Sample::by_copy), mib, ms, ms > 0 ? mib / (ms / 1e3) : 0.0, med(&Sample::rss_before),
                  med(&Sample::rss_after));
    }
  }
  return 0;
}
