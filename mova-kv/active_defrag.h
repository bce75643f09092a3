// mova-kv/active_defrag.h — `activedefrag yes`: defragmentation passes of the object store on a thread of their
// own, started by the server's cron when fragmentation passes Redis's thresholds, in cycles of a bounded time
// (Redis's active-defrag cycle), paced to the CPU budget.
//
// Types: ActiveDefrag, DefragCycle.
// The server's thread decides (Trigger, from its cron, with the figures it read) and collects the finished
// cycles (TakeFinished) to record them as `active-defrag-cycle` latency events; the thread only runs
// ObjectStore::Defragment, a step at a time, which the store lets run beside the server's reads and writes (a
// mova pool moves an object only while nobody has it pinned, and holds a size class's lock at most one cycle).
// Pacing: a pass is cycles of at most the budget Trigger gave (Redis's: p% of one cron period); after a cycle
// of t ms at p percent of one CPU, the thread rests t·(100 − p)/p ms — active-defrag-cycle-max is p at
// threshold-upper and beyond, cycle-min at threshold-lower, in between in proportion, as Redis's
// computeDefragCycles does.
// Lock order: mu_ only (mova's pthread Mutex: ThreadSanitizer sees it, and it pays no deadlock detector).
#ifndef MOVA_KV_ACTIVE_DEFRAG_H_
#define MOVA_KV_ACTIVE_DEFRAG_H_

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"
#include "mova-kv/object_store.h"

namespace mova::kv {

struct DefragCycle {
  std::int64_t end_unix_s = 0;
  double ms = 0;
  DefragPass pass;
};

class ActiveDefrag {
 public:
  explicit ActiveDefrag(ObjectStore& store);
  ~ActiveDefrag();  // stops the thread after the pass under way
  ActiveDefrag(const ActiveDefrag&) = delete;
  ActiveDefrag& operator=(const ActiveDefrag&) = delete;

  // Asks for a pass at `cpu_percent` of one CPU in cycles of at most `cycle_budget` (zero: one cycle, the
  // whole pass); ignored while a pass runs.
  void Trigger(int cpu_percent, std::chrono::microseconds cycle_budget);
  bool running() const;
  std::vector<DefragCycle> TakeFinished();

  std::uint64_t cycles() const;

 private:
  void Loop();

  ObjectStore& store_;
  mutable Mutex mu_;
  CondVar cv_;  // a request, a stop
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // a pass runs (its cycles and the rests between them)
  int requested_percent_ ABSL_GUARDED_BY(mu_) = 0;  // 0: nothing asked
  std::chrono::microseconds cycle_budget_ ABSL_GUARDED_BY(mu_){0};
  std::vector<DefragCycle> finished_ ABSL_GUARDED_BY(mu_);
  std::uint64_t cycles_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace mova::kv

#endif  // MOVA_KV_ACTIVE_DEFRAG_H_
