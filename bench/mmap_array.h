// bench/mmap_array.h — a fixed-capacity array in its own mmap, for a benchmark's bookkeeping.
//
// Types: MmapArray<T>. The memory comes from mmap directly, never from the allocator under test, and is
// touched when created, so that a benchmark can take its RSS baseline after making its bookkeeping and count
// only what the allocator holds.
#ifndef MOVA_BENCH_MMAP_ARRAY_H_
#define MOVA_BENCH_MMAP_ARRAY_H_

#include <sys/mman.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace mova::bench {

template <typename T>
class MmapArray {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  explicit MmapArray(std::size_t capacity) : capacity_(capacity) {
    bytes_ = (capacity * sizeof(T) + 4095) & ~std::size_t{4095};
    if (bytes_ == 0) bytes_ = 4096;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap bookkeeping");
      std::abort();
    }
    data_ = static_cast<T*>(p);
  }
  ~MmapArray() { munmap(data_, bytes_); }
  MmapArray(const MmapArray&) = delete;
  MmapArray& operator=(const MmapArray&) = delete;

  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  void push_back(const T& v) {
    if (size_ == capacity_) {
      std::fprintf(stderr, "bookkeeping array full (%zu)\n", capacity_);
      std::abort();
    }
    data_[size_++] = v;
  }
  void pop_back() { --size_; }
  T& back() { return data_[size_ - 1]; }
  void resize(std::size_t n) { size_ = n; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace mova::bench

#endif  // MOVA_BENCH_MMAP_ARRAY_H_
