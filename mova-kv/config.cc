// mova-kv/config.cc — see config.h. One table of parameters drives GET and SET.
#include "mova-kv/absl_view.h"
#include "mova-kv/config.h"

#include <charconv>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mova-kv/glob.h"

namespace mova::kv {
namespace {

struct Param {
  const char* name;
  std::function<std::string(const ServerConfig&)> get;
  // Empty when the parameter cannot be set at run time. Returns an empty string, or why the value is bad.
  std::function<std::string(ServerConfig&, std::string_view)> set;
};

std::string Bool(bool b) { return b ? "yes" : "no"; }

std::string SetBool(bool* out, std::string_view v) {
  const std::string s = absl::AsciiStrToLower(Av(v));
  if (s == "yes") *out = true;
  else if (s == "no") *out = false;
  else return "argument must be 'yes' or 'no'";
  return "";
}

std::string SetMemory(std::uint64_t* out, std::string_view v) {
  absl::StatusOr<std::uint64_t> m = ParseMemory(v);
  if (!m.ok()) return "argument must be a memory value";
  *out = *m;
  return "";
}

template <typename T>
std::string SetInt(T* out, std::string_view v, T lo, T hi) {
  T x;
  if (!absl::SimpleAtoi(Av(v), &x)) return "argument couldn't be parsed into an integer";
  if (x < lo || x > hi) return absl::StrCat("argument must be between ", lo, " and ", hi, " inclusive");
  *out = x;
  return "";
}

const std::vector<Param>& Params() {
  static const std::vector<Param> params = {
      {"maxmemory", [](const ServerConfig& c) { return absl::StrCat(c.maxmemory); },
       [](ServerConfig& c, std::string_view v) { return SetMemory(&c.maxmemory, v); }},
      {"maxmemory-policy",
       [](const ServerConfig& c) -> std::string {
         switch (c.maxmemory_policy) {
           case EvictionPolicy::kNoEviction: return "noeviction";
           case EvictionPolicy::kAllKeysLru: return "allkeys-lru";
           case EvictionPolicy::kAllKeysRandom: return "allkeys-random";
         }
         return "";
       },
       [](ServerConfig& c, std::string_view v) -> std::string {
         const std::string s = absl::AsciiStrToLower(Av(v));
         if (s == "noeviction") c.maxmemory_policy = EvictionPolicy::kNoEviction;
         else if (s == "allkeys-lru") c.maxmemory_policy = EvictionPolicy::kAllKeysLru;
         else if (s == "allkeys-random") c.maxmemory_policy = EvictionPolicy::kAllKeysRandom;
         else return "argument(s) must be one of the following: noeviction, allkeys-lru, allkeys-random";
         return "";
       }},
      {"maxmemory-samples", [](const ServerConfig& c) { return absl::StrCat(c.maxmemory_samples); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.maxmemory_samples, v, 1, 64); }},
      {"activedefrag", [](const ServerConfig& c) { return Bool(c.activedefrag); },
       [](ServerConfig& c, std::string_view v) { return SetBool(&c.activedefrag, v); }},
      {"active-defrag-ignore-bytes", [](const ServerConfig& c) { return absl::StrCat(c.active_defrag_ignore_bytes); },
       [](ServerConfig& c, std::string_view v) { return SetMemory(&c.active_defrag_ignore_bytes, v); }},
      {"active-defrag-threshold-lower",
       [](const ServerConfig& c) { return absl::StrCat(c.active_defrag_threshold_lower); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.active_defrag_threshold_lower, v, 0, 1000); }},
      {"active-defrag-threshold-upper",
       [](const ServerConfig& c) { return absl::StrCat(c.active_defrag_threshold_upper); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.active_defrag_threshold_upper, v, 0, 1000); }},
      {"active-defrag-cycle-min", [](const ServerConfig& c) { return absl::StrCat(c.active_defrag_cycle_min); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.active_defrag_cycle_min, v, 1, 99); }},
      {"active-defrag-cycle-max", [](const ServerConfig& c) { return absl::StrCat(c.active_defrag_cycle_max); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.active_defrag_cycle_max, v, 1, 99); }},
      {"proto-max-bulk-len", [](const ServerConfig& c) { return absl::StrCat(c.proto_max_bulk_len); },
       [](ServerConfig& c, std::string_view v) -> std::string {
         std::uint64_t x;
         if (std::string e = SetMemory(&x, v); !e.empty()) return e;
         if (x < 1024 * 1024) return "argument must be a memory value of at least 1mb";
         c.proto_max_bulk_len = x;
         return "";
       }},
      {"client-query-buffer-limit",
       [](const ServerConfig& c) { return absl::StrCat(c.client_query_buffer_limit); },
       [](ServerConfig& c, std::string_view v) -> std::string {
         std::uint64_t x;
         if (std::string e = SetMemory(&x, v); !e.empty()) return e;
         if (x < 1024 * 1024) return "argument must be a memory value of at least 1mb";
         c.client_query_buffer_limit = x;
         return "";
       }},
      {"hz", [](const ServerConfig& c) { return absl::StrCat(c.hz); },
       [](ServerConfig& c, std::string_view v) { return SetInt(&c.hz, v, 1, 500); }},
      {"latency-monitor-threshold", [](const ServerConfig& c) { return absl::StrCat(c.latency_monitor_threshold); },
       [](ServerConfig& c, std::string_view v) {
         return SetInt<std::int64_t>(&c.latency_monitor_threshold, v, 0, std::int64_t{1} << 40);
       }},
      {"save", [](const ServerConfig&) { return std::string(); },
       [](ServerConfig&, std::string_view v) -> std::string {
         return v.empty() ? "" : "mova-kv keeps no snapshots: save can only be \"\"";
       }},
      {"appendonly", [](const ServerConfig&) { return std::string("no"); },
       [](ServerConfig&, std::string_view v) -> std::string {
         return absl::AsciiStrToLower(Av(v)) == "no" ? "" : "mova-kv keeps no append-only file: appendonly can only be no";
       }},
      {"databases", [](const ServerConfig&) { return std::string("1"); }, nullptr},
      {"bind", [](const ServerConfig& c) { return c.bind; }, nullptr},
      {"port", [](const ServerConfig& c) { return absl::StrCat(c.port); }, nullptr},
  };
  return params;
}

}  // namespace

absl::StatusOr<std::uint64_t> ParseMemory(std::string_view text) {
  std::string s = absl::AsciiStrToLower(Av(text));
  std::uint64_t mul = 1;
  const auto ends = [&](std::string_view suffix, std::uint64_t m) {
    if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
      s.resize(s.size() - suffix.size());
      mul = m;
      return true;
    }
    return false;
  };
  ends("gb", std::uint64_t{1} << 30) || ends("mb", std::uint64_t{1} << 20) || ends("kb", 1024) ||
      ends("g", 1000000000) || ends("m", 1000000) || ends("k", 1000) || ends("b", 1);
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || (v != 0 && mul > ~std::uint64_t{0} / v)) {
    return absl::InvalidArgumentError(absl::StrCat("not a memory value: '", Av(text), "'"));
  }
  return v * mul;
}

std::vector<std::pair<std::string, std::string>> ServerConfig::Get(std::string_view pattern) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Param& p : Params()) {
    if (GlobMatch(pattern, p.name, /*nocase=*/true)) out.emplace_back(p.name, p.get(*this));
  }
  return out;
}

absl::Status ServerConfig::Set(std::string_view name, std::string_view value) {
  const std::string lower = absl::AsciiStrToLower(Av(name));
  for (const Param& p : Params()) {
    if (lower != p.name) continue;
    if (!p.set) {
      return absl::InvalidArgumentError(
          absl::StrCat("CONFIG SET failed (possibly related to argument '", lower, "') - can't set immutable config"));
    }
    if (std::string why = p.set(*this, value); !why.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("CONFIG SET failed (possibly related to argument '", lower, "') - ", why));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("Unknown option or number of arguments for CONFIG SET - '", Av(name), "'"));
}

}  // namespace mova::kv
