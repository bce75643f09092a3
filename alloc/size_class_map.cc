// alloc/size_class_map.cc — see size_class_map.h.
#include "alloc/size_class_map.h"

#include <algorithm>


namespace mova::alloc {

std::vector<std::uint32_t> CandidateClassSizes() {
  std::vector<std::uint32_t> sizes;
  for (std::uint32_t s = kMinSlotSize; s <= kPageSize; s += kMinSlotSize) sizes.push_back(s);
  for (std::uint32_t base = kPageSize; base < kMaxClassSize; base *= 2) {
    const std::uint32_t step = base / 16;
    for (std::uint32_t s = base + step; s <= base * 2; s += step) {
      sizes.push_back(static_cast<std::uint32_t>(std::min<std::size_t>(s, kMaxClassSize)));
    }
  }
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

SizeClassInfo GeometryFor(std::uint32_t slot_size, std::uint32_t pages) {
  const std::size_t bytes = std::size_t{pages} * kPageSize;
  // The most slots whose metadata and data fit: DataOffset(n) + n * slot_size <= bytes.
  std::size_t n = bytes / (slot_size + kMetaBytesPerSlot);
  while (n > 0 && DataOffset(n) + n * slot_size > bytes) --n;
  const auto reciprocal = static_cast<std::uint32_t>(((std::uint64_t{1} << 32) + slot_size - 1) / slot_size);
  return SizeClassInfo{slot_size, pages, static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(DataOffset(n)),
                       reciprocal};
}

std::uint32_t WastePermille(const SizeClassInfo& g) {
  const std::size_t bytes = g.block_bytes().value();
  return static_cast<std::uint32_t>((bytes - std::size_t{g.objects_per_block} * g.slot_size) * 1000 / bytes);
}

SizeClassInfo BestGeometry(std::uint32_t slot_size) {
  std::uint32_t least = 1000;
  for (std::uint32_t pages = 1; pages <= kMaxPagesPerBlock; ++pages) {
    const SizeClassInfo g = GeometryFor(slot_size, pages);
    if (g.objects_per_block > 0) least = std::min(least, WastePermille(g));
  }
  for (std::uint32_t pages = 1; pages <= kMaxPagesPerBlock; ++pages) {
    const SizeClassInfo g = GeometryFor(slot_size, pages);
    if (g.objects_per_block > 0 && WastePermille(g) <= least + kWasteSlackPermille) return g;
  }
  return {};  // unreachable: 16 pages hold at least one slot of kMaxClassSize
}

SizeClassMap::SizeClassMap() {
  const std::vector<std::uint32_t> sizes = CandidateClassSizes();
  // Walk from the largest down; a candidate whose geometry equals the next kept class's is merged into it.
  std::vector<SizeClassInfo> kept_desc;
  for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
    SizeClassInfo g = BestGeometry(*it);
    if (!kept_desc.empty() && kept_desc.back().pages_per_block == g.pages_per_block &&
        kept_desc.back().objects_per_block == g.objects_per_block) {
      continue;
    }
    kept_desc.push_back(g);
  }
  classes_.assign(kept_desc.rbegin(), kept_desc.rend());
  lookup_.assign(kMaxClassSize / kMinSlotSize + 1, 0);
  std::size_t c = 0;
  for (std::size_t q = 0; q < lookup_.size(); ++q) {
    const std::size_t size = q * kMinSlotSize;
    while (classes_[c].slot_size < size) ++c;
    lookup_[q] = static_cast<std::uint16_t>(c);
  }
}

}  // namespace mova::alloc
