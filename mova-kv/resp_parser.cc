// mova-kv/resp_parser.cc — see resp_parser.h. The error texts are Redis's own (networking.c), so that clients
// and tests written against redis-server read the same replies here.
#include "mova-kv/resp_parser.h"
#include "mova-kv/numbers.h"

#include <cctype>

namespace mova::kv {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

ParseStatus RequestParser::Fail(std::string message) {
  error_ = "Protocol error: " + std::move(message);
  return ParseStatus::kError;
}

ParseStatus RequestParser::Parse(std::string_view in, std::size_t* consumed) {
  *consumed = 0;
  if (!error_.empty()) return ParseStatus::kError;
  for (;;) {
    if (multibulk_left_ == 0) {
      args_.clear();
      if (*consumed == in.size()) return ParseStatus::kNeedMore;
      std::size_t used = 0;
      const ParseStatus s = in[*consumed] == '*' ? ParseMultibulk(in.substr(*consumed), &used)
                                                 : ParseInline(in.substr(*consumed), &used);
      *consumed += used;
      if (s == ParseStatus::kRequest && args_.empty()) continue;  // an empty request: nothing to run
      return s;
    }
    std::size_t used = 0;
    const ParseStatus s = ParseMultibulk(in.substr(*consumed), &used);
    *consumed += used;
    return s;
  }
}

ParseStatus RequestParser::ParseInline(std::string_view in, std::size_t* consumed) {
  const std::size_t nl = in.find('\n');
  if (nl == std::string_view::npos) {
    if (in.size() > limits_.max_inline_len) return Fail("too big inline request");
    return ParseStatus::kNeedMore;
  }
  std::size_t len = nl;
  if (len > 0 && in[len - 1] == '\r') --len;
  if (!SplitInline(in.substr(0, len), &args_)) return Fail("unbalanced quotes in request");
  *consumed = nl + 1;
  return ParseStatus::kRequest;
}

ParseStatus RequestParser::ParseMultibulk(std::string_view in, std::size_t* consumed) {
  std::size_t pos = 0;
  // Reads one length line at `pos` (after its type byte): kRequest with *value set, or kNeedMore / kError.
  const auto length_line = [&](const char* too_big, std::int64_t* value, bool* ok) -> ParseStatus {
    const std::size_t cr = in.find('\r', pos);
    if (cr == std::string_view::npos) {
      if (in.size() - pos > limits_.max_inline_len) return Fail(too_big);
      return ParseStatus::kNeedMore;
    }
    if (cr + 1 >= in.size()) return ParseStatus::kNeedMore;  // the '\n' has not come yet
    *ok = ParseInt64(in.substr(pos + 1, cr - pos - 1), value);
    pos = cr + 2;
    return ParseStatus::kRequest;
  };
  if (multibulk_left_ == 0) {
    std::int64_t n = 0;
    bool ok = false;
    if (const ParseStatus s = length_line("too big mbulk count string", &n, &ok); s != ParseStatus::kRequest) {
      return s;
    }
    if (!ok || n > limits_.max_multibulk_len) return Fail("invalid multibulk length");
    *consumed = pos;
    if (n <= 0) return ParseStatus::kRequest;  // empty: skipped by the caller
    multibulk_left_ = n;
    bulk_len_ = -1;
    args_.reserve(static_cast<std::size_t>(std::min<std::int64_t>(n, 1024)));
  }
  while (multibulk_left_ > 0) {
    if (bulk_len_ < 0) {
      if (pos < in.size() && in[pos] != '$' && in.find('\r', pos) != std::string_view::npos) {
        return Fail(std::string("expected '$', got '") + in[pos] + "'");
      }
      std::int64_t len = 0;
      bool ok = false;
      if (const ParseStatus s = length_line("too big bulk count string", &len, &ok); s != ParseStatus::kRequest) {
        return s;
      }
      if (!ok || len < 0 || static_cast<std::uint64_t>(len) > limits_.max_bulk_len) {
        return Fail("invalid bulk length");
      }
      bulk_len_ = len;
      *consumed = pos;
    }
    const std::size_t need = static_cast<std::size_t>(bulk_len_) + 2;
    if (in.size() - pos < need) return ParseStatus::kNeedMore;
    args_.emplace_back(in.substr(pos, static_cast<std::size_t>(bulk_len_)));
    pos += need;  // the CRLF after the bytes is skipped unread, as Redis does
    *consumed = pos;
    bulk_len_ = -1;
    --multibulk_left_;
  }
  return ParseStatus::kRequest;
}

bool RequestParser::SplitInline(std::string_view line, std::vector<std::string>* out) {
  out->clear();
  std::size_t i = 0;
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  for (;;) {
    while (i < line.size() && space(line[i])) ++i;
    if (i == line.size()) return true;
    std::string word;
    bool in_double = false, in_single = false, done = false;
    while (!done) {
      if (in_double) {
        if (i == line.size()) return false;  // unterminated
        if (line[i] == '\\' && i + 3 < line.size() && line[i + 1] == 'x' && HexValue(line[i + 2]) >= 0 &&
            HexValue(line[i + 3]) >= 0) {
          word.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 3;
        } else if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          switch (line[i]) {
            case 'n': word.push_back('\n'); break;
            case 'r': word.push_back('\r'); break;
            case 't': word.push_back('\t'); break;
            case 'b': word.push_back('\b'); break;
            case 'a': word.push_back('\a'); break;
            default: word.push_back(line[i]); break;
          }
        } else if (line[i] == '"') {
          // The closing quote must be followed by a space or the end.
          if (i + 1 < line.size() && !space(line[i + 1])) return false;
          done = true;
        } else {
          word.push_back(line[i]);
        }
      } else if (in_single) {
        if (i == line.size()) return false;
        if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
          ++i;
          word.push_back('\'');
        } else if (line[i] == '\'') {
          if (i + 1 < line.size() && !space(line[i + 1])) return false;
          done = true;
        } else {
          word.push_back(line[i]);
        }
      } else {
        if (i == line.size() || space(line[i])) {
          done = true;
          if (i == line.size()) break;
        } else if (line[i] == '"') {
          in_double = true;
        } else if (line[i] == '\'') {
          in_single = true;
        } else {
          word.push_back(line[i]);
        }
      }
      if (i < line.size()) ++i;
    }
    out->push_back(std::move(word));
  }
}

}  // namespace mova::kv
