// mova-kv/commands_server.cc — connection and server commands: PING, ECHO, QUIT, SHUTDOWN, CLIENT, COMMAND,
// CONFIG, INFO, MEMORY, DEBUG, LATENCY. Replies shaped as Redis 7's, so that redis-cli and redis-benchmark
// talk to mova-kv as to redis-server.
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/rss.h"
#include "mova-kv/absl_view.h"
#include "mova-kv/engine.h"
#include "mova-kv/numbers.h"
#include "mova/version.h"

namespace mova::kv {
namespace {

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(Av(s)); }

void UnknownSubcommand(std::string_view command, std::string_view sub, Reply& r) {
  r.Error(absl::StrFormat("ERR unknown subcommand '%s'. Try %s HELP.", sub.substr(0, 128), absl::AsciiStrToUpper(Av(command))));
}

void WrongArity(std::string_view command, std::string_view sub, Reply& r) {
  r.Error(absl::StrFormat("ERR wrong number of arguments for '%s|%s' command", Lower(command), Lower(sub)));
}

void Help(std::string_view command, const std::vector<std::string_view>& lines, Reply& r) {
  r.Array(lines.size() + 1);
  r.Simple(absl::StrCat(absl::AsciiStrToUpper(Av(command)), " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"));
  for (std::string_view l : lines) r.Simple(l);
}

// Redis's bytesToHuman.
std::string Human(std::uint64_t n) {
  const double d = static_cast<double>(n);
  if (n < 1024) return absl::StrCat(n, "B");
  if (n < (std::uint64_t{1} << 20)) return absl::StrFormat("%.2fK", d / 1024);
  if (n < (std::uint64_t{1} << 30)) return absl::StrFormat("%.2fM", d / (1 << 20));
  if (n < (std::uint64_t{1} << 40)) return absl::StrFormat("%.2fG", d / (1 << 30));
  return absl::StrFormat("%.2fT", d / (std::uint64_t{1} << 40));
}

std::uint64_t Rss() {
  const absl::StatusOr<std::uint64_t> rss = bench::ProcessRssBytes();
  return rss.ok() ? *rss : 0;
}

}  // namespace

void Engine::Ping(Client&, std::vector<std::string>& a, Reply& r) {
  if (a.size() > 2) return r.Error("ERR wrong number of arguments for 'ping' command");
  a.size() == 2 ? r.Bulk(a[1]) : r.Simple("PONG");
}

void Engine::Echo(Client&, std::vector<std::string>& a, Reply& r) { r.Bulk(a[1]); }

void Engine::Quit(Client& c, std::vector<std::string>&, Reply& r) {
  c.close_after_reply = true;
  r.Ok();
}

void Engine::Shutdown(Client& c, std::vector<std::string>& a, Reply& r) {
  for (std::size_t j = 1; j < a.size(); ++j) {
    const std::string opt = Lower(a[j]);
    if (opt != "nosave" && opt != "save" && opt != "now" && opt != "force") return r.Error("ERR syntax error");
  }
  // Nothing to save; the server stops after this request, and the client reads the closed connection.
  shutdown_requested_ = true;
  c.close_after_reply = true;
}

void Engine::ClientCmd(Client& c, std::vector<std::string>& a, Reply& r) {
  const std::string sub = Lower(a[1]);
  if (sub == "setname") {
    if (a.size() != 3) return WrongArity("client", sub, r);
    for (char ch : a[2]) {
      if (ch < '!' || ch > '~') {
        return r.Error("ERR Client names cannot contain spaces, newlines or special characters.");
      }
    }
    c.name = a[2];
    return r.Ok();
  }
  if (sub == "getname") {
    if (a.size() != 2) return WrongArity("client", sub, r);
    return c.name.empty() ? r.Null() : r.Bulk(c.name);
  }
  if (sub == "id") {
    if (a.size() != 2) return WrongArity("client", sub, r);
    return r.Integer(static_cast<std::int64_t>(c.id));
  }
  if (sub == "info") {
    if (a.size() != 2) return WrongArity("client", sub, r);
    return r.Bulk(absl::StrFormat("id=%d addr=%s name=%s age=%d db=0\n", c.id, c.addr, c.name,
                                  absl::ToInt64Seconds(absl::Now() - c.created)));
  }
  if (sub == "help") {
    return Help("client", {"GETNAME", "    Return the name of the current connection.", "ID",
                           "    Return the ID of the current connection.", "INFO",
                           "    Return information about the current client connection.", "SETNAME <name>",
                           "    Assign the name <name> to the current connection."},
                r);
  }
  UnknownSubcommand("client", a[1], r);
}

void Engine::CommandCmd(Client&, std::vector<std::string>& a, Reply& r) {
  const auto info = [&](const CommandSpec& s) {
    r.Array(10);
    r.Bulk(s.name);
    r.Integer(s.arity);
    const std::vector<std::string> flags = absl::StrSplit(Av(s.flags), ' ', absl::SkipEmpty());
    r.Array(flags.size());
    for (const std::string& f : flags) r.Simple(f);
    r.Integer(s.first_key);
    r.Integer(s.last_key);
    r.Integer(s.key_step);
    for (int k = 0; k < 4; ++k) r.Array(0);  // ACL categories, tips, key specs, subcommands
  };
  if (a.size() == 1) {
    r.Array(CommandTable().size());
    for (const CommandSpec& s : CommandTable()) info(s);
    return;
  }
  const std::string sub = Lower(a[1]);
  if (sub == "count") return r.Integer(static_cast<std::int64_t>(CommandTable().size()));
  if (sub == "list") {
    r.Array(CommandTable().size());
    for (const CommandSpec& s : CommandTable()) r.Bulk(s.name);
    return;
  }
  if (sub == "info") {
    r.Array(a.size() - 2);
    for (std::size_t j = 2; j < a.size(); ++j) {
      const auto it = commands_.find(Lower(a[j]));
      it == commands_.end() ? r.NullArray() : info(*it->second);
    }
    return;
  }
  if (sub == "docs") return r.Array(0);  // no documentation: redis-cli then gives no hints
  if (sub == "help") {
    return Help("command", {"(no subcommand)", "    Return details about all commands.", "COUNT",
                            "    Return the total number of commands.", "INFO [<command-name> ...]",
                            "    Return details about the given commands.", "LIST",
                            "    Return the names of all commands.", "DOCS [<command-name> ...]",
                            "    Return documentation (none here)."},
                r);
  }
  UnknownSubcommand("command", a[1], r);
}

void Engine::ConfigCmd(Client&, std::vector<std::string>& a, Reply& r) {
  const std::string sub = Lower(a[1]);
  if (sub == "get") {
    if (a.size() < 3) return WrongArity("config", sub, r);
    std::vector<std::pair<std::string, std::string>> all;
    for (std::size_t j = 2; j < a.size(); ++j) {
      for (auto& kv : config_.Get(a[j])) {
        if (std::none_of(all.begin(), all.end(), [&](const auto& e) { return e.first == kv.first; })) {
          all.push_back(std::move(kv));
        }
      }
    }
    r.Array(all.size() * 2);
    for (const auto& [k, v] : all) {
      r.Bulk(k);
      r.Bulk(v);
    }
    return;
  }
  if (sub == "set") {
    if (a.size() < 4 || a.size() % 2 != 0) return WrongArity("config", sub, r);
    // All or nothing, as Redis 7: applied to a copy first.
    ServerConfig next = config_;
    for (std::size_t j = 2; j + 1 < a.size(); j += 2) {
      if (absl::Status s = next.Set(a[j], a[j + 1]); !s.ok()) return r.Error(absl::StrCat("ERR ", s.message()));
    }
    if (next.activedefrag && !store_.CanDefragment()) {
      // As a redis-server built without active defrag answers it.
      return r.Error(absl::StrCat("ERR CONFIG SET failed (possibly related to argument 'activedefrag') - "
                                  "Active defragmentation cannot be enabled: the ",
                                  Av(store_.name()), " store cannot move objects"));
    }
    config_ = std::move(next);
    return r.Ok();
  }
  if (sub == "resetstat") {
    if (a.size() != 2) return WrongArity("config", sub, r);
    total_commands_ = total_connections_ = rejected_connections_ = keyspace_hits_ = keyspace_misses_ = 0;
    oom_rejections_ = defrag_hits_ = 0;
    defrag_longest_ms_ = defrag_last_ms_ = defrag_last_compact_ms_ = defrag_last_migrate_ms_ = 0;
    defrag_last_handles_ms_ = 0;
    keyspace_.ResetStats();
    return r.Ok();
  }
  if (sub == "rewrite") return r.Error("ERR The server is running without a config file");
  if (sub == "help") {
    return Help("config", {"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                           "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
                           "RESETSTAT", "    Reset statistics reported by the INFO command."},
                r);
  }
  UnknownSubcommand("config", a[1], r);
}

std::string Engine::InfoText(std::string_view which) {
  const std::string section = Lower(which);
  const bool all = section.empty() || section == "default" || section == "all" || section == "everything";
  std::string out;
  const auto want = [&](std::string_view name) { return all || section == name; };
  const auto field = [&](std::string_view k, const auto& v) {
    out.append(k);
    out.push_back(':');
    if constexpr (std::is_convertible_v<decltype(v), std::string_view>) {
      out.append(std::string_view(v));
    } else {
      absl::StrAppend(&out, v);
    }
    out.append("\r\n");
  };
  const auto header = [&](std::string_view name) {
    if (!out.empty()) out.append("\r\n");
    absl::StrAppend(&out, "# ", Av(name), "\r\n");
  };
  const std::int64_t uptime = absl::ToInt64Seconds(absl::Now() - started_);
  if (want("server")) {
    header("Server");
    field("redis_version", "7.0.0");
    field("mova_kv_version", MOVA_VERSION_STRING);
    field("redis_mode", "standalone");
    field("os", "Linux");
    field("arch_bits", 64);
    field("multiplexing_api", "epoll");
    field("process_id", static_cast<std::int64_t>(getpid()));
    field("tcp_port", config_.port);
    field("uptime_in_seconds", uptime);
    field("uptime_in_days", uptime / 86400);
    field("hz", config_.hz);
    field("mova_kv_store", store_.name());
  }
  if (want("clients")) {
    header("Clients");
    field("connected_clients", connected_clients_);
    field("blocked_clients", 0);
  }
  if (want("memory")) {
    header("Memory");
    const std::uint64_t used = keyspace_.used_memory();
    const std::uint64_t rss = Rss();
    used_memory_peak_ = std::max(used_memory_peak_, used);
    const AllocatorReport a = store_.Report();
    const char* policy = config_.maxmemory_policy == EvictionPolicy::kAllKeysLru      ? "allkeys-lru"
                         : config_.maxmemory_policy == EvictionPolicy::kAllKeysRandom ? "allkeys-random"
                                                                                        : "noeviction";
    field("used_memory", used);
    field("used_memory_human", Human(used));
    field("used_memory_rss", rss);
    field("used_memory_rss_human", Human(rss));
    field("used_memory_peak", used_memory_peak_);
    field("used_memory_peak_human", Human(used_memory_peak_));
    field("used_memory_dataset", keyspace_.data_bytes());
    field("maxmemory", config_.maxmemory);
    field("maxmemory_human", Human(config_.maxmemory));
    field("maxmemory_policy", policy);
    field("allocator_allocated", a.allocated);
    field("allocator_active", a.active);
    field("allocator_resident", a.resident);
    field("allocator_frag_ratio",
          absl::StrFormat("%.2f", a.allocated > 0 ? static_cast<double>(a.active) / a.allocated : 1.0));
    field("allocator_frag_bytes", static_cast<std::int64_t>(a.active) - static_cast<std::int64_t>(a.allocated));
    field("mem_fragmentation_ratio", absl::StrFormat("%.2f", used > 0 ? static_cast<double>(rss) / used : 0.0));
    field("mem_fragmentation_bytes", static_cast<std::int64_t>(rss) - static_cast<std::int64_t>(used));
    const char* preload = std::getenv("LD_PRELOAD");
    field("mem_allocator", store_.name() == "mova" ? std::string("mova")
                               : preload != nullptr && *preload != '\0' ? absl::StrCat("malloc (LD_PRELOAD=", preload, ")")
                                                                        : std::string("libc"));
    field("active_defrag_running", defrag_ != nullptr && defrag_->running() ? defrag_cpu_percent_ : 0);
    field("lazyfree_pending_objects", 0);
    for (const auto& [k, v] : a.extra) field(k, v);
  }
  if (want("stats")) {
    header("Stats");
    field("total_connections_received", total_connections_);
    field("total_commands_processed", total_commands_);
    field("rejected_connections", rejected_connections_);
    field("expired_keys", keyspace_.expired_keys());
    field("evicted_keys", keyspace_.evicted_keys());
    field("keyspace_hits", keyspace_hits_);
    field("keyspace_misses", keyspace_misses_);
    field("oom_rejections", oom_rejections_);
    field("active_defrag_hits", defrag_hits_);
    field("active_defrag_cycles", defrag_ != nullptr ? defrag_->cycles() : 0);
    field("active_defrag_last_cycle_ms", absl::StrFormat("%.3f", defrag_last_ms_));
    field("active_defrag_longest_cycle_ms", absl::StrFormat("%.3f", defrag_longest_ms_));
    field("active_defrag_last_compact_ms", absl::StrFormat("%.3f", defrag_last_compact_ms_));
    field("active_defrag_last_migrate_ms", absl::StrFormat("%.3f", defrag_last_migrate_ms_));
    field("active_defrag_last_handles_ms", absl::StrFormat("%.3f", defrag_last_handles_ms_));
    field("store_errors", keyspace_.store_errors());
  }
  if (want("keyspace")) {
    header("Keyspace");
    if (keyspace_.size() > 0) {
      absl::StrAppend(&out, "db0:keys=", keyspace_.size(), ",expires=", keyspace_.volatile_size(), ",avg_ttl=0\r\n");
    }
  }
  return out;
}

void Engine::Info(Client&, std::vector<std::string>& a, Reply& r) {
  if (a.size() == 1) return r.Bulk(InfoText(""));
  std::string out;
  for (std::size_t j = 1; j < a.size(); ++j) {
    std::string part = InfoText(a[j]);
    if (part.empty()) continue;
    if (!out.empty()) out.append("\r\n");
    out += part;
  }
  r.Bulk(out);
}

void Engine::MemoryCmd(Client&, std::vector<std::string>& a, Reply& r) {
  const std::string sub = Lower(a[1]);
  if (sub == "usage") {
    if (a.size() != 3 && a.size() != 5) return WrongArity("memory", sub, r);
    if (a.size() == 5 && !absl::EqualsIgnoreCase(a[3], "samples")) return r.Error("ERR syntax error");
    const std::optional<Keyspace::Index> i = keyspace_.Find(a[2], /*touch=*/false);
    return i.has_value() ? r.Integer(static_cast<std::int64_t>(keyspace_.EntryBytes(*i))) : r.Null();
  }
  if (sub == "stats") {
    if (a.size() != 2) return WrongArity("memory", sub, r);
    const AllocatorReport al = store_.Report();
    const std::uint64_t used = keyspace_.used_memory(), rss = Rss();
    const std::uint64_t keys = keyspace_.size();
    r.Array(20);
    r.Bulk("peak.allocated"), r.Integer(static_cast<std::int64_t>(used_memory_peak_));
    r.Bulk("total.allocated"), r.Integer(static_cast<std::int64_t>(used));
    r.Bulk("dataset.bytes"), r.Integer(static_cast<std::int64_t>(keyspace_.data_bytes()));
    r.Bulk("overhead.total"), r.Integer(static_cast<std::int64_t>(used - keyspace_.data_bytes()));
    r.Bulk("keys.count"), r.Integer(static_cast<std::int64_t>(keys));
    r.Bulk("keys.bytes-per-key"), r.Integer(keys > 0 ? static_cast<std::int64_t>(used / keys) : 0);
    r.Bulk("allocator.allocated"), r.Integer(static_cast<std::int64_t>(al.allocated));
    r.Bulk("allocator.active"), r.Integer(static_cast<std::int64_t>(al.active));
    r.Bulk("allocator.resident"), r.Integer(static_cast<std::int64_t>(al.resident));
    r.Bulk("rss-overhead.ratio"), r.Bulk(absl::StrFormat("%.2f", used > 0 ? static_cast<double>(rss) / used : 0.0));
    return;
  }
  if (sub == "purge") {
    if (a.size() != 2) return WrongArity("memory", sub, r);
    store_.Purge();
    return r.Ok();
  }
  if (sub == "malloc-stats") {
    if (a.size() != 2) return WrongArity("memory", sub, r);
    return r.Bulk(store_.MallocStats());
  }
  if (sub == "doctor") {
    const std::uint64_t used = keyspace_.used_memory(), rss = Rss();
    const double ratio = used > 0 ? static_cast<double>(rss) / used : 0;
    return r.Bulk(ratio > 1.4 && rss > (std::uint64_t{10} << 20)
                      ? absl::StrFormat("RSS is %.2f times used_memory: %s of fragmentation or free pages kept. "
                                        "MEMORY PURGE gives free pages back; CONFIG SET activedefrag yes compacts.",
                                        ratio, Human(rss - used))
                      : std::string("Hi Sam, I can't find any memory issue in your instance. "
                                    "I can only account for what occurs on this base."));
  }
  if (sub == "help") {
    return Help("memory", {"USAGE <key> [SAMPLES <count>]", "    Return memory in bytes used by <key> and its value.",
                           "STATS", "    Return information about the memory usage of the server.", "PURGE",
                           "    Give free pages back to the operating system.", "MALLOC-STATS",
                           "    Return internal statistics report from the memory allocator.", "DOCTOR",
                           "    Return memory problems reports."},
                r);
  }
  UnknownSubcommand("memory", a[1], r);
}

void Engine::DebugCmd(Client&, std::vector<std::string>& a, Reply& r) {
  const std::string sub = Lower(a[1]);
  if (sub == "populate") {
    if (a.size() < 3 || a.size() > 5) return WrongArity("debug", sub, r);
    std::int64_t count = 0, size = 0;
    if (!ParseInt64(a[2], &count) || count < 0) return r.Error("ERR value is out of range, must be positive");
    if (a.size() == 5 && (!ParseInt64(a[4], &size) || size < 0)) {
      return r.Error("ERR value is out of range, must be positive");
    }
    const std::string prefix = a.size() >= 4 ? a[3] : "key";
    std::string key, value;
    for (std::int64_t j = 0; j < count; ++j) {
      key = absl::StrCat(prefix, ":", j);
      if (keyspace_.Find(key, /*touch=*/false).has_value()) continue;
      value = absl::StrCat("value:", j);
      if (size > 0) value.resize(static_cast<std::size_t>(size), '\0');  // as Redis: cut, or padded with zeros
      const std::string_view parts[] = {value};
      absl::StatusOr<Keyspace::Index> i = keyspace_.Insert(key, parts);
      if (!i.ok()) return ReplyStoreError(i.status(), r);
    }
    return r.Ok();
  }
  if (sub == "digest") {
    if (a.size() != 2) return WrongArity("debug", sub, r);
    absl::StatusOr<std::string> d = keyspace_.Digest();
    return d.ok() ? r.Simple(*d) : ReplyStoreError(d.status(), r);
  }
  if (sub == "sleep") {
    if (a.size() != 3) return WrongArity("debug", sub, r);
    double seconds = 0;
    if (!absl::SimpleAtod(a[2], &seconds) || seconds < 0 || seconds > 60) {
      return r.Error("ERR value is not a valid float");
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return r.Ok();
  }
  if (sub == "help") {
    return Help("debug", {"DIGEST", "    Output a hex signature representing the current DB content.",
                          "POPULATE <count> [<prefix>] [<size>]",
                          "    Create <count> string keys named key:<num>, or <prefix>:<num>.", "SLEEP <seconds>",
                          "    Stop the server for <seconds>."},
                r);
  }
  UnknownSubcommand("debug", a[1], r);
}

void Engine::LatencyCmd(Client&, std::vector<std::string>& a, Reply& r) {
  const std::string sub = Lower(a[1]);
  if (sub == "latest") {
    if (a.size() != 2) return WrongArity("latency", sub, r);
    r.Array(latency_.events().size());
    for (const auto& [name, e] : latency_.events()) {
      r.Array(4);
      r.Bulk(name);
      r.Integer(e.history.back().time_s);
      r.Integer(e.history.back().ms);
      r.Integer(e.max_ms);
    }
    return;
  }
  if (sub == "history") {
    if (a.size() != 3) return WrongArity("latency", sub, r);
    const auto it = latency_.events().find(a[2]);
    if (it == latency_.events().end()) return r.Array(0);
    r.Array(it->second.history.size());
    for (const LatencySample& s : it->second.history) {
      r.Array(2);
      r.Integer(s.time_s);
      r.Integer(s.ms);
    }
    return;
  }
  if (sub == "reset") {
    return r.Integer(static_cast<std::int64_t>(latency_.Reset(std::vector<std::string>(a.begin() + 2, a.end()))));
  }
  if (sub == "malloc-stats") {
    if (a.size() != 2) return WrongArity("memory", sub, r);
    return r.Bulk(store_.MallocStats());
  }
  if (sub == "doctor") {
    std::string text;
    for (const auto& [name, e] : latency_.events()) {
      absl::StrAppend(&text, name, ": ", e.history.size(), " latency spikes, worst ", e.max_ms, " ms\n");
    }
    return r.Bulk(text.empty() ? "No latency events recorded (latency-monitor-threshold is "
                                     + absl::StrCat(config_.latency_monitor_threshold) + " ms).\n"
                               : text);
  }
  if (sub == "help") {
    return Help("latency", {"LATEST", "    Return the latest latency samples for all events.", "HISTORY <event>",
                            "    Return latency samples for the specified event.", "RESET [<event> ...]",
                            "    Reset latency data of one or more <event> classes.", "DOCTOR",
                            "    Return a human readable latency analysis report."},
                r);
  }
  UnknownSubcommand("latency", a[1], r);
}

}  // namespace mova::kv
