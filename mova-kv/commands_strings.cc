// mova-kv/commands_strings.cc — the string commands: GET, SET and its family, MGET / MSET, INCR and its family,
// APPEND, STRLEN. Replies and errors as Redis 7 gives them (t_string.c).
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "mova-kv/absl_view.h"
#include "mova-kv/engine.h"
#include "mova-kv/numbers.h"

namespace mova::kv {
namespace {

constexpr char kNotInteger[] = "ERR value is not an integer or out of range";
constexpr char kSyntax[] = "ERR syntax error";

bool Is(std::string_view arg, std::string_view option) { return absl::EqualsIgnoreCase(Av(arg), Av(option)); }

}  // namespace

std::optional<Keyspace::Index> Engine::Store(std::string_view key, std::span<const std::string_view> value_parts,
                                             bool keep_ttl, Reply& r) {
  return StoreAt(keyspace_.Find(key), key, value_parts, keep_ttl, r);
}

std::optional<Keyspace::Index> Engine::StoreAt(std::optional<Keyspace::Index> found, std::string_view key,
                                               std::span<const std::string_view> value_parts, bool keep_ttl, Reply& r) {
  if (const std::optional<Keyspace::Index> i = found) {
    if (absl::Status s = keyspace_.Replace(*i, key, value_parts); !s.ok()) {
      ReplyStoreError(s, r);
      return std::nullopt;
    }
    if (!keep_ttl) keyspace_.SetExpire(*i, 0);
    return i;
  }
  absl::StatusOr<Keyspace::Index> i = keyspace_.Insert(key, value_parts);
  if (!i.ok()) {
    ReplyStoreError(i.status(), r);
    return std::nullopt;
  }
  return *i;
}

void Engine::Get(Client&, std::vector<std::string>& a, Reply& r) {
  const bool found = keyspace_.FindAndRead(a[1], [&](std::string_view v) { r.Bulk(v); }).has_value();
  if (found) {
    ++keyspace_hits_;
  } else {
    ++keyspace_misses_;
    r.Null();
  }
}

void Engine::SetGeneric(std::string_view key, std::string_view value, std::int64_t expire_ms, bool nx, bool xx,
                        bool keep_ttl, bool get, Reply& r) {
  const std::optional<Keyspace::Index> found = keyspace_.Find(key);
  std::optional<std::string> old;
  if (get && found.has_value()) {
    absl::StatusOr<std::string> v = keyspace_.CopyValue(*found);
    if (!v.ok()) return ReplyStoreError(v.status(), r);
    old = std::move(*v);
  }
  const auto answer_old = [&] { old.has_value() ? r.Bulk(*old) : r.Null(); };
  if ((nx && found.has_value()) || (xx && !found.has_value())) return get ? answer_old() : r.Null();
  const std::string_view parts[] = {value};
  const std::optional<Keyspace::Index> i = StoreAt(found, key, parts, keep_ttl, r);
  if (!i.has_value()) return;
  if (expire_ms != 0) keyspace_.SetExpire(*i, expire_ms);
  get ? answer_old() : r.Ok();
}

void Engine::Set(Client&, std::vector<std::string>& a, Reply& r) {
  bool nx = false, xx = false, get = false, keep_ttl = false;
  std::int64_t expire_ms = 0;
  bool has_expire = false;
  for (std::size_t j = 3; j < a.size(); ++j) {
    const std::string& opt = a[j];
    const bool has_next = j + 1 < a.size();
    if (Is(opt, "nx") && !xx) {
      nx = true;
    } else if (Is(opt, "xx") && !nx) {
      xx = true;
    } else if (Is(opt, "get")) {
      get = true;
    } else if (Is(opt, "keepttl") && !has_expire) {
      keep_ttl = true;
    } else if ((Is(opt, "ex") || Is(opt, "px") || Is(opt, "exat") || Is(opt, "pxat")) && !has_expire && !keep_ttl &&
               has_next) {
      const bool seconds = Is(opt, "ex") || Is(opt, "exat");
      const bool absolute = Is(opt, "exat") || Is(opt, "pxat");
      const std::optional<std::int64_t> when = ExpiryOf(a[j + 1], seconds ? 1000 : 1, absolute, false, "set", r);
      if (!when.has_value()) return;
      expire_ms = *when;
      has_expire = true;
      ++j;
    } else {
      return r.Error(kSyntax);
    }
  }
  SetGeneric(a[1], a[2], expire_ms, nx, xx, keep_ttl, get, r);
}

void Engine::SetNx(Client&, std::vector<std::string>& a, Reply& r) {
  if (keyspace_.Find(a[1]).has_value()) return r.Integer(0);
  const std::string_view parts[] = {a[2]};
  if (Store(a[1], parts, false, r).has_value()) r.Integer(1);
}

void Engine::SetEx(Client&, std::vector<std::string>& a, Reply& r) {
  const std::optional<std::int64_t> when = ExpiryOf(a[2], 1000, false, false, "setex", r);
  if (when.has_value()) SetGeneric(a[1], a[3], *when, false, false, false, false, r);
}

void Engine::PSetEx(Client&, std::vector<std::string>& a, Reply& r) {
  const std::optional<std::int64_t> when = ExpiryOf(a[2], 1, false, false, "psetex", r);
  if (when.has_value()) SetGeneric(a[1], a[3], *when, false, false, false, false, r);
}

void Engine::GetSet(Client&, std::vector<std::string>& a, Reply& r) {
  SetGeneric(a[1], a[2], 0, false, false, false, /*get=*/true, r);
}

void Engine::MGet(Client&, std::vector<std::string>& a, Reply& r) {
  r.Array(a.size() - 1);
  for (std::size_t j = 1; j < a.size(); ++j) {
    // A key whose object cannot be read counts as missing (and in store_errors): an element of MGET's array is
    // a value or nil.
    if (keyspace_.FindAndRead(a[j], [&](std::string_view v) { r.Bulk(v); }).has_value()) {
      ++keyspace_hits_;
    } else {
      ++keyspace_misses_;
      r.Null();
    }
  }
}

void Engine::MSet(Client&, std::vector<std::string>& a, Reply& r) {
  if (a.size() % 2 == 0) return r.Error("ERR wrong number of arguments for 'mset' command");
  for (std::size_t j = 1; j + 1 < a.size(); j += 2) {
    const std::string_view parts[] = {a[j + 1]};
    if (!Store(a[j], parts, false, r).has_value()) return;
  }
  r.Ok();
}

void Engine::IncrGeneric(std::string_view key, std::int64_t delta, Reply& r) {
  std::int64_t value = 0;
  const std::optional<Keyspace::Index> i = keyspace_.Find(key);
  if (i.has_value()) {
    absl::StatusOr<std::string> v = keyspace_.CopyValue(*i);
    if (!v.ok()) return ReplyStoreError(v.status(), r);
    if (!ParseInt64(*v, &value)) return r.Error(kNotInteger);
  }
  if ((delta < 0 && value < 0 && delta < std::numeric_limits<std::int64_t>::min() - value) ||
      (delta > 0 && value > 0 && delta > std::numeric_limits<std::int64_t>::max() - value)) {
    return r.Error("ERR increment or decrement would overflow");
  }
  value += delta;
  const std::string text = absl::StrCat(value);
  const std::string_view parts[] = {text};
  if (StoreAt(i, key, parts, /*keep_ttl=*/true, r).has_value()) r.Integer(value);
}

void Engine::Incr(Client&, std::vector<std::string>& a, Reply& r) { IncrGeneric(a[1], 1, r); }
void Engine::Decr(Client&, std::vector<std::string>& a, Reply& r) { IncrGeneric(a[1], -1, r); }

void Engine::IncrBy(Client&, std::vector<std::string>& a, Reply& r) {
  std::int64_t d;
  if (!ParseInt64(a[2], &d)) return r.Error(kNotInteger);
  IncrGeneric(a[1], d, r);
}

void Engine::DecrBy(Client&, std::vector<std::string>& a, Reply& r) {
  std::int64_t d;
  if (!ParseInt64(a[2], &d)) return r.Error(kNotInteger);
  if (d == std::numeric_limits<std::int64_t>::min()) return r.Error("ERR decrement would overflow");
  IncrGeneric(a[1], -d, r);
}

void Engine::Append(Client&, std::vector<std::string>& a, Reply& r) {
  const std::optional<Keyspace::Index> i = keyspace_.Find(a[1]);
  std::string old;
  if (i.has_value()) {
    if (keyspace_.entry(*i).value_len + a[2].size() > config_.proto_max_bulk_len) {
      return r.Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    absl::StatusOr<std::string> v = keyspace_.CopyValue(*i);
    if (!v.ok()) return ReplyStoreError(v.status(), r);
    old = std::move(*v);
  }
  const std::string_view parts[] = {old, a[2]};
  if (StoreAt(i, a[1], parts, /*keep_ttl=*/true, r).has_value()) {
    r.Integer(static_cast<std::int64_t>(old.size() + a[2].size()));
  }
}

void Engine::StrLen(Client&, std::vector<std::string>& a, Reply& r) {
  const std::optional<Keyspace::Index> i = keyspace_.Find(a[1]);
  r.Integer(i.has_value() ? keyspace_.entry(*i).value_len : 0);
}

}  // namespace mova::kv
