// mova-kv/latency_monitor.cc — see latency_monitor.h.
#include "mova-kv/latency_monitor.h"

#include <algorithm>

namespace mova::kv {

void LatencyMonitor::AddIfNeeded(std::string_view event, std::int64_t ms, std::int64_t threshold_ms,
                                 std::int64_t now_s) {
  if (threshold_ms <= 0 || ms < threshold_ms) return;
  auto it = events_.find(event);
  if (it == events_.end()) it = events_.emplace(std::string(event), LatencyEvent{}).first;
  LatencyEvent& e = it->second;
  e.max_ms = std::max(e.max_ms, ms);
  if (!e.history.empty() && e.history.back().time_s == now_s) {
    e.history.back().ms = std::max(e.history.back().ms, ms);  // one sample a second: the largest
    return;
  }
  e.history.push_back({now_s, ms});
  if (e.history.size() > kHistory) e.history.pop_front();
}

std::size_t LatencyMonitor::Reset(const std::vector<std::string>& names) {
  if (names.empty()) {
    const std::size_t n = events_.size();
    events_.clear();
    return n;
  }
  std::size_t n = 0;
  for (const std::string& name : names) n += events_.erase(name);
  return n;
}

}  // namespace mova::kv
