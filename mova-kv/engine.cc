// mova-kv/engine.cc — see engine.h: dispatch, eviction and the cron. The error texts are Redis's (server.c).
#include "mova-kv/absl_view.h"
#include "mova-kv/engine.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace mova::kv {

Engine::Engine(ObjectStore& store, ServerConfig config)
    : store_(store), config_(std::move(config)), keyspace_(store), started_(absl::Now()) {
  for (const CommandSpec& spec : CommandTable()) commands_[std::string(spec.name)] = &spec;
  keyspace_.set_now_ms(absl::ToUnixMillis(absl::Now()));
}

Engine::~Engine() { defrag_.reset(); }

ParseLimits Engine::parse_limits() const {
  ParseLimits l;
  l.max_bulk_len = config_.proto_max_bulk_len;
  return l;
}

std::uint64_t Engine::OnConnect() {
  ++connected_clients_;
  ++total_connections_;
  return next_client_id_++;
}

void Engine::Execute(Client& client, std::vector<std::string>& args, std::string* out) {
  Reply r(out);
  if (args.empty()) return;
  const std::string name = absl::AsciiStrToLower(args[0]);
  const auto it = commands_.find(name);
  if (it == commands_.end()) {
    std::string shown;
    for (std::size_t i = 1; i < args.size() && shown.size() < 128; ++i) {
      absl::StrAppend(&shown, "'", Av(std::string_view(args[i]).substr(0, 128 - shown.size())), "' ");
    }
    r.Error(absl::StrFormat("ERR unknown command '%s', with args beginning with: %s",
                            std::string_view(args[0]).substr(0, 128), shown));
    return;
  }
  const CommandSpec& spec = *it->second;
  const int argc = static_cast<int>(args.size());
  if ((spec.arity > 0 && argc != spec.arity) || argc < -spec.arity) {
    r.Error(absl::StrFormat("ERR wrong number of arguments for '%s' command", spec.name));
    return;
  }
  ++total_commands_;
  keyspace_.set_now_ms(absl::ToUnixMillis(absl::Now()));
  if (config_.maxmemory > 0 && !PerformEvictions() && spec.denyoom()) {
    ++oom_rejections_;
    r.Error("OOM command not allowed when used memory > 'maxmemory'.");
    return;
  }
  (this->*spec.handler)(client, args, r);
  used_memory_peak_ = std::max(used_memory_peak_, keyspace_.used_memory());
}

bool Engine::PerformEvictions() {
  while (keyspace_.used_memory() > config_.maxmemory) {
    bool evicted = false;
    switch (config_.maxmemory_policy) {
      case EvictionPolicy::kNoEviction: return false;
      case EvictionPolicy::kAllKeysLru: evicted = keyspace_.EvictLru(config_.maxmemory_samples); break;
      case EvictionPolicy::kAllKeysRandom: evicted = keyspace_.EvictRandom(); break;
    }
    if (!evicted) return false;
  }
  return true;
}

void Engine::ReplyStoreError(const absl::Status& s, Reply& r) {
  if (absl::IsResourceExhausted(s)) {
    ++oom_rejections_;
    r.Error("OOM command not allowed when used memory > 'maxmemory'.");
  } else {
    r.Error(absl::StrCat("ERR internal error: ", s.message()));
  }
}

void Engine::Cron() {
  ++cron_runs_;
  keyspace_.set_now_ms(absl::ToUnixMillis(absl::Now()));
  // Active expiry with a quarter of the cron period, as ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC.
  keyspace_.ActiveExpireCycle(1000000 / config_.hz / 4);
  used_memory_peak_ = std::max(used_memory_peak_, keyspace_.used_memory());
  CollectDefragCycles();
  MaybeStartDefrag();
}

void Engine::MaybeStartDefrag() {
  if (!config_.activedefrag || !store_.CanDefragment()) return;
  if (defrag_ == nullptr) defrag_ = std::make_unique<ActiveDefrag>(store_);
  if (defrag_->running()) return;
  // Redis's thresholds, on the allocator's figures: the bytes the allocator holds for objects beyond those it
  // handed out, in percent of these, and in bytes.
  const AllocatorReport a = store_.Report();
  if (a.allocated == 0 || a.active <= a.allocated) return;
  const std::uint64_t frag_bytes = a.active - a.allocated;
  const double frag_pct = 100.0 * static_cast<double>(frag_bytes) / static_cast<double>(a.allocated);
  if (frag_pct < config_.active_defrag_threshold_lower || frag_bytes < config_.active_defrag_ignore_bytes) return;
  const int lower = config_.active_defrag_threshold_lower, upper = std::max(config_.active_defrag_threshold_upper, lower + 1);
  const double t = std::clamp((frag_pct - lower) / (upper - lower), 0.0, 1.0);
  const int cpu = static_cast<int>(config_.active_defrag_cycle_min +
                                   t * (config_.active_defrag_cycle_max - config_.active_defrag_cycle_min));
  defrag_cpu_percent_ = std::max(cpu, 1);
  // Redis's cycle: that share of one cron period (at hz 10 and 25%, 25 ms; at hz 100 and 75%, 7.5 ms).
  store_.ReleaseThreadCache();
  defrag_->Trigger(defrag_cpu_percent_, std::chrono::microseconds(1000000 * defrag_cpu_percent_ / config_.hz / 100));
}

void Engine::CollectDefragCycles() {
  if (defrag_ == nullptr) return;
  for (const DefragCycle& cycle : defrag_->TakeFinished()) {
    defrag_last_ms_ = cycle.ms;
    defrag_last_compact_ms_ = cycle.pass.compact_ms;
    defrag_last_migrate_ms_ = cycle.pass.migrate_ms;
    defrag_last_handles_ms_ = cycle.pass.handles_ms;
    defrag_longest_ms_ = std::max(defrag_longest_ms_, cycle.ms);
    defrag_hits_ += cycle.pass.objects_moved + cycle.pass.blocks_migrated + cycle.pass.handles_migrated;
    latency_.AddIfNeeded("active-defrag-cycle", static_cast<std::int64_t>(cycle.ms),
                         config_.latency_monitor_threshold, cycle.end_unix_s);
  }
}

}  // namespace mova::kv
