// mova-kv/reply.h — RESP2 replies, appended to a connection's output buffer.
//
// Types: Reply. It only encodes: a command writes exactly one reply (an array counts as one, with its
// elements after its header); the connection sends the buffer when the requests it has read are answered.
#ifndef MOVA_KV_REPLY_H_
#define MOVA_KV_REPLY_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace mova::kv {

class Reply {
 public:
  explicit Reply(std::string* out) : out_(out) {}

  void Simple(std::string_view s) {
    out_->push_back('+');
    out_->append(s);
    out_->append("\r\n");
  }
  void Ok() { out_->append("+OK\r\n"); }
  // `message` is the whole error line after '-': "ERR ...", "OOM ...", "WRONGTYPE ...". CR and LF in it
  // would break the protocol, so they become spaces (as Redis's addReplyError does).
  void Error(std::string_view message);
  void Integer(std::int64_t v) { absl::StrAppend(out_, ":", v, "\r\n"); }
  void Bulk(std::string_view s) {
    absl::StrAppend(out_, "$", s.size(), "\r\n");
    out_->append(s);
    out_->append("\r\n");
  }
  void Null() { out_->append("$-1\r\n"); }
  void NullArray() { out_->append("*-1\r\n"); }
  void Array(std::size_t n) { absl::StrAppend(out_, "*", n, "\r\n"); }
  // A bulk reply whose bytes the caller writes into the returned span of `size` bytes.
  char* BulkInPlace(std::size_t size);

  std::string& buffer() { return *out_; }

 private:
  std::string* out_;
};

}  // namespace mova::kv

#endif  // MOVA_KV_REPLY_H_
