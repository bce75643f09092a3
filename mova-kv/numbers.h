// mova-kv/numbers.h — integers in requests as Redis reads them (string2ll): the whole string, decimal, an
// optional '-', no spaces, no '+', at most 20 characters. Functions: ParseInt64.
#ifndef MOVA_KV_NUMBERS_H_
#define MOVA_KV_NUMBERS_H_

#include <charconv>
#include <cstdint>
#include <string_view>

namespace mova::kv {

inline bool ParseInt64(std::string_view s, std::int64_t* out) {
  if (s.empty() || s.size() > 20 || s.front() == '+') return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace mova::kv

#endif  // MOVA_KV_NUMBERS_H_
