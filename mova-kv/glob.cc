// mova-kv/glob.cc — see glob.h.
#include "mova-kv/glob.h"

#include <cctype>

namespace mova::kv {
namespace {

char Fold(char c, bool nocase) { return nocase ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c; }

bool Match(std::string_view p, std::string_view s, bool nocase, int depth) {
  if (depth > 1000) return false;  // a pattern of many stars: give up rather than recurse without end
  while (!p.empty()) {
    switch (p.front()) {
      case '*': {
        while (p.size() > 1 && p[1] == '*') p.remove_prefix(1);
        if (p.size() == 1) return true;
        for (std::size_t k = 0; k <= s.size(); ++k) {
          if (Match(p.substr(1), s.substr(k), nocase, depth + 1)) return true;
        }
        return false;
      }
      case '?':
        if (s.empty()) return false;
        s.remove_prefix(1);
        p.remove_prefix(1);
        break;
      case '[': {
        if (s.empty()) return false;
        p.remove_prefix(1);
        const bool negate = !p.empty() && p.front() == '^';
        if (negate) p.remove_prefix(1);
        bool matched = false;
        while (!p.empty() && p.front() != ']') {
          if (p.front() == '\\' && p.size() >= 2) {
            p.remove_prefix(1);
            if (Fold(p.front(), nocase) == Fold(s.front(), nocase)) matched = true;
            p.remove_prefix(1);
          } else if (p.size() >= 3 && p[1] == '-' && p[2] != ']') {
            char lo = Fold(p[0], nocase), hi = Fold(p[2], nocase);
            if (lo > hi) std::swap(lo, hi);
            const char c = Fold(s.front(), nocase);
            if (c >= lo && c <= hi) matched = true;
            p.remove_prefix(3);
          } else {
            if (Fold(p.front(), nocase) == Fold(s.front(), nocase)) matched = true;
            p.remove_prefix(1);
          }
        }
        if (!p.empty()) p.remove_prefix(1);  // the ']'
        if (matched == negate) return false;
        s.remove_prefix(1);
        break;
      }
      case '\\':
        if (p.size() >= 2) p.remove_prefix(1);
        [[fallthrough]];
      default:
        if (s.empty() || Fold(p.front(), nocase) != Fold(s.front(), nocase)) return false;
        s.remove_prefix(1);
        p.remove_prefix(1);
        break;
    }
  }
  return s.empty();
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  return Match(pattern, text, nocase, 0);
}

}  // namespace mova::kv
