// mova/handle.h — the handle a caller holds instead of a pointer.
//
// A Handle is 64 bits (bit 0 least significant):
//   bits  0..27  handle-table index (index 0 is never issued)
//   bits 28..47  check: the object's generation, sealed with a key of the pool's own and with the index and the
//                size field (handles/handle_seal.h says how; callers treat it as opaque)
//   bits 48..63  the requested size - 1 for objects in size classes (< 64 KiB); kHugeSize for huge objects
// The raw value 0 is never issued (kNullHandle). What the pool detects with these bits — stale, double-freed,
// forged and other pools' handles, and a changed size field — and what chance of a slip remains is said in
// mova/pool.h. Carrying the size in the handle lets free, pin and size_of answer without reading the object's
// block: an object's size never changes, so the handle is as good a home for it as any.
#ifndef MOVA_HANDLE_H_
#define MOVA_HANDLE_H_

#include <compare>
#include <cstdint>

namespace mova {

struct Handle {
  static constexpr unsigned kIndexBits = 28;
  static constexpr unsigned kCheckBits = 20;
  static constexpr unsigned kCheckShift = kIndexBits;
  static constexpr unsigned kSizeShift = kIndexBits + kCheckBits;
  static constexpr std::uint32_t kIndexMask = (1u << kIndexBits) - 1;
  static constexpr std::uint32_t kCheckMask = (1u << kCheckBits) - 1;
  static constexpr std::uint16_t kHugeSize = 0xFFFF;  // size field of a huge object (its size is kept with it)

  std::uint64_t raw = 0;

  constexpr std::uint32_t index() const { return static_cast<std::uint32_t>(raw & kIndexMask); }
  constexpr std::uint32_t check() const { return static_cast<std::uint32_t>(raw >> kCheckShift) & kCheckMask; }
  constexpr std::uint16_t size_field() const { return static_cast<std::uint16_t>(raw >> kSizeShift); }
  constexpr bool is_null() const { return raw == 0; }
  constexpr auto operator<=>(const Handle&) const = default;

  static constexpr Handle Make(std::uint32_t index, std::uint32_t check, std::uint16_t size_field) {
    return Handle{(std::uint64_t{size_field} << kSizeShift) | (std::uint64_t{check & kCheckMask} << kCheckShift) |
                  (index & kIndexMask)};
  }
};

inline constexpr Handle kNullHandle{};

}  // namespace mova

#endif  // MOVA_HANDLE_H_
