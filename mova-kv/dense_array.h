// mova-kv/dense_array.h — a growable array of trivially copyable elements in one reserved mapping of its own.
//
// Types: DenseArray<T>.
// The index's arrays (keyspace.h) live here rather than in std::vector: growing never copies (the mapping is
// reserved once for the most elements it may hold, MAP_NORESERVE, and pages are touched as elements come), so
// there is no 1.5× peak while a vector reallocates; and when the array shrinks, the pages past its end go
// back to the kernel (one madvise), so the index's resident memory follows the data set down. resident_bytes()
// is what used_memory counts for it.
// Invariants: touched_ (a page multiple) covers every element ever written since the last release; elements
// past size() are unspecified.
#ifndef MOVA_KV_DENSE_ARRAY_H_
#define MOVA_KV_DENSE_ARRAY_H_

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace mova::kv {

template <typename T>
class DenseArray {
  static_assert(std::is_trivially_copyable_v<T>);
  static constexpr std::size_t kPage = 4096;
  static constexpr std::size_t kMinRelease = std::size_t{1} << 20;  // release tails of a MiB or more

 public:
  // Reserves address space for `max_elements`; if the kernel refuses, the array holds nothing (push_back fails).
  explicit DenseArray(std::size_t max_elements) {
    const std::size_t bytes = RoundUp(std::max<std::size_t>(max_elements, 1) * sizeof(T));
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      data_ = static_cast<T*>(p);
      reserved_ = bytes;
      max_ = max_elements;
    }
  }
  ~DenseArray() {
    if (data_ != nullptr) munmap(data_, reserved_);
  }
  DenseArray(const DenseArray&) = delete;
  DenseArray& operator=(const DenseArray&) = delete;

  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::size_t max_size() const { return max_; }
  T& back() { return data_[size_ - 1]; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

  // False when the array is full (or could not be reserved).
  [[nodiscard]] bool push_back(const T& v) {
    if (size_ >= max_) return false;
    data_[size_++] = v;
    touched_ = std::max(touched_, RoundUp(size_ * sizeof(T)));
    return true;
  }
  void pop_back() { --size_; }

  // Gives back the pages past the end when they are at least a MiB and a quarter of what is in use.
  void ReleaseTail() {
    const std::size_t used = RoundUp(size_ * sizeof(T));
    if (touched_ - used < std::max(kMinRelease, used / 4)) return;
    madvise(reinterpret_cast<char*>(data_) + used, touched_ - used, MADV_DONTNEED);
    touched_ = used;
  }
  // Empties the array and gives back all its pages.
  void Clear() {
    size_ = 0;
    if (touched_ > 0) madvise(data_, touched_, MADV_DONTNEED);
    touched_ = 0;
  }
  // Bytes of pages the array may hold resident: what it costs.
  std::size_t resident_bytes() const { return touched_; }

 private:
  static std::size_t RoundUp(std::size_t n) { return (n + kPage - 1) & ~(kPage - 1); }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t max_ = 0;
  std::size_t reserved_ = 0;
  std::size_t touched_ = 0;
};

}  // namespace mova::kv

#endif  // MOVA_KV_DENSE_ARRAY_H_
