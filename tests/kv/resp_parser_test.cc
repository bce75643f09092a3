// Tests of mova-kv's request parser: whole and split requests, pipelines, inline commands, and each protocol
// error with Redis's text.
#include "mova-kv/resp_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mova::kv {
namespace {

using Args = std::vector<std::string>;

// Feeds `input` in pieces of `step` bytes, the way a socket may deliver it, and collects every request.
std::vector<Args> ParseAll(const std::string& input, std::size_t step, ParseStatus* last = nullptr,
                           std::string* error = nullptr, ParseLimits limits = {}) {
  RequestParser p(limits);
  std::vector<Args> out;
  std::string buffer;
  ParseStatus s = ParseStatus::kNeedMore;
  for (std::size_t fed = 0; fed < input.size();) {
    const std::size_t n = std::min(step, input.size() - fed);
    buffer.append(input, fed, n);
    fed += n;
    for (;;) {
      std::size_t used = 0;
      s = p.Parse(buffer, &used);
      buffer.erase(0, used);
      if (s != ParseStatus::kRequest) break;
      out.push_back(p.args());
    }
    if (s == ParseStatus::kError) break;
  }
  if (last != nullptr) *last = s;
  if (error != nullptr) *error = p.error();
  return out;
}

TEST(RespParser, AMultibulkRequestParsesWholeAndSplitAtEveryByte) {
  const std::string req = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$12\r\nhello\r\nworld\r\n";
  for (std::size_t step = 1; step <= req.size(); ++step) {
    ParseStatus last;
    const std::vector<Args> got = ParseAll(req, step, &last);
    ASSERT_EQ(got.size(), 1u) << "step " << step;
    EXPECT_EQ(got[0], (Args{"SET", "key", "hello\r\nworld"})) << "step " << step;
    EXPECT_EQ(last, ParseStatus::kNeedMore);
  }
}

TEST(RespParser, APipelineGivesEveryRequestInOrderAndEmptyRequestsAreSkipped) {
  std::string input;
  for (int i = 0; i < 100; ++i) input += "*2\r\n$3\r\nGET\r\n$" + std::to_string(std::to_string(i).size()) + "\r\n" + std::to_string(i) + "\r\n";
  input += "*0\r\n*-1\r\n\r\nPING\r\n";
  const std::vector<Args> got = ParseAll(input, 7);
  ASSERT_EQ(got.size(), 101u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], (Args{"GET", std::to_string(i)}));
  EXPECT_EQ(got[100], (Args{"PING"}));
}

TEST(RespParser, InlineCommandsSplitWordsWithQuotesAndEscapes) {
  const std::vector<Args> got = ParseAll("set k \"a b\\x41\\n\" 'it\\'s'\r\n  get   k\n", 3);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (Args{"set", "k", "a bA\n", "it's"}));
  EXPECT_EQ(got[1], (Args{"get", "k"}));
}

struct ErrorCase {
  const char* input;
  const char* error;
};

TEST(RespParser, EachProtocolErrorGivesRedisText) {
  ParseLimits limits;
  limits.max_bulk_len = 1024;
  const std::string big_line(70 * 1024, 'a');
  const ErrorCase cases[] = {
      {"*x\r\n", "Protocol error: invalid multibulk length"},
      {"*3000000000\r\n", "Protocol error: invalid multibulk length"},
      {"*1\r\n+GET\r\n", "Protocol error: expected '$', got '+'"},
      {"*1\r\n$-3\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$1025\r\n", "Protocol error: invalid bulk length"},
      {"set \"abc\r\n", "Protocol error: unbalanced quotes in request"},
      {"set \"abc\"x\r\n", "Protocol error: unbalanced quotes in request"},
  };
  for (const ErrorCase& c : cases) {
    ParseStatus last;
    std::string error;
    ParseAll(c.input, 1, &last, &error, limits);
    EXPECT_EQ(last, ParseStatus::kError) << c.input;
    EXPECT_EQ(error, c.error) << c.input;
  }
  ParseStatus last;
  std::string error;
  ParseAll(big_line, 4096, &last, &error, limits);
  EXPECT_EQ(error, "Protocol error: too big inline request");
  ParseAll("*" + big_line, 4096, &last, &error, limits);
  EXPECT_EQ(error, "Protocol error: too big mbulk count string");
  ParseAll("*1\r\n$" + big_line, 4096, &last, &error, limits);
  EXPECT_EQ(error, "Protocol error: too big bulk count string");
}

TEST(RespParser, ALongValueArrivingInPiecesIsTakenOnceWhole) {
  const std::string value(1 << 20, 'v');
  const std::string req = "*2\r\n$4\r\nECHO\r\n$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
  const std::vector<Args> got = ParseAll(req, 4096);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0][1], value);
}

}  // namespace
}  // namespace mova::kv
