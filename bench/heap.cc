// bench/heap.cc — see heap.h.
#include "bench/heap.h"

#include <dlfcn.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/counting_os.h"
#include "mova/pool.h"

namespace mova::bench {
namespace {

using MallctlFn = int (*)(const char*, void*, std::size_t*, void*, std::size_t);
using MiCollectFn = void (*)(bool);
using ReleaseFn = void (*)();

void* Sym(const char* name) { return dlsym(RTLD_DEFAULT, name); }

class MallocHeap final : public Heap {
 public:
  explicit MallocHeap(std::string kind) : kind_(std::move(kind)) {}
  std::string name() const override { return kind_; }
  std::uint64_t Allocate(std::size_t size) override {
    void* p = std::malloc(size);
    if (p == nullptr) {
      std::fprintf(stderr, "%s: malloc(%zu) failed\n", kind_.c_str(), size);
      std::abort();
    }
    std::memset(p, static_cast<int>(size), size);
    return reinterpret_cast<std::uint64_t>(p);
  }
  void Free(std::uint64_t token) override { std::free(reinterpret_cast<void*>(token)); }
  std::uint8_t Touch(std::uint64_t token) override { return *reinterpret_cast<volatile std::uint8_t*>(token); }
  void BestEffort() override {
    if (kind_ == "jemalloc") {
      auto mallctl = reinterpret_cast<MallctlFn>(Sym("mallctl"));
      mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096 = MALLCTL_ARENAS_ALL
    } else if (kind_ == "mimalloc") {
      reinterpret_cast<MiCollectFn>(Sym("mi_collect"))(true);
    } else if (kind_ == "tcmalloc") {
      reinterpret_cast<ReleaseFn>(Sym("MallocExtension_ReleaseFreeMemory"))();
    } else {
      malloc_trim(0);
    }
  }

 private:
  std::string kind_;
};

// The pool's owner of a workload's handles: the cells of objects[0, size()).
class ObjectsOwner final : public HandleOwner {
 public:
  explicit ObjectsOwner(MmapArray<Object>& objects) : objects_(objects) {}
  void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) override {
    VisitInBatches(objects_, [](Object& o) { return &o.cell; }, visit);
  }

 private:
  MmapArray<Object>& objects_;
};

class MovaHeap final : public Heap {
 public:
  MovaHeap(std::string name, PoolOptions options, std::uint64_t compact_every_bytes, bool owned = false)
      : name_(std::move(name)), pool_(Create(options, os_)), compact_every_(compact_every_bytes), owned_(owned) {}
  ~MovaHeap() override {
    if (owner_ != nullptr) pool_->unregister_owner(*owner_);
  }
  void Own(MmapArray<Object>& objects) override {
    if (!owned_ || owner_ != nullptr) return;
    owner_ = std::make_unique<ObjectsOwner>(objects);
    pool_->register_owner(*owner_);
  }
  std::string name() const override { return name_; }
  std::uint64_t Allocate(std::size_t size) override {
    if (compact_every_ != 0 && (since_compact_ += size) >= compact_every_) {
      since_compact_ = 0;
      pool_->compact();  // what a service's background compactor would do
    }
    absl::StatusOr<Handle> h = pool_->allocate(size);
    if (!h.ok()) {
      std::fprintf(stderr, "mova: %s\n", h.status().ToString().c_str());
      std::abort();
    }
    // pin_owned: this thread owns every object of the workload, so the pin lives in its own access record
    // (no atomic read-modify-write), as a single-threaded service would pin.
    Pinned p = pool_->pin_owned(*h, Access::kWrite).value();
    std::memset(p.mutable_data(), static_cast<int>(size), size);
    return h->raw;
  }
  void Free(std::uint64_t token) override {
    absl::Status s = pool_->free(Handle{token});
    if (!s.ok()) {
      std::fprintf(stderr, "mova: %s\n", s.ToString().c_str());
      std::abort();
    }
  }
  std::uint8_t Touch(std::uint64_t token) override {
    Pinned p = pool_->pin_owned(Handle{token}, Access::kRead).value();
    return static_cast<std::uint8_t>(p.data()[0]);
  }
  void BestEffort() override { pool_->compact(); }
  std::int64_t SystemCalls() const override { return static_cast<std::int64_t>(os_.calls()); }

 private:
  static std::unique_ptr<Pool> Create(PoolOptions options, CountingOs& os) {
    options.os = &os;
    return Pool::Create(options).value();
  }
  CountingOs os_;  // before pool_: it outlives the pool
  const std::string name_;
  std::unique_ptr<Pool> pool_;
  const std::uint64_t compact_every_;
  std::uint64_t since_compact_ = 0;
  const bool owned_;
  std::unique_ptr<ObjectsOwner> owner_;
};

}  // namespace

std::string DetectMalloc() {
  if (Sym("mallctl") != nullptr) return "jemalloc";
  if (Sym("mi_collect") != nullptr) return "mimalloc";
  if (Sym("MallocExtension_ReleaseFreeMemory") != nullptr) return "tcmalloc";
  return "glibc";
}

std::unique_ptr<Heap> MakeMallocHeap(const std::string& expected) {
  const std::string found = DetectMalloc();
  if (found != expected) {
    std::fprintf(stderr, "this process runs on %s's malloc, not %s\n", found.c_str(), expected.c_str());
    std::abort();
  }
  return std::make_unique<MallocHeap>(found);
}

namespace {
PoolOptions WithDecay(std::int64_t decay_ms) {
  PoolOptions options;
  if (decay_ms >= 0) options.decay = std::chrono::milliseconds(decay_ms);
  return options;
}
}  // namespace

std::unique_ptr<Heap> MakeMovaHeap(std::uint64_t compact_every_bytes, std::int64_t decay_ms, bool owned) {
  std::string name = compact_every_bytes == 0 ? "mova" : "mova-periodic";
  if (owned) name += "-owned";
  return std::make_unique<MovaHeap>(name, WithDecay(decay_ms), compact_every_bytes, owned);
}

std::unique_ptr<Heap> MakeMovaBackgroundHeap(std::chrono::milliseconds interval, std::int64_t decay_ms) {
  PoolOptions options = WithDecay(decay_ms);
  options.background_interval = interval;
  return std::make_unique<MovaHeap>("mova-background", options, 0);
}

}  // namespace mova::bench
