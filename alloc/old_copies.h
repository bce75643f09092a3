// alloc/old_copies.h — the places objects were moved away from while read sections may still be reading them
// (migrc's read-only source copies, in user space): kept unchanged until every section that could have loaded
// them has ended, then given back in batches.
//
// Types: OldCopies, OldCopies::Taken. Two kinds of place: a class slot, which stays reserved in its block (as a
// thread cache's slot does, so the block stays too) until its class takes it back; and a page run — a block or
// a huge object moved whole — whose pages go back to the arena. Each batch of places is stamped with the read
// epoch after its publishes (handles/access_records.h: NextReadEpoch), so the lists are in stamp order and a
// reclaim takes a prefix of each.
// Keeping starts with a pool's first read section (Keep) and never ends: a pool that never had one gives
// places back at once, exactly as before, and pays nothing here.
// Invariants (under mu_): stamps are non-decreasing along each list; pending_bytes_ == Σ bytes of the places
// listed.
// Locks: mu_ is a leaf. AddSlots is called under a class lock; ReleaseRun frees into the arena without mu_;
// Take's caller gives the places back after it returns, without mu_ (the class lock, Arena::Free the arena's).
#ifndef MOVA_ALLOC_OLD_COPIES_H_
#define MOVA_ALLOC_OLD_COPIES_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "alloc/arena.h"
#include "alloc/block.h"
#include "base/mutex.h"
#include "handles/access_records.h"
#include "mova/units.h"

namespace mova::alloc {

class OldCopies {
 public:
  OldCopies(handles::AccessRecords& records, Arena& arena) : records_(records), arena_(arena) {}
  OldCopies(const OldCopies&) = delete;
  OldCopies& operator=(const OldCopies&) = delete;

  // Whether movers keep old places (the pool has had a read section).
  bool keeping() const { return keeping_.load(std::memory_order_acquire); }
  void Keep() { keeping_.store(true, std::memory_order_release); }

  // Slots of class `cls` (each `slot_size` bytes) whose objects were just published elsewhere: stamped after
  // those publishes.
  void AddSlots(std::uint32_t cls, std::span<const SlotRef> slots, Bytes slot_size) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    const std::uint64_t stamp = records_.NextReadEpoch();
    const auto bytes = static_cast<std::uint32_t>(slot_size.value());
    for (const SlotRef r : slots) slots_.push_back(Slot{r, stamp, cls, bytes});
    pending_bytes_.fetch_add(slots.size() * slot_size.value(), std::memory_order_relaxed);
  }
  // A run whose block or huge object was just published elsewhere.
  void AddRun(PageRun run) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    runs_.push_back(Run{run, records_.NextReadEpoch()});
    pending_bytes_.fetch_add(ToBytes(Pages(run.count)).value(), std::memory_order_relaxed);
  }

  // A run a movable-block driver lets go of (its Release): kept if a move took its block or huge object away
  // and the pool keeps old copies, else back to the arena at once.
  void ReleaseRun(PageRun run, bool moved_away) ABSL_LOCKS_EXCLUDED(mu_) {
    if (moved_away && keeping()) {
      AddRun(run);
    } else {
      arena_.Free(run);
    }
  }

  bool empty() const { return pending_bytes_.load(std::memory_order_relaxed) == 0; }
  Bytes pending() const { return Bytes(pending_bytes_.load(std::memory_order_relaxed)); }

  struct Taken {
    std::vector<std::pair<std::uint32_t, SlotRef>> slots;  // (class, slot)
    std::vector<PageRun> runs;
    Bytes bytes{0};
    bool empty() const { return slots.empty() && runs.empty(); }
  };
  // The places stamped below `safe` (AccessRecords::SafeReadEpoch), off the lists; the caller gives them back.
  Taken Take(std::uint64_t safe) ABSL_LOCKS_EXCLUDED(mu_) {
    Taken t;
    MutexLock lock(&mu_);
    std::uint64_t bytes = 0;
    while (!slots_.empty() && slots_.front().stamp < safe) {
      t.slots.emplace_back(slots_.front().cls, slots_.front().ref);
      bytes += slots_.front().bytes;
      slots_.pop_front();
    }
    while (!runs_.empty() && runs_.front().stamp < safe) {
      t.runs.push_back(runs_.front().run);
      bytes += ToBytes(Pages(runs_.front().run.count)).value();
      runs_.pop_front();
    }
    pending_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    t.bytes = Bytes(bytes);
    return t;
  }

 private:
  struct Slot {
    SlotRef ref;
    std::uint64_t stamp;
    std::uint32_t cls;
    std::uint32_t bytes;  // the class's slot size
  };
  struct Run {
    PageRun run;
    std::uint64_t stamp;
  };

  handles::AccessRecords& records_;
  Arena& arena_;
  std::atomic<bool> keeping_{false};
  std::atomic<std::uint64_t> pending_bytes_{0};
  Mutex mu_;
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::deque<Run> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_OLD_COPIES_H_
