// alloc/cache_affinities.h — which thread caches are alive, by the small number (affinity) each writes on the
// blocks it takes slots from (Block::affinity).
//
// Types: CacheAffinities. A thread cache holds one affinity in 1..kCount - 1 from its making to its retirement;
// kNone (0) names no cache: caches past the first kCount - 1 alive at once get it and take slots from any block.
// Invariants: a held affinity belongs to one cache; Acquire hands out the lowest free one, so a cache made after
// another retired adopts the blocks that cache took slots from. Live() is read without a lock: it is a hint for
// choosing blocks (SizeClass::PickBlock), never a condition of correctness — a stale answer only makes a refill
// take a block it would have left to another thread, or leave one it could have taken.
#ifndef MOVA_ALLOC_CACHE_AFFINITIES_H_
#define MOVA_ALLOC_CACHE_AFFINITIES_H_

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace mova::alloc {

class CacheAffinities {
 public:
  static constexpr std::uint16_t kNone = 0;
  static constexpr std::size_t kCount = 1024;

  CacheAffinities() { words_[0].store(1, std::memory_order_relaxed); }  // kNone is never handed out
  CacheAffinities(const CacheAffinities&) = delete;
  CacheAffinities& operator=(const CacheAffinities&) = delete;

  // The lowest affinity no live cache holds, now held; kNone when every one is.
  std::uint16_t Acquire() {
    for (std::size_t w = 0; w < kWords; ++w) {
      std::uint64_t bits = words_[w].load(std::memory_order_relaxed);
      while (bits != ~std::uint64_t{0}) {
        const int bit = std::countr_one(bits);
        if (words_[w].compare_exchange_weak(bits, bits | (std::uint64_t{1} << bit), std::memory_order_relaxed)) {
          return static_cast<std::uint16_t>(w * 64 + static_cast<std::size_t>(bit));
        }
      }
    }
    return kNone;
  }
  // The cache holding `a` retires (kNone: nothing to do).
  void Release(std::uint16_t a) {
    if (a == kNone) return;
    words_[a / 64].fetch_and(~(std::uint64_t{1} << (a % 64)), std::memory_order_relaxed);
  }
  // True when a live cache holds `a` (false for kNone and for anything out of range).
  bool Live(std::uint16_t a) const {
    return a != kNone && a < kCount && ((words_[a / 64].load(std::memory_order_relaxed) >> (a % 64)) & 1) != 0;
  }

 private:
  static constexpr std::size_t kWords = kCount / 64;
  std::array<std::atomic<std::uint64_t>, kWords> words_{};  // bit a of the whole: affinity a is held
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_CACHE_AFFINITIES_H_
