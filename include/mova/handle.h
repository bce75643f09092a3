// mova/handle.h — the handle a caller holds instead of a pointer.
//
// A Handle is 64 bits (bit 0 least significant):
//   bits  0..27  handle-table index
//   bits 28..43  generation (odd while the object lives)
//   bits 44..59  the requested size - 1 for objects in size classes (< 64 KiB); kHugeSize for huge objects
//   bits 60..63  the tag of the pool that issued it (1..15)
// The raw value 0 is never issued (kNullHandle). A freed handle's generation no longer matches its entry, so
// stale, double-freed and forged handles are detected; a handle from another pool is caught by the tag (and
// the generation). Carrying the size in the handle lets free, pin and size_of answer without reading the
// object's block: an object's size never changes, so the handle is as good a home for it as any.
#ifndef MOVA_HANDLE_H_
#define MOVA_HANDLE_H_

#include <compare>
#include <cstdint>

namespace mova {

struct Handle {
  static constexpr unsigned kIndexBits = 28;
  static constexpr std::uint16_t kHugeSize = 0xFFFF;  // size field of a huge object (its size is kept with it)

  std::uint64_t raw = 0;

  constexpr std::uint32_t index() const { return static_cast<std::uint32_t>(raw & ((1u << kIndexBits) - 1)); }
  constexpr std::uint16_t generation() const { return static_cast<std::uint16_t>(raw >> 28); }
  constexpr std::uint16_t size_field() const { return static_cast<std::uint16_t>(raw >> 44); }
  constexpr std::uint8_t pool_tag() const { return static_cast<std::uint8_t>(raw >> 60); }
  constexpr bool is_null() const { return raw == 0; }
  constexpr auto operator<=>(const Handle&) const = default;

  static constexpr Handle Make(std::uint8_t tag, std::uint16_t gen, std::uint16_t size_field, std::uint32_t index) {
    return Handle{(std::uint64_t{tag} << 60) | (std::uint64_t{size_field} << 44) | (std::uint64_t{gen} << 28) |
                  (index & ((1u << kIndexBits) - 1))};
  }
};

inline constexpr Handle kNullHandle{};

}  // namespace mova

#endif  // MOVA_HANDLE_H_
