// examples/basic.cc — allocate, write through a pin, compact, read back, look at the stats.
#include <cstdio>
#include <cstring>
#include <vector>

#include "mova/pool.h"

int main() {
  absl::StatusOr<std::unique_ptr<mova::Pool>> pool = mova::Pool::Create();
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.status().ToString().c_str());
    return 1;
  }
  std::vector<mova::Handle> handles;
  for (int i = 0; i < 100000; ++i) {
    mova::Handle h = (*pool)->allocate(16 + i % 500).value();
    mova::Pinned p = (*pool)->pin(h, mova::Access::kWrite).value();
    std::memset(p.mutable_data(), i & 0xFF, p.size());
    handles.push_back(h);
  }
  for (std::size_t i = 0; i < handles.size(); ++i) {
    if (i % 10 != 0) (void)(*pool)->free(handles[i]);  // keep one in ten
  }
  mova::CompactResult r = (*pool)->compact();
  std::printf("compaction moved %lu objects (%lu bytes), released %lu pages in %.3f ms\n",
              static_cast<unsigned long>(r.objects_moved), static_cast<unsigned long>(r.bytes_moved),
              static_cast<unsigned long>(r.pages_released), r.seconds * 1e3);
  for (std::size_t i = 0; i < handles.size(); i += 10) {
    mova::Pinned p = (*pool)->pin(handles[i], mova::Access::kRead).value();
    for (std::byte b : p.bytes()) {
      if (b != std::byte(i & 0xFF)) {
        std::fprintf(stderr, "object %zu changed\n", i);
        return 1;
      }
    }
  }
  std::fputs(mova::FormatStatsText((*pool)->stats()).c_str(), stdout);
  return 0;
}
