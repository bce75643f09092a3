// bench/rss.h — reading how much memory is resident, the same way in every bench, test and note.
//
// Functions: ProcessRssBytes and AnonRssBytes (from /proc/self/statm), ResidentBytesIn (mincore over one
// address range), MappingsIn (lines of /proc/self/maps over one address range), AnonHugeBytesIn (transparent
// huge pages there, from /proc/self/smaps), RssBaseline (the process's anonymous RSS before a workload, subtracted from every later
// reading). Heap memory is anonymous; the file-backed part of RSS (code and libraries paged in as a workload
// first runs them) is not memory an allocator holds, so baselines count anonymous pages only.
#ifndef MOVA_BENCH_RSS_H_
#define MOVA_BENCH_RSS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace mova::bench {

// The resident set of this process in bytes, from /proc/self/statm.
absl::StatusOr<std::uint64_t> ProcessRssBytes();

// The anonymous part of it: resident minus file-backed and shared pages (statm's third field).
absl::StatusOr<std::uint64_t> AnonRssBytes();

// Bytes of [start, start + size) that are resident, by mincore (start need not be page aligned).
absl::StatusOr<std::uint64_t> ResidentBytesIn(const void* start, std::size_t size);

// How many mappings (lines of /proc/self/maps) overlap [start, start + size): what moving pages must not
// make grow (vm.max_map_count caps a process's mappings).
absl::StatusOr<std::size_t> MappingsIn(const void* start, std::size_t size);

// Bytes on transparent huge pages in the mappings that overlap [start, start + size) (AnonHugePages of
// /proc/self/smaps, summed over those mappings).
absl::StatusOr<std::uint64_t> AnonHugeBytesIn(const void* start, std::size_t size);

// The mappings that overlap [start, start + size): how many there are and how many carry `flag` among their
// VmFlags in /proc/self/smaps ("dd": left out of core dumps, "hg": MADV_HUGEPAGE, ...).
struct FlaggedMappings {
  std::size_t mappings = 0;
  std::size_t flagged = 0;
};
absl::StatusOr<FlaggedMappings> MappingsWithFlag(const void* start, std::size_t size, std::string_view flag);

// The process's anonymous RSS at construction; Delta() is its growth since (0 if it shrank).
class RssBaseline {
 public:
  RssBaseline();
  std::uint64_t base() const { return base_; }
  std::uint64_t Delta() const;

 private:
  std::uint64_t base_ = 0;
};

}  // namespace mova::bench

#endif  // MOVA_BENCH_RSS_H_
