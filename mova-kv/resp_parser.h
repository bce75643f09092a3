// mova-kv/resp_parser.h — requests off a connection's bytes, as redis-server reads them: multibulk
// (`*<n>\r\n` then n times `$<len>\r\n<bytes>\r\n`) and inline commands (one line, words split with quotes and
// escapes as redis-cli writes them).
//
// Types: ParseLimits, ParseStatus, RequestParser.
// Invariants: Parse consumes bytes as it goes — a multibulk request's header and its completed arguments are
// taken even when the request is not complete yet, so a large request that arrives in pieces is scanned once;
// a bulk argument is taken only when all its bytes and the CRLF after them are there. After kError the parser
// is spent: the connection answers the error and closes, as Redis does.
#ifndef MOVA_KV_RESP_PARSER_H_
#define MOVA_KV_RESP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mova::kv {

struct ParseLimits {
  std::size_t max_bulk_len = std::size_t{512} << 20;  // proto-max-bulk-len
  std::size_t max_inline_len = std::size_t{64} << 10; // PROTO_INLINE_MAX_SIZE: inline requests and length lines
  std::int64_t max_multibulk_len = 2147483647;         // INT_MAX, as Redis 7.0
};

enum class ParseStatus {
  kNeedMore,  // no whole request in the bytes given (some may have been consumed)
  kRequest,   // args() holds one request
  kError,     // error() says what; the connection must be closed after answering it
};

class RequestParser {
 public:
  explicit RequestParser(ParseLimits limits = {}) : limits_(limits) {}

  // Parses from `in`, which starts where the last call's consumption ended. `*consumed` is how many bytes of
  // `in` were taken (on every status). An empty request (a blank inline line, `*0`) is skipped.
  ParseStatus Parse(std::string_view in, std::size_t* consumed);

  // The request of the last kRequest; the next Parse clears it.
  std::vector<std::string>& args() { return args_; }
  const std::string& error() const { return error_; }  // "Protocol error: ..."

  void set_limits(const ParseLimits& limits) { limits_ = limits; }

  // Splits one inline line into words as sdssplitargs does; false on unbalanced quotes.
  static bool SplitInline(std::string_view line, std::vector<std::string>* out);

 private:
  ParseStatus Fail(std::string message);
  ParseStatus ParseInline(std::string_view in, std::size_t* consumed);
  ParseStatus ParseMultibulk(std::string_view in, std::size_t* consumed);

  ParseLimits limits_;
  std::vector<std::string> args_;
  std::string error_;
  std::int64_t multibulk_left_ = 0;  // arguments still to read of the multibulk request under way (0: none)
  std::int64_t bulk_len_ = -1;       // the length line of the argument under way was read: its length
};

}  // namespace mova::kv

#endif  // MOVA_KV_RESP_PARSER_H_
