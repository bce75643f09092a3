// stress/content.h — object contents that are a function of (seed, offset), so any checker can tell whether
// every byte of an object survived its moves. Used by the tests, the fuzzer and the soak.
#ifndef MOVA_STRESS_CONTENT_H_
#define MOVA_STRESS_CONTENT_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace mova::stress {

inline std::uint64_t Mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline void Fill(std::span<std::byte> bytes, std::uint64_t seed) {
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte(Mix(seed + i / 8) >> (8 * (i % 8)));
}

// True when every byte is as Fill wrote it.
inline bool Matches(std::span<const std::byte> bytes, std::uint64_t seed) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != std::byte(Mix(seed + i / 8) >> (8 * (i % 8)))) return false;
  }
  return true;
}

}  // namespace mova::stress

#endif  // MOVA_STRESS_CONTENT_H_
