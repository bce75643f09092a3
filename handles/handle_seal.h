// handles/handle_seal.h — how a handle's 20-bit check is made from an entry's 16-bit generation, and opened.
//
// Types: none; functions over 20-bit values. Only handles/ calls them (the handle table seals what it issues;
// inline_read.h's OpenHandle opens what the table, or ReadGuard::read inline, is handed). Installed with
// inline_read.h (as mova/internal/handles/handle_seal.h), so standard headers only.
//
//   check = generation XOR Mask(page key, size field, index in page)
//   Mask(k, s, i) = Q20((k + s + i * kIndexMul) mod 2^20)
//   page key      = P20((pool salt + page * kPageMul + epoch * kEpochMul) mod 2^20)
// P20 and Q20 are permutations of 20-bit values (odd multiplies and xor-shifts, each invertible mod 2^20; Q20,
// on every handle operation, is one multiply and one shift; P20, once per page key, two of each), so:
//  - for one key and index, Mask is one-to-one in the size field: a handle whose size field was changed opens
//    to another generation, always (never to the live one);
//  - two pools whose salts differ by less than 2^20 have different keys for every (page, epoch); the salt is
//    a per-process random seed plus the pool's id times an odd constant, so pools created in one process
//    differ until 2^20 pools later;
//  - a page gets a new key (epoch + 1) when it is reopened after one of its entries reached its last
//    generation; a handle issued under the old key opens to an unrelated value.
// A generation is live when odd and below 2^16: a check that opens to anything else names no handle of this
// table. A forged check opens to the live generation of its entry with a chance of about 2^-20.
#ifndef MOVA_HANDLES_HANDLE_SEAL_H_
#define MOVA_HANDLES_HANDLE_SEAL_H_

#include <cstdint>

namespace mova::handles {

inline constexpr std::uint32_t kSealBits = 20;
inline constexpr std::uint32_t kSealMask = (1u << kSealBits) - 1;

// A permutation of [0, 2^20).
constexpr std::uint32_t Permute20(std::uint32_t x) {
  x &= kSealMask;
  x = (x * 0xE3A49u) & kSealMask;
  x ^= x >> 11;
  x = (x * 0x6B2F3u) & kSealMask;
  x ^= x >> 9;
  return x;
}

inline constexpr std::uint32_t kIndexMul = 0x9E3B5u;  // odd
inline constexpr std::uint32_t kPageMul = 0x5BD1Du;   // odd
inline constexpr std::uint32_t kEpochMul = 0x2C1B3u;  // odd
inline constexpr std::uint64_t kPoolMul = 0x7F4A7u;   // odd

// The key of table page `page` in its `epoch`, for a pool of salt `salt`.
constexpr std::uint32_t PageKey(std::uint64_t salt, std::uint32_t page, std::uint32_t epoch) {
  return Permute20(
      static_cast<std::uint32_t>(salt + std::uint64_t{page} * kPageMul + std::uint64_t{epoch} * kEpochMul));
}

// The cheaper permutation for the per-operation mask: nonlinear in the key, one-to-one in its argument.
constexpr std::uint32_t Mix20(std::uint32_t x) {
  x = (x * 0xE3A49u) & kSealMask;
  return x ^ (x >> 10);
}

constexpr std::uint32_t SealMask(std::uint32_t key, std::uint16_t size_field, std::uint32_t index_in_page) {
  return Mix20(key + size_field + index_in_page * kIndexMul);
}

// Sealing and opening are the same XOR.
constexpr std::uint32_t Seal(std::uint16_t gen, std::uint32_t key, std::uint16_t size_field,
                             std::uint32_t index_in_page) {
  return (gen ^ SealMask(key, size_field, index_in_page)) & kSealMask;
}
constexpr std::uint32_t Open(std::uint32_t check, std::uint32_t key, std::uint16_t size_field,
                             std::uint32_t index_in_page) {
  return (check ^ SealMask(key, size_field, index_in_page)) & kSealMask;
}

// True for an opened check that can be a live generation.
constexpr bool OpensToLiveGen(std::uint32_t opened) { return opened <= 0xFFFF && (opened & 1) != 0; }

}  // namespace mova::handles

#endif  // MOVA_HANDLES_HANDLE_SEAL_H_
