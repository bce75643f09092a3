// mova-kv/config.h — the server's settings, under Redis's names, as CONFIG GET / SET and the command line see
// them.
//
// Types: EvictionPolicy, ServerConfig; ParseMemory (Redis's memory values: 100mb, 1gb, 4096).
// ServerConfig::Get lists "name value" pairs whose names match a glob; Set checks and applies one; the values
// are printed as Redis prints them (bytes as integers, booleans as yes / no). Persistence is not kept: `save`
// reads "" and `appendonly` "no", and only those values can be set.
#ifndef MOVA_KV_CONFIG_H_
#define MOVA_KV_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mova::kv {

enum class EvictionPolicy { kNoEviction, kAllKeysLru, kAllKeysRandom };

// "100mb" (2^20), "1gb" (2^30), "10k" (1000), "10kb" (1024), "4096"; kInvalidArgument otherwise.
absl::StatusOr<std::uint64_t> ParseMemory(std::string_view text);

struct ServerConfig {
  std::uint64_t maxmemory = 0;  // 0: no limit
  EvictionPolicy maxmemory_policy = EvictionPolicy::kNoEviction;
  int maxmemory_samples = 5;
  bool activedefrag = false;
  std::uint64_t active_defrag_ignore_bytes = std::uint64_t{100} << 20;
  int active_defrag_threshold_lower = 10;  // percent of fragmentation where defragmentation starts
  int active_defrag_threshold_upper = 100; // where it runs at its most
  int active_defrag_cycle_min = 1;         // percent of a CPU, least and most
  int active_defrag_cycle_max = 25;
  std::uint64_t proto_max_bulk_len = std::uint64_t{512} << 20;
  std::uint64_t client_query_buffer_limit = std::uint64_t{1} << 30;
  int hz = 10;
  std::int64_t latency_monitor_threshold = 0;  // ms; 0: latency events are not recorded
  std::string bind = "127.0.0.1";
  int port = 6379;

  // The "name", "value" pairs of the parameters matching `pattern` (case-insensitive), in table order.
  std::vector<std::pair<std::string, std::string>> Get(std::string_view pattern) const;
  // Sets one parameter; the error is the text after "ERR " of Redis's reply.
  absl::Status Set(std::string_view name, std::string_view value);
};

}  // namespace mova::kv

#endif  // MOVA_KV_CONFIG_H_
