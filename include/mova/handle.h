// mova/handle.h — the handle a caller holds instead of a pointer.
//
// A Handle is 64 bits: table index (bits 0..31), generation (bits 32..47, odd while the object lives),
// and the tag of the pool that issued it (bits 48..63). The raw value 0 is never issued (kNullHandle).
// A freed handle's generation no longer matches its entry, so stale, double-freed and forged handles are
// detected; a handle from another pool is caught by the tag.
#ifndef MOVA_HANDLE_H_
#define MOVA_HANDLE_H_

#include <compare>
#include <cstdint>

namespace mova {

struct Handle {
  std::uint64_t raw = 0;

  constexpr std::uint32_t index() const { return static_cast<std::uint32_t>(raw); }
  constexpr std::uint16_t generation() const { return static_cast<std::uint16_t>(raw >> 32); }
  constexpr std::uint16_t pool_tag() const { return static_cast<std::uint16_t>(raw >> 48); }
  constexpr bool is_null() const { return raw == 0; }
  constexpr auto operator<=>(const Handle&) const = default;

  static constexpr Handle Make(std::uint16_t tag, std::uint16_t gen, std::uint32_t index) {
    return Handle{(std::uint64_t{tag} << 48) | (std::uint64_t{gen} << 32) | index};
  }
};

inline constexpr Handle kNullHandle{};

}  // namespace mova

#endif  // MOVA_HANDLE_H_
