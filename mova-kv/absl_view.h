// mova-kv/absl_view.h — Debian's Abseil is built with its own absl::string_view (not std::string_view), so
// std::string_view crosses into Abseil's string functions through Av. Functions: Av.
#ifndef MOVA_KV_ABSL_VIEW_H_
#define MOVA_KV_ABSL_VIEW_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace mova::kv {

inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace mova::kv

#endif  // MOVA_KV_ABSL_VIEW_H_
