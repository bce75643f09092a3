// compactor/region_scan.h — the arithmetic a defragmenter shares, whatever its driver: which regions are
// worth emptying, and how many a run emptied.
//
// Functions: RegionsNeeded, RegionsFreed. Regions are numbered from the bottom of an arena; `usage[r]` is the
// pages in use in region r. A migrate scanner walks regions from the top down to RegionsNeeded(): below that
// line every page in use would fit, so moving blocks among those regions frees none.
#ifndef MOVA_COMPACTOR_REGION_SCAN_H_
#define MOVA_COMPACTOR_REGION_SCAN_H_

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mova::compactor {

// How many regions all pages in use would fill (at least one).
inline std::size_t RegionsNeeded(const std::vector<std::uint32_t>& usage, std::size_t pages_per_region) {
  std::uint64_t used = 0;
  for (std::uint32_t u : usage) used += u;
  return std::max<std::size_t>(1, (used + pages_per_region - 1) / pages_per_region);
}

// Regions that had pages in use before and none after.
inline std::uint64_t RegionsFreed(const std::vector<std::uint32_t>& before, const std::vector<std::uint32_t>& after) {
  std::uint64_t freed = 0;
  for (std::size_t r = 0; r < before.size() && r < after.size(); ++r) freed += before[r] > 0 && after[r] == 0;
  return freed;
}

}  // namespace mova::compactor

#endif  // MOVA_COMPACTOR_REGION_SCAN_H_
