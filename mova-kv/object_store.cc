// mova-kv/object_store.cc — the object layout shared by the stores (see object_store.h).
#include "mova-kv/object_store.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace mova::kv {

std::size_t ObjectStore::ValueSize(std::span<const std::string_view> value_parts) {
  std::size_t n = 0;
  for (std::string_view p : value_parts) n += p.size();
  return n;
}

void ObjectStore::WriteObject(std::byte* out, std::string_view key, std::span<const std::string_view> value_parts) {
  const std::uint32_t klen = static_cast<std::uint32_t>(key.size());
  std::memcpy(out, &klen, 4);
  std::memcpy(out + 4, key.data(), key.size());
  std::size_t at = 4 + key.size();
  for (std::string_view p : value_parts) {
    std::memcpy(out + at, p.data(), p.size());
    at += p.size();
  }
}

absl::Status ObjectStore::SplitObject(const std::byte* bytes, std::size_t size, std::string_view* key,
                                      std::string_view* value) {
  std::uint32_t klen;
  if (size < 4) return absl::DataLossError(absl::StrFormat("object of %u bytes: shorter than its header", size));
  std::memcpy(&klen, bytes, 4);
  if (klen > size - 4) {
    return absl::DataLossError(absl::StrFormat("object of %u bytes: key length %u beyond it", size, klen));
  }
  const char* chars = reinterpret_cast<const char*>(bytes);
  *key = std::string_view(chars + 4, klen);
  *value = std::string_view(chars + 4 + klen, size - 4 - klen);
  return absl::OkStatus();
}

}  // namespace mova::kv
