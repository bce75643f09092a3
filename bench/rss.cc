// bench/rss.cc — see rss.h.
#include "bench/rss.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"

namespace mova::bench {

namespace {

struct Statm {
  std::uint64_t resident = 0;  // bytes
  std::uint64_t shared = 0;    // bytes resident that are file-backed or shared memory
};

// For the first line of a mapping in /proc/self/maps or smaps ("lo-hi perms ..."): true, and whether the
// mapping overlaps [lo, hi). False for any other line (smaps' field lines).
bool MappingLine(const std::string& line, std::uintptr_t lo, std::uintptr_t hi, bool* overlaps) {
  const std::size_t dash = line.find('-'), space = line.find(' ');
  if (dash == std::string::npos || space == std::string::npos || dash > space ||
      line.find_first_not_of("0123456789abcdef") != dash) {
    return false;
  }
  const std::uintptr_t begin = std::stoull(line.substr(0, dash), nullptr, 16);
  const std::uintptr_t end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
  *overlaps = begin < hi && end > lo;
  return true;
}

// Calls on_field(line) for every field line ("Name: value") of the mappings in /proc/self/smaps that overlap
// [start, start + size); returns how many mappings overlap.
template <typename OnField>
absl::StatusOr<std::size_t> ForEachSmapsFieldIn(const void* start, std::size_t size, OnField on_field) {
  const auto lo = reinterpret_cast<std::uintptr_t>(start);
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return absl::InternalError("cannot open /proc/self/smaps");
  std::size_t mappings = 0;
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    if (MappingLine(line, lo, lo + size, &inside)) {
      if (inside) ++mappings;
    } else if (inside) {
      on_field(line);
    }
  }
  return mappings;
}

absl::StatusOr<Statm> ReadStatm() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return absl::InternalError(absl::StrFormat("open /proc/self/statm: %s", std::strerror(errno)));
  unsigned long long size_pages = 0, resident_pages = 0, shared_pages = 0;
  const int n = std::fscanf(f, "%llu %llu %llu", &size_pages, &resident_pages, &shared_pages);
  std::fclose(f);
  if (n != 3) return absl::InternalError("cannot parse /proc/self/statm");
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  return Statm{resident_pages * page, shared_pages * page};
}

}  // namespace

absl::StatusOr<std::uint64_t> ProcessRssBytes() {
  absl::StatusOr<Statm> s = ReadStatm();
  if (!s.ok()) return s.status();
  return s->resident;
}

absl::StatusOr<std::uint64_t> AnonRssBytes() {
  absl::StatusOr<Statm> s = ReadStatm();
  if (!s.ok()) return s.status();
  return s->resident - s->shared;
}

absl::StatusOr<std::uint64_t> ResidentBytesIn(const void* start, std::size_t size) {
  const std::uintptr_t page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(start) & ~(page - 1);
  const std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(start) + size + page - 1) & ~(page - 1);
  std::uint64_t resident = 0;
  // In chunks, so a large reservation needs only a small vector.
  constexpr std::size_t kChunkPages = 1 << 16;
  std::vector<unsigned char> vec(kChunkPages);
  for (std::uintptr_t a = lo; a < hi; a += kChunkPages * page) {
    const std::size_t len = std::min<std::uintptr_t>(kChunkPages * page, hi - a);
    if (mincore(reinterpret_cast<void*>(a), len, vec.data()) != 0) {
      return absl::InternalError(absl::StrFormat("mincore(%#x, %u): %s", a, len, std::strerror(errno)));
    }
    for (std::size_t i = 0; i < len / page; ++i) resident += (vec[i] & 1) ? page : 0;
  }
  return resident;
}

absl::StatusOr<std::size_t> MappingsIn(const void* start, std::size_t size) {
  const auto lo = reinterpret_cast<std::uintptr_t>(start);
  std::ifstream maps("/proc/self/maps");
  if (!maps) return absl::InternalError("cannot open /proc/self/maps");
  std::size_t n = 0;
  bool overlaps = false;
  for (std::string line; std::getline(maps, line);) {
    if (MappingLine(line, lo, lo + size, &overlaps) && overlaps) ++n;
  }
  return n;
}

absl::StatusOr<std::uint64_t> AnonHugeBytesIn(const void* start, std::size_t size) {
  std::uint64_t bytes = 0;
  absl::StatusOr<std::size_t> mappings = ForEachSmapsFieldIn(start, size, [&](const std::string& line) {
    if (line.rfind("AnonHugePages:", 0) == 0) bytes += std::stoull(line.substr(14)) * 1024;  // "...:  2048 kB"
  });
  if (!mappings.ok()) return mappings.status();
  return bytes;
}

absl::StatusOr<FlaggedMappings> MappingsWithFlag(const void* start, std::size_t size, std::string_view flag) {
  FlaggedMappings out;
  absl::StatusOr<std::size_t> mappings = ForEachSmapsFieldIn(start, size, [&](const std::string& line) {
    if (line.rfind("VmFlags:", 0) != 0) return;
    std::istringstream flags(line.substr(8));
    for (std::string f; flags >> f;) {
      if (f == flag) ++out.flagged;
    }
  });
  if (!mappings.ok()) return mappings.status();
  out.mappings = *mappings;
  return out;
}

RssBaseline::RssBaseline() { base_ = AnonRssBytes().value_or(0); }

std::uint64_t RssBaseline::Delta() const {
  const std::uint64_t now = AnonRssBytes().value_or(0);
  return now > base_ ? now - base_ : 0;
}

}  // namespace mova::bench
