// mova-kv/glob.h — glob-style matching as Redis's stringmatchlen (CONFIG GET patterns): `*`, `?`, `[...]` with
// ranges and `^` negation, and `\` escapes. Functions: GlobMatch.
#ifndef MOVA_KV_GLOB_H_
#define MOVA_KV_GLOB_H_

#include <string_view>

namespace mova::kv {

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace mova::kv

#endif  // MOVA_KV_GLOB_H_
