// mova-kv/latency_monitor.h — Redis's latency monitor: per event, the last 160 samples (one a second at most,
// the largest kept) and the all-time maximum; LATENCY LATEST / HISTORY / RESET read it.
//
// Types: LatencyMonitor, LatencySample, LatencyEvent. Single-threaded (the server's thread).
#ifndef MOVA_KV_LATENCY_MONITOR_H_
#define MOVA_KV_LATENCY_MONITOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mova::kv {

struct LatencySample {
  std::int64_t time_s = 0;  // unix time
  std::int64_t ms = 0;
};

struct LatencyEvent {
  std::deque<LatencySample> history;  // oldest first, at most kHistory
  std::int64_t max_ms = 0;
};

class LatencyMonitor {
 public:
  static constexpr std::size_t kHistory = 160;  // LATENCY_TS_LEN

  // Records `ms` for `event` if `threshold_ms` is on (> 0) and `ms` reaches it, as latencyAddSampleIfNeeded.
  void AddIfNeeded(std::string_view event, std::int64_t ms, std::int64_t threshold_ms, std::int64_t now_s);
  const std::map<std::string, LatencyEvent, std::less<>>& events() const { return events_; }
  // Resets the named events (all when `names` is empty); returns how many were reset.
  std::size_t Reset(const std::vector<std::string>& names);

 private:
  std::map<std::string, LatencyEvent, std::less<>> events_;
};

}  // namespace mova::kv

#endif  // MOVA_KV_LATENCY_MONITOR_H_
