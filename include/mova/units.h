// mova/units.h — strong unit and index types.
//
// Types: Bytes (a byte count), Pages (a count of 4 KiB pages), and the index type ClassId.
// A page count and a byte count cannot be mixed without saying so (ToBytes / PagesCeil), and indices of
// different tables cannot be passed for one another. All are trivially copyable wrappers of one integer.
#ifndef MOVA_UNITS_H_
#define MOVA_UNITS_H_

#include <compare>
#include <cstddef>
#include <cstdint>

namespace mova {

inline constexpr std::size_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

// A wrapper of one unsigned integer with arithmetic only between values of the same unit.
template <typename Tag, typename Rep>
class Quantity {
 public:
  constexpr Quantity() = default;
  constexpr explicit Quantity(Rep v) : v_(v) {}
  constexpr Rep value() const { return v_; }
  constexpr auto operator<=>(const Quantity&) const = default;
  constexpr Quantity operator+(Quantity o) const { return Quantity(v_ + o.v_); }
  constexpr Quantity operator-(Quantity o) const { return Quantity(v_ - o.v_); }
  constexpr Quantity& operator+=(Quantity o) { v_ += o.v_; return *this; }
  constexpr Quantity& operator-=(Quantity o) { v_ -= o.v_; return *this; }
  constexpr Quantity operator*(Rep k) const { return Quantity(v_ * k); }

 private:
  Rep v_ = 0;
};

struct BytesTag {};
struct PagesTag {};
using Bytes = Quantity<BytesTag, std::size_t>;
using Pages = Quantity<PagesTag, std::size_t>;

constexpr Bytes ToBytes(Pages p) { return Bytes(p.value() << kPageShift); }
// Smallest page count that holds `b`.
constexpr Pages PagesCeil(Bytes b) { return Pages((b.value() + kPageSize - 1) >> kPageShift); }

// An index into one table. Distinct tags make distinct, non-convertible types.
template <typename Tag>
class Index {
 public:
  constexpr Index() = default;
  constexpr explicit Index(std::uint32_t v) : v_(v) {}
  constexpr std::uint32_t value() const { return v_; }
  constexpr auto operator<=>(const Index&) const = default;

 private:
  std::uint32_t v_ = 0;
};

struct ClassIdTag {};
using ClassId = Index<ClassIdTag>;  // a size class

}  // namespace mova

#endif  // MOVA_UNITS_H_
