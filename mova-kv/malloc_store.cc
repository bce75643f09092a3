// mova-kv/malloc_store.cc — the ObjectStore on malloc: the control. A reference is the object's address.
// Whichever malloc the process has (glibc's, or jemalloc's / mimalloc's by LD_PRELOAD) serves it; the report
// counts what malloc handed out and reads the rest from the process (there is no allocator-neutral way to ask a
// malloc how many pages it holds): allocator_allocated sums malloc_usable_size (which glibc, jemalloc and mimalloc
// all export), allocator_active and allocator_resident are the process's anonymous RSS.
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "mova-kv/object_store.h"
#include "bench/rss.h"

namespace mova::kv {
namespace {

class MallocStore final : public ObjectStore {
 public:
  std::string_view name() const override { return "malloc"; }

  absl::StatusOr<ObjectRef> Put(std::string_view key, std::span<const std::string_view> value_parts) override {
    void* out = std::malloc(ObjectSize(key.size(), ValueSize(value_parts)));
    if (out == nullptr) return absl::ResourceExhaustedError("malloc: out of memory");
    WriteObject(static_cast<std::byte*>(out), key, value_parts);
    allocated_ += malloc_usable_size(out);  // the size class's bytes, as jemalloc's stats count them
    objects_ += 1;
    return reinterpret_cast<ObjectRef>(out);
  }

  absl::Status Read(const ObjectCell& cell, std::size_t size,
                    absl::FunctionRef<void(std::string_view, std::string_view)> fn) override {
    std::string_view key, value;
    if (absl::Status s = SplitObject(static_cast<const std::byte*>(Address(cell)), size, &key, &value); !s.ok()) {
      return s;
    }
    fn(key, value);
    return absl::OkStatus();
  }

  absl::Status Free(ObjectCell& cell, std::size_t) override {
    void* p = Address(cell);
    allocated_ -= malloc_usable_size(p);
    std::free(p);
    cell.store(Handle{});
    objects_ -= 1;
    return absl::OkStatus();
  }

  std::size_t AllocationSize(const ObjectCell& cell, std::size_t) const override {
    return malloc_usable_size(Address(cell));
  }

  AllocatorReport Report() override {
    AllocatorReport r;
    r.allocated = allocated_;
    const absl::StatusOr<std::uint64_t> rss = bench::AnonRssBytes();
    r.active = rss.ok() ? *rss : 0;
    r.resident = r.active;
    r.extra = {{"malloc_objects", objects_}};
    return r;
  }

  void Purge() override { malloc_trim(0); }
  bool CanDefragment() const override { return false; }
  DefragPass Defragment(std::chrono::microseconds) override { return {}; }

 private:
  static void* Address(const ObjectCell& cell) { return reinterpret_cast<void*>(cell.load().raw); }

  std::uint64_t allocated_ = 0;
  std::uint64_t objects_ = 0;
};

}  // namespace

std::unique_ptr<ObjectStore> MakeMallocStore() { return std::make_unique<MallocStore>(); }

}  // namespace mova::kv
