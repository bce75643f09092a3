// alloc/pool_options.cc — PoolOptions' environment defaults (MOVA_OPTIONS, MOVA_SHOW_STATS), the options
// text parser and the range checks Pool::Create applies.
//
// The environment is read once, under a function-local static: the built-in PoolOptions made inside it must
// not ask for the environment's defaults again (they are being made), which `t_building` answers with nullptr.
#include "mova/pool_options.h"

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "absl/strings/str_format.h"
#include "alloc/block.h"
#include "handles/entry_word.h"

namespace mova {
namespace {

// Debian's Abseil has its own string_view, so the text is handled with the standard library here.
std::string_view Trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// The whole of `text` as a number of type T, or false.
template <typename T>
bool ParseAll(std::string_view text, T& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

absl::Status Bad(std::string_view name, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s=%s: %s", name, value, why));
}

absl::StatusOr<bool> ParseBool(std::string_view name, std::string_view v) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  return Bad(name, v, "expected true, false, 1 or 0");
}

absl::StatusOr<std::uint64_t> ParseUnsigned(std::string_view name, std::string_view v) {
  std::uint64_t n = 0;
  if (!ParseAll(v, n)) {
    return Bad(name, v, "expected a non-negative whole number");
  }
  return n;
}

// A byte count with an optional binary suffix: 4096, 64k, 512m, 2g, 1t (either case).
absl::StatusOr<Bytes> ParseBytes(std::string_view name, std::string_view v) {
  int shift = 0;
  if (!v.empty()) {
    switch (v.back()) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      case 't': case 'T': shift = 40; break;
      default: break;
    }
  }
  absl::StatusOr<std::uint64_t> n = ParseUnsigned(name, shift > 0 ? v.substr(0, v.size() - 1) : v);
  if (!n.ok()) return Bad(name, v, "expected a byte count: a whole number with an optional k, m, g or t");
  if (*n > (std::numeric_limits<std::uint64_t>::max() >> shift)) return Bad(name, v, "too large");
  return Bytes(static_cast<std::size_t>(*n << shift));
}

absl::StatusOr<std::uint32_t> ParseUint32(std::string_view name, std::string_view v) {
  absl::StatusOr<std::uint64_t> n = ParseUnsigned(name, v);
  if (!n.ok()) return n.status();
  if (*n > std::numeric_limits<std::uint32_t>::max()) return Bad(name, v, "too large");
  return static_cast<std::uint32_t>(*n);
}

absl::StatusOr<double> ParseNumber(std::string_view name, std::string_view v) {
  double d = 0;
  if (!ParseAll(v, d)) return Bad(name, v, "expected a number");
  return d;
}

// A whole number of `Duration` units (milliseconds, microseconds), at most 2^31 - 1 of them.
template <typename Duration>
absl::StatusOr<Duration> ParseDuration(std::string_view name, std::string_view v, const char* unit) {
  absl::StatusOr<std::uint64_t> n = ParseUnsigned(name, v);
  if (!n.ok()) return n.status();
  if (*n > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max())) {
    return Bad(name, v, std::string("too large (at most 2147483647 ") + unit + ")");
  }
  return Duration(static_cast<std::int64_t>(*n));
}
absl::StatusOr<std::chrono::milliseconds> ParseMillis(std::string_view name, std::string_view v) {
  return ParseDuration<std::chrono::milliseconds>(name, v, "ms");
}
absl::StatusOr<std::chrono::microseconds> ParseMicros(std::string_view name, std::string_view v) {
  return ParseDuration<std::chrono::microseconds>(name, v, "us");
}

absl::StatusOr<StatsOutput> ParseStatsOutput(std::string_view name, std::string_view v) {
  if (v == "none" || v == "0") return StatsOutput::kNone;
  if (v == "text" || v == "1") return StatsOutput::kText;
  if (v == "json") return StatsOutput::kJson;
  return Bad(name, v, "expected none, text, json, 0 or 1");
}

// One option: its name and how its value is parsed into a PoolOptions.
struct OptionField {
  std::string_view name;
  absl::Status (*apply)(std::string_view name, std::string_view value, PoolOptions& o);
};

template <typename T, typename Parse>
absl::Status Set(T& field, Parse parse, std::string_view name, std::string_view value) {
  auto parsed = parse(name, value);
  if (!parsed.ok()) return parsed.status();
  field = static_cast<T>(*parsed);
  return absl::OkStatus();
}

constexpr OptionField kFields[] = {
    {"arena_capacity", [](auto n, auto v, PoolOptions& o) { return Set(o.arena_capacity, ParseBytes, n, v); }},
    {"memory_limit", [](auto n, auto v, PoolOptions& o) { return Set(o.memory_limit, ParseBytes, n, v); }},
    {"decay_ms", [](auto n, auto v, PoolOptions& o) { return Set(o.decay, ParseMillis, n, v); }},
    {"max_handles", [](auto n, auto v, PoolOptions& o) { return Set(o.max_handles, ParseUint32, n, v); }},
    {"checked", [](auto n, auto v, PoolOptions& o) { return Set(o.checked, ParseBool, n, v); }},
    {"move_by_userfaultfd", [](auto n, auto v, PoolOptions& o) { return Set(o.move_by_userfaultfd, ParseBool, n, v); }},
    {"move_by_mremap", [](auto n, auto v, PoolOptions& o) { return Set(o.move_by_mremap, ParseBool, n, v); }},
    {"zero_copy_min", [](auto n, auto v, PoolOptions& o) { return Set(o.zero_copy_min, ParseBytes, n, v); }},
    {"collapse_dense_regions",
     [](auto n, auto v, PoolOptions& o) { return Set(o.collapse_dense_regions, ParseBool, n, v); }},
    {"background_interval_ms",
     [](auto n, auto v, PoolOptions& o) { return Set(o.background_interval, ParseMillis, n, v); }},
    {"background_threshold",
     [](auto n, auto v, PoolOptions& o) { return Set(o.background_threshold, ParseNumber, n, v); }},
    {"background_cycle_us",
     [](auto n, auto v, PoolOptions& o) { return Set(o.background_cycle, ParseMicros, n, v); }},
    {"direct_compaction_us",
     [](auto n, auto v, PoolOptions& o) { return Set(o.direct_compaction, ParseMicros, n, v); }},
    {"background_cpu_percent",
     [](auto n, auto v, PoolOptions& o) { return Set(o.background_cpu_percent, ParseNumber, n, v); }},
    {"include_in_core_dumps",
     [](auto n, auto v, PoolOptions& o) { return Set(o.include_in_core_dumps, ParseBool, n, v); }},
    {"show_stats", [](auto n, auto v, PoolOptions& o) { return Set(o.show_stats, ParseStatsOutput, n, v); }},
};

std::string KnownNames() {
  std::string names;
  for (const OptionField& f : kFields) {
    if (!names.empty()) names += ", ";
    names += f.name;
  }
  return names;
}

// The environment's defaults, made once.
struct Environment {
  PoolOptions options;  // built-in defaults with the variables applied (built-in only where status is bad)
  absl::Status status;
};

thread_local bool t_building = false;

Environment* MakeEnvironment() {
  t_building = true;  // the PoolOptions made here take the built-in defaults
  auto* env = new Environment();
  t_building = false;
  PoolOptions applied = env->options;
  if (const char* text = std::getenv("MOVA_OPTIONS"); text != nullptr) {
    if (absl::Status s = ParsePoolOptions(text, applied); !s.ok()) {
      env->status = absl::InvalidArgumentError(absl::StrFormat("MOVA_OPTIONS=\"%s\": %s", text, s.message()));
      return env;
    }
  }
  if (const char* show = std::getenv("MOVA_SHOW_STATS"); show != nullptr && *show != '\0') {
    absl::StatusOr<StatsOutput> out = ParseStatsOutput("MOVA_SHOW_STATS", show);
    if (!out.ok()) {
      env->status = absl::InvalidArgumentError(absl::StrFormat("%s (use 1, text, json or 0)", out.status().message()));
      return env;
    }
    applied.show_stats = *out;
  }
  env->options = applied;
  return env;
}

const Environment& TheEnvironment() {
  static const Environment* const env = MakeEnvironment();
  return *env;
}

}  // namespace

namespace internal {

const PoolOptions* EnvironmentDefaults() {
  if (t_building) return nullptr;
  const Environment& env = TheEnvironment();
  return env.status.ok() ? &env.options : nullptr;
}

}  // namespace internal

absl::Status EnvironmentOptionsStatus() { return TheEnvironment().status; }

absl::Status ParsePoolOptions(std::string_view text, PoolOptions& options) {
  PoolOptions parsed = options;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = Trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat("'%s': expected name=value", item));
    }
    const std::string_view name = Trim(item.substr(0, eq));
    const std::string_view value = Trim(item.substr(eq + 1));
    const OptionField* field = nullptr;
    for (const OptionField& f : kFields) {
      if (f.name == name) field = &f;
    }
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("unknown option '%s' (known: %s)", name, KnownNames()));
    }
    if (absl::Status s = field->apply(name, value, parsed); !s.ok()) return s;
  }
  if (absl::Status s = ValidatePoolOptions(parsed); !s.ok()) return s;
  options = parsed;
  return absl::OkStatus();
}

absl::Status ValidatePoolOptions(const PoolOptions& options) {
  if (options.arena_capacity.value() == 0 || options.arena_capacity.value() > handles::kMaxArenaBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("arena_capacity must be in 1..%u bytes", handles::kMaxArenaBytes));
  }
  if (options.max_handles == 0 || options.max_handles > alloc::kMaxHandleIndex) {
    return absl::InvalidArgumentError(absl::StrFormat("max_handles must be in 1..%u", alloc::kMaxHandleIndex));
  }
  if (options.decay.count() < 0) return absl::InvalidArgumentError("decay must not be negative (0: at once)");
  if (options.background_interval.count() < 0) {
    return absl::InvalidArgumentError("background_interval must not be negative (0: no background compactor)");
  }
  if (!(options.background_threshold >= 0 && options.background_threshold <= 1)) {
    return absl::InvalidArgumentError(absl::StrFormat("background_threshold must be in [0, 1], not %g",
                                                      options.background_threshold));
  }
  if (options.direct_compaction.count() < 0) {
    return absl::InvalidArgumentError("direct_compaction must not be negative (zero: no direct compaction)");
  }
  if (options.background_cycle.count() <= 0) {
    return absl::InvalidArgumentError("background_cycle must be positive (the time budget of one cycle)");
  }
  if (!(options.background_cpu_percent > 0 && options.background_cpu_percent <= 100)) {
    return absl::InvalidArgumentError(absl::StrFormat("background_cpu_percent must be in (0, 100], not %g",
                                                      options.background_cpu_percent));
  }
  switch (options.show_stats) {
    case StatsOutput::kNone:
    case StatsOutput::kText:
    case StatsOutput::kJson:
      break;
    default:
      return absl::InvalidArgumentError("show_stats must be none, text or json");
  }
  return absl::OkStatus();
}

}  // namespace mova
