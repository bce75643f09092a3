// mova-kv/reply.cc — see reply.h.
#include "mova-kv/absl_view.h"
#include "mova-kv/reply.h"

namespace mova::kv {

void Reply::Error(std::string_view message) {
  out_->push_back('-');
  const std::size_t start = out_->size();
  out_->append(message);
  for (std::size_t i = start; i < out_->size(); ++i) {
    if ((*out_)[i] == '\r' || (*out_)[i] == '\n') (*out_)[i] = ' ';
  }
  out_->append("\r\n");
}

char* Reply::BulkInPlace(std::size_t size) {
  absl::StrAppend(out_, "$", size, "\r\n");
  const std::size_t at = out_->size();
  out_->resize(at + size + 2);
  (*out_)[at + size] = '\r';
  (*out_)[at + size + 1] = '\n';
  return out_->data() + at;
}

}  // namespace mova::kv
