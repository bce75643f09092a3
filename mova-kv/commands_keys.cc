// mova-kv/commands_keys.cc — the keyspace commands: DEL, EXISTS, EXPIRE / PEXPIRE (with NX, XX, GT, LT),
// TTL / PTTL, PERSIST, TYPE, DBSIZE, FLUSHALL / FLUSHDB, SELECT (one database: 0). Replies as Redis 7's
// (db.c, expire.c).
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "mova-kv/absl_view.h"
#include "mova-kv/engine.h"
#include "mova-kv/numbers.h"

namespace mova::kv {
void Engine::Del(Client&, std::vector<std::string>& a, Reply& r) {
  std::int64_t n = 0;
  for (std::size_t j = 1; j < a.size(); ++j) {
    if (const std::optional<Keyspace::Index> i = keyspace_.Find(a[j], /*touch=*/false)) {
      keyspace_.Remove(*i);
      ++n;
    }
  }
  r.Integer(n);
}

void Engine::Exists(Client&, std::vector<std::string>& a, Reply& r) {
  std::int64_t n = 0;
  for (std::size_t j = 1; j < a.size(); ++j) n += keyspace_.Find(a[j]).has_value() ? 1 : 0;
  r.Integer(n);
}

namespace {

// The options of EXPIRE / PEXPIRE key amount [NX | XX | GT | LT]; false after an error reply.
struct ExpireOptions {
  bool nx = false, xx = false, gt = false, lt = false;
};

bool ParseExpireOptions(const std::vector<std::string>& a, ExpireOptions* o, Reply& r) {
  for (std::size_t j = 3; j < a.size(); ++j) {
    const std::string opt = absl::AsciiStrToLower(a[j]);
    if (opt == "nx") o->nx = true;
    else if (opt == "xx") o->xx = true;
    else if (opt == "gt") o->gt = true;
    else if (opt == "lt") o->lt = true;
    else {
      r.Error(absl::StrCat("ERR Unsupported option ", a[j]));
      return false;
    }
  }
  if (o->nx && (o->xx || o->gt || o->lt)) {
    r.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return false;
  }
  if (o->gt && o->lt) {
    r.Error("ERR GT and LT options at the same time are not compatible");
    return false;
  }
  return true;
}

}  // namespace

std::optional<std::int64_t> Engine::ExpiryOf(std::string_view amount, std::int64_t unit_ms, bool absolute,
                                              bool allow_past, std::string_view command, Reply& r) {
  std::int64_t v;
  if (!ParseInt64(amount, &v)) {
    r.Error("ERR value is not an integer or out of range");
    return std::nullopt;
  }
  const std::int64_t now = keyspace_.now_ms();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const bool overflows = v > kMax / unit_ms || v < kMin / unit_ms || (!absolute && v * unit_ms > kMax - now);
  if ((!allow_past && v <= 0) || overflows) {
    r.Error(absl::StrCat("ERR invalid expire time in '", Av(command), "' command"));
    return std::nullopt;
  }
  return absolute ? v * unit_ms : now + v * unit_ms;
}

void Engine::Expire(Client&, std::vector<std::string>& a, Reply& r) { ExpireGeneric(a, 1000, "expire", r); }
void Engine::PExpire(Client&, std::vector<std::string>& a, Reply& r) { ExpireGeneric(a, 1, "pexpire", r); }

void Engine::ExpireGeneric(std::vector<std::string>& a, std::int64_t unit_ms, std::string_view command, Reply& r) {
  ExpireOptions o;
  if (!ParseExpireOptions(a, &o, r)) return;
  const std::int64_t now = keyspace_.now_ms();
  const std::optional<std::int64_t> expiry = ExpiryOf(a[2], unit_ms, /*absolute=*/false, /*allow_past=*/true, command, r);
  if (!expiry.has_value()) return;
  const std::int64_t when = *expiry;
  const std::optional<Keyspace::Index> i = keyspace_.Find(a[1], /*touch=*/false);
  if (!i.has_value()) return r.Integer(0);
  const std::int64_t current = keyspace_.ExpireOf(*i);  // 0: none, i.e. forever
  if ((o.nx && current != 0) || (o.xx && current == 0) || (o.gt && (current == 0 || when <= current)) ||
      (o.lt && current != 0 && when >= current)) {
    return r.Integer(0);
  }
  if (when <= now) {  // already expired: the key goes now
    keyspace_.Remove(*i);
    return r.Integer(1);
  }
  keyspace_.SetExpire(*i, when);
  r.Integer(1);
}

void Engine::TtlGeneric(std::string_view key, std::int64_t unit_ms, Reply& r) {
  const std::optional<Keyspace::Index> i = keyspace_.Find(key, /*touch=*/false);
  if (!i.has_value()) return r.Integer(-2);
  const std::int64_t expire = keyspace_.ExpireOf(*i);
  if (expire == 0) return r.Integer(-1);
  const std::int64_t left = std::max<std::int64_t>(expire - keyspace_.now_ms(), 0);
  r.Integer(unit_ms == 1 ? left : (left + 500) / 1000);
}

void Engine::Ttl(Client&, std::vector<std::string>& a, Reply& r) { TtlGeneric(a[1], 1000, r); }
void Engine::PTtl(Client&, std::vector<std::string>& a, Reply& r) { TtlGeneric(a[1], 1, r); }

void Engine::Persist(Client&, std::vector<std::string>& a, Reply& r) {
  const std::optional<Keyspace::Index> i = keyspace_.Find(a[1]);
  if (!i.has_value() || keyspace_.ExpireOf(*i) == 0) return r.Integer(0);
  keyspace_.SetExpire(*i, 0);
  r.Integer(1);
}

void Engine::Type(Client&, std::vector<std::string>& a, Reply& r) {
  r.Simple(keyspace_.Find(a[1], /*touch=*/false).has_value() ? "string" : "none");
}

void Engine::DbSize(Client&, std::vector<std::string>&, Reply& r) {
  r.Integer(static_cast<std::int64_t>(keyspace_.size()));
}

void Engine::FlushAll(Client&, std::vector<std::string>& a, Reply& r) {
  if (a.size() > 2 || (a.size() == 2 && !absl::EqualsIgnoreCase(a[1], "async") && !absl::EqualsIgnoreCase(a[1], "sync"))) {
    return r.Error("ERR syntax error");
  }
  keyspace_.Clear();  // ASYNC too: the objects go at once (there is no lazy-free thread)
  r.Ok();
}

void Engine::Select(Client&, std::vector<std::string>& a, Reply& r) {
  std::int64_t db;
  if (!ParseInt64(a[1], &db)) return r.Error("ERR value is not an integer or out of range");
  if (db != 0) return r.Error("ERR DB index is out of range");
  r.Ok();
}

}  // namespace mova::kv
