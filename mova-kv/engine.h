// mova-kv/engine.h — the server without the network: runs one request of one client and writes its reply;
// its cron does what Redis's serverCron does (active expiry, the LRU clock, active defragmentation, stats).
//
// Types: Client, Engine, CommandSpec.
// Engine owns the keyspace and the settings, and borrows the object store. Requests come one at a time on
// the server's thread (Execute, Cron); only the active defragmenter's thread works beside it, on the store.
// Command handlers are Engine's members, grouped by concept in commands_*.cc; the table of commands (names,
// arities, flags, key positions, handlers) is command_table.cc, and COMMAND answers from it.
// Before a command runs with maxmemory set, keys are evicted by the policy until used_memory fits; a command
// flagged denyoom gets Redis's OOM error when they cannot be.
#ifndef MOVA_KV_ENGINE_H_
#define MOVA_KV_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "mova-kv/active_defrag.h"
#include "mova-kv/config.h"
#include "mova-kv/keyspace.h"
#include "mova-kv/latency_monitor.h"
#include "mova-kv/object_store.h"
#include "mova-kv/reply.h"
#include "mova-kv/resp_parser.h"

namespace mova::kv {

// One connection's state, as the engine sees it.
struct Client {
  std::uint64_t id = 0;
  std::string name;
  std::string addr;                // "127.0.0.1:51234"
  bool close_after_reply = false;  // QUIT, or a protocol error
  absl::Time created;
};

class Engine;

struct CommandSpec {
  using Handler = void (Engine::*)(Client&, std::vector<std::string>&, Reply&);
  std::string_view name;
  int arity;                // Redis's: n exactly, -n at least n (the name counts)
  std::string_view flags;   // Redis's flag names, space-separated: write, readonly, denyoom, fast, ...
  int first_key, last_key, key_step;
  Handler handler;
  bool denyoom() const { return flags.find("denyoom") != std::string_view::npos; }
};

// The command table (command_table.cc), in the order COMMAND lists it.
const std::vector<CommandSpec>& CommandTable();

class Engine {
 public:
  Engine(ObjectStore& store, ServerConfig config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs `args` (args[0] the command's name) for `client` and appends its reply to `*out`.
  void Execute(Client& client, std::vector<std::string>& args, std::string* out);
  // Redis's serverCron: the server calls it config().hz times a second.
  void Cron();

  const ServerConfig& config() const { return config_; }
  void set_port(int port) { config_.port = port; }
  ParseLimits parse_limits() const;
  bool shutdown_requested() const { return shutdown_requested_; }
  Keyspace& keyspace() { return keyspace_; }

  // Connections, for INFO clients.
  std::uint64_t OnConnect();
  void OnDisconnect() { --connected_clients_; }
  std::int64_t connected_clients() const { return connected_clients_; }
  void OnRejectedConnection() { ++rejected_connections_; }

  // used_memory as INFO prints it.
  std::uint64_t used_memory() const { return keyspace_.used_memory(); }

  // Handlers (command_table.cc points at them).
#define MOVA_KV_HANDLER(name) void name(Client& c, std::vector<std::string>& a, Reply& r)
  // Strings: commands_strings.cc
  MOVA_KV_HANDLER(Get);
  MOVA_KV_HANDLER(Set);
  MOVA_KV_HANDLER(SetNx);
  MOVA_KV_HANDLER(SetEx);
  MOVA_KV_HANDLER(PSetEx);
  MOVA_KV_HANDLER(GetSet);
  MOVA_KV_HANDLER(MGet);
  MOVA_KV_HANDLER(MSet);
  MOVA_KV_HANDLER(Incr);
  MOVA_KV_HANDLER(Decr);
  MOVA_KV_HANDLER(IncrBy);
  MOVA_KV_HANDLER(DecrBy);
  MOVA_KV_HANDLER(Append);
  MOVA_KV_HANDLER(StrLen);
  // Keys: commands_keys.cc
  MOVA_KV_HANDLER(Del);
  MOVA_KV_HANDLER(Exists);
  MOVA_KV_HANDLER(Expire);
  MOVA_KV_HANDLER(PExpire);
  MOVA_KV_HANDLER(Ttl);
  MOVA_KV_HANDLER(PTtl);
  MOVA_KV_HANDLER(Persist);
  MOVA_KV_HANDLER(Type);
  MOVA_KV_HANDLER(DbSize);
  MOVA_KV_HANDLER(FlushAll);
  MOVA_KV_HANDLER(Select);
  // Connection and server: commands_server.cc
  MOVA_KV_HANDLER(Ping);
  MOVA_KV_HANDLER(Echo);
  MOVA_KV_HANDLER(Quit);
  MOVA_KV_HANDLER(Shutdown);
  MOVA_KV_HANDLER(ClientCmd);
  MOVA_KV_HANDLER(CommandCmd);
  MOVA_KV_HANDLER(ConfigCmd);
  MOVA_KV_HANDLER(Info);
  MOVA_KV_HANDLER(MemoryCmd);
  MOVA_KV_HANDLER(DebugCmd);
  MOVA_KV_HANDLER(LatencyCmd);
#undef MOVA_KV_HANDLER

 private:
  // Shared by the string commands: SET with its options; INCRBY by `delta`.
  void SetGeneric(std::string_view key, std::string_view value, std::int64_t expire_ms, bool nx, bool xx,
                  bool keep_ttl, bool get, Reply& r);
  void IncrGeneric(std::string_view key, std::int64_t delta, Reply& r);
  // The absolute expiry (ms since the epoch) that `amount` names in units of `unit_ms` (relative to now unless
  // `absolute`), or nothing after an error reply: not an integer, or "invalid expire time in '<command>'" when
  // it overflows, or is zero or negative where `allow_past` is false (SET, SETEX, PSETEX; EXPIRE allows it).
  std::optional<std::int64_t> ExpiryOf(std::string_view amount, std::int64_t unit_ms, bool absolute, bool allow_past,
                                       std::string_view command, Reply& r);
  void ExpireGeneric(std::vector<std::string>& a, std::int64_t unit_ms, std::string_view command, Reply& r);
  // Writes the value under `key`, replacing any value; the expiry is cleared unless `keep_ttl`. The entry, or
  // nothing after an error reply (out of memory).
  std::optional<Keyspace::Index> Store(std::string_view key, std::span<const std::string_view> value_parts,
                                       bool keep_ttl, Reply& r);
  // The same, for a key already looked up (`found`: its entry, or none).
  std::optional<Keyspace::Index> StoreAt(std::optional<Keyspace::Index> found, std::string_view key,
                                         std::span<const std::string_view> value_parts, bool keep_ttl, Reply& r);
  void TtlGeneric(std::string_view key, std::int64_t unit_ms, Reply& r);
  // Evicts until used_memory fits maxmemory; false when it cannot (noeviction, or nothing left).
  bool PerformEvictions();
  std::string InfoText(std::string_view section);
  void ReplyStoreError(const absl::Status& s, Reply& r);
  void MaybeStartDefrag();
  void CollectDefragCycles();

  ObjectStore& store_;
  ServerConfig config_;
  Keyspace keyspace_;
  LatencyMonitor latency_;
  std::unique_ptr<ActiveDefrag> defrag_;
  absl::flat_hash_map<std::string, const CommandSpec*> commands_;
  absl::Time started_;
  bool shutdown_requested_ = false;
  std::uint64_t next_client_id_ = 1;
  std::int64_t connected_clients_ = 0;
  std::uint64_t total_connections_ = 0;
  std::uint64_t rejected_connections_ = 0;
  std::uint64_t total_commands_ = 0;
  std::uint64_t keyspace_hits_ = 0;
  std::uint64_t keyspace_misses_ = 0;
  std::uint64_t used_memory_peak_ = 0;
  std::uint64_t oom_rejections_ = 0;
  int defrag_cpu_percent_ = 0;
  double defrag_longest_ms_ = 0;
  double defrag_last_ms_ = 0;
  double defrag_last_compact_ms_ = 0;  // of the last cycle: compaction, block migration, handle compaction
  double defrag_last_migrate_ms_ = 0;
  double defrag_last_handles_ms_ = 0;
  std::uint64_t defrag_hits_ = 0;
  std::uint64_t cron_runs_ = 0;
};

}  // namespace mova::kv

#endif  // MOVA_KV_ENGINE_H_
