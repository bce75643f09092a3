// mova/stats.h — what a pool reports: totals, the per-class table (zsmalloc's debugfs `classes`), and what
// compaction did. Rendered as a human table (FormatStatsText) or JSON (FormatStatsJson).
//
// Types: ClassStats, PoolStats, CompactResult. All byte counts are bytes; "resident" counts pages the pool
// has made present and not given back. Totals add up:
//   resident_bytes == block_bytes + huge_bytes + dirty_bytes + handle_table_bytes + metadata_bytes
// Snapshots taken while other threads allocate are approximate; they are exact when the pool is quiet.
#ifndef MOVA_STATS_H_
#define MOVA_STATS_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "mova/export.h"

namespace mova {

inline constexpr int kFullnessGroups = 12;  // empty, (0,10%], ..., (90%,100%), full

struct ClassStats {
  std::uint32_t slot_size = 0;
  std::uint32_t pages_per_block = 0;
  std::uint32_t objects_per_block = 0;
  std::uint64_t blocks = 0;
  std::uint64_t block_pages = 0;     // pages of those blocks: blocks × pages_per_block, less the tails that
                                     // compaction cut off partly filled blocks (compact())
  std::uint64_t objects_in_use = 0;  // live objects
  std::uint64_t objects_cached = 0;  // free slots held by thread caches
  std::array<std::uint64_t, kFullnessGroups> fullness{};  // blocks per fullness group
};

struct CompactResult {
  std::uint64_t objects_moved = 0;
  std::uint64_t bytes_moved = 0;
  std::uint64_t blocks_released = 0;
  std::uint64_t pages_released = 0;
  std::uint64_t objects_skipped = 0;  // pinned or busy objects left in place
  std::uint64_t blocks_skipped = 0;   // blocks left because a thread cache held one of their slots
  std::uint64_t handles_migrated = 0;       // owned handle entries moved into dense table pages (a whole
  std::uint64_t handle_pages_released = 0;  // call ends with compact_handles()), and table pages given back
  double seconds = 0;
  bool complete = true;  // false: a PassBudget ran out first; the next call goes on where this one stopped
};

// What one defragment() did: whole blocks moved from sparse high regions into room in lower ones.
struct DefragResult {
  std::uint64_t regions_scanned = 0;  // regions whose blocks were considered
  std::uint64_t blocks_isolated = 0;
  std::uint64_t isolate_failed = 0;   // blocks left in place: a pinned object, a slot in a thread cache, busy
  std::uint64_t blocks_migrated = 0;  // including blocks freed while isolated
  std::uint64_t blocks_failed = 0;    // isolated but put back: no room below, or still busy after the retries
  std::uint64_t regions_freed = 0;    // regions that held blocks before and none after
  std::uint64_t huge_migrated = 0;    // huge objects moved (counted in blocks_migrated too)
  std::uint64_t pages_moved = 0;      // pages of the blocks and huge objects migrated
  std::uint64_t moves_uffd = 0;       // of the moves: by UFFDIO_MOVE (zero-copy)
  std::uint64_t moves_mremap = 0;     //               by mremap (huge objects, no UFFDIO_MOVE)
  std::uint64_t moves_copy = 0;       //               by memcpy (fallbacks included)
  std::uint64_t regions_collapsed = 0;  // full regions put on transparent huge pages (collapse_dense_regions)
  double seconds = 0;
  bool complete = true;  // false: a PassBudget ran out first; the next call goes on with the regions left
};

// What one compact_handles() did (mova/handle_owner.h): owned entries moved out of sparse handle-table pages.
struct HandleCompactResult {
  std::uint64_t cells_owned = 0;        // cells holding a handle of this pool, over all registered owners
                                        // (0 until a count is complete: budgeted calls count across calls)
  std::uint64_t cells_counted = 0;      // cells this call counted toward its plan
  std::uint64_t pages_evacuated = 0;    // table pages chosen to be emptied
  std::uint64_t entries_isolated = 0;
  std::uint64_t isolate_failed = 0;     // pinned, moving, or refused by the owner
  std::uint64_t entries_migrated = 0;   // including those freed while isolated
  std::uint64_t freed_while_isolated = 0;
  std::uint64_t again = 0;              // retries: kAgain answers, claims a pin or free stood in the way of
  std::uint64_t put_back = 0;           // isolated and left in place
  std::uint64_t pages_released = 0;     // table pages given back
  double seconds = 0;
  bool complete = true;  // false: a PassBudget ran out before every cell was counted and visited; call again
};

// What relocate() did with one of the handles it was given (Pool::relocate).
enum class RelocateOutcome : std::uint8_t {
  kMoved,      // the object now sits in a fresh block, after those of its size class named before it
  kPinned,     // pinned (a counted pin, a pin_owned pin), or a free of it under way: left where it is
  kBusy,       // another mover had it, or the list named it before: left where it is
  kStale,      // its object was freed: nothing done
  kNotIssued,  // not a handle of this pool (null, forged, corrupted, another pool's): nothing done
  kHuge,       // a huge object: it has pages of its own, nothing to gather
  kNoMemory,   // no fresh block could be made (memory limit, arena full): left where it is
};

// What one relocate() did: the outcomes counted, and the blocks it filled and emptied.
struct RelocateResult {
  std::uint64_t moved = 0;
  std::uint64_t bytes_moved = 0;      // slot bytes copied
  std::uint64_t pinned = 0;
  std::uint64_t busy = 0;
  std::uint64_t stale = 0;
  std::uint64_t not_issued = 0;
  std::uint64_t huge = 0;
  std::uint64_t no_memory = 0;
  std::uint64_t blocks_filled = 0;    // fresh blocks the moved objects were gathered into
  std::uint64_t blocks_emptied = 0;   // blocks the moves emptied (given back, or kept as a class's spare);
                                      // in a pool with read sections, those whose old copies went back by the end
  double seconds = 0;
};

// How long one compact() or defragment() call may work: it stops at the first point where it can after
// `time` has passed, and says so in its result's `complete`. compact() stops after a batch of object moves
// (or between classes) once it has moved something, so a call that finds nothing to move is complete;
// defragment() stops after a region of block moves, at least one region a call, and the next call goes on
// with the regions below it. Either way a sequence of calls ends with a complete one. Zero: no limit. A class's lock is held at most that long plus one batch, so a
// service that compacts in small steps (Redis's active-defrag cycle) bounds what an allocation may wait.
struct PassBudget {
  std::chrono::microseconds time{0};
};

struct PoolStats {
  // Objects.
  std::uint64_t live_bytes = 0;         // bytes requested and not yet freed
  std::uint64_t live_objects = 0;
  std::uint64_t slot_bytes = 0;         // bytes of the slots live class objects occupy
  std::uint64_t huge_objects = 0;
  // Memory, resident.
  std::uint64_t block_bytes = 0;        // pages of class blocks
  std::uint64_t huge_bytes = 0;         // pages of huge objects
  std::uint64_t dirty_bytes = 0;        // freed pages kept resident for the decay delay
  std::uint64_t handle_table_bytes = 0; // the price of movability: resident handle-table pages
  std::uint64_t metadata_bytes = 0;     // page map; handle-table page keys, records and page states; the pool's
                                        // structures on the heap (size classes made, access records, caches)
  std::uint64_t resident_bytes = 0;     // the sum of the five above
  // Handles.
  std::uint64_t handles_in_use = 0;     // live handles plus entries cached by threads
  std::uint64_t handle_table_pages_peak = 0;
  std::uint64_t handles_rested = 0;     // entries past their last generation, waiting for their page to empty
  std::uint64_t handle_pages_rekeyed = 0;  // table pages that took a new key (cumulative)
  // Handle compaction (compact_handles, mova/handle_owner.h), cumulative but handles_owned.
  std::uint64_t handle_compactions = 0;
  std::uint64_t handles_owned = 0;         // cells the owners held at the last compact_handles()
  std::uint64_t handles_migrated = 0;      // entries moved (freed while isolated included)
  std::uint64_t handles_freed_while_isolated = 0;
  std::uint64_t handle_isolate_failed = 0;
  std::uint64_t handles_put_back = 0;
  std::uint64_t handle_pages_evacuated = 0;  // table pages emptied by handle compaction and given back
  // Arena.
  std::uint64_t regions_in_use = 0;
  std::uint64_t regions_touched = 0;
  std::uint64_t populate_calls = 0;     // Os::Populate calls for object pages (MADV_POPULATE_WRITE), cumulative
  std::uint64_t discard_calls = 0;      // system calls that discarded object pages (MADV_DONTNEED), cumulative
  std::uint64_t discard_runs = 0;       // runs of object pages discarded (one process_madvise takes up to 1024)
  // Compaction, cumulative.
  std::uint64_t compactions = 0;
  std::uint64_t objects_moved = 0;
  std::uint64_t bytes_moved = 0;
  std::uint64_t pages_compacted = 0;    // pages released by compaction
  std::uint64_t direct_compactions = 0;  // compactions an allocation ran (PoolOptions::direct_compaction)
  // Thread caches emptied for threads not in a call when compact() or defragment() recalled the caches (a
  // thread gone idle would otherwise keep its cached slots, and their blocks, until its next call).
  std::uint64_t thread_caches_stolen = 0;
  std::uint64_t relocations = 0;        // relocate() calls
  std::uint64_t objects_relocated = 0;  // objects they moved
  std::uint64_t discard_failures = 0;   // runs whose MADV_DONTNEED failed (pages kept and retried)
  // Read sections (ReadGuard): old places of moved objects kept until the sections that may read them end.
  bool keeping_old_copies = false;      // the pool has had a read section: moves copy and keep their sources
  std::uint64_t old_copy_bytes = 0;     // kept now (slots, and runs of blocks and huge objects), resident
  std::uint64_t old_copies_freed = 0;   // places given back after their grace period, cumulative
  std::uint64_t old_copy_bytes_freed = 0;
  std::uint64_t old_copies_freed_under_pressure = 0;  // ... of them at once, for an allocation short of memory
  // Block migration (defragment()), cumulative, like the kernel's compact_* vmstat lines.
  std::uint64_t defrag_runs = 0;
  std::uint64_t blocks_scanned = 0;        // isolation attempts
  std::uint64_t blocks_isolated = 0;
  std::uint64_t blocks_migrated = 0;
  std::uint64_t blocks_migrate_failed = 0;
  std::uint64_t regions_freed = 0;
  std::uint64_t huge_migrated = 0;
  // The move engine, cumulative: which way pages moved (see PoolOptions::move_by_*).
  bool userfaultfd_ready = false;          // UFFDIO_MOVE usable in this process (not in a forked child)
  bool stale_touch_watch = false;          // checked mode: a touch of a page not in use aborts with a report
  std::uint64_t moves_uffd = 0;
  std::uint64_t moves_mremap = 0;
  std::uint64_t moves_copy = 0;
  std::uint64_t bytes_moved_uffd = 0;
  std::uint64_t bytes_moved_mremap = 0;
  std::uint64_t bytes_moved_copy = 0;
  std::uint64_t uffd_busy_fallbacks = 0;   // pages shared with another process (after fork): memcpy instead
  std::uint64_t uffd_other_fallbacks = 0;
  std::uint64_t uffd_miscounts = 0;        // failed UFFDIO_MOVE calls that had moved more than they counted
  std::uint64_t mremap_fallbacks = 0;      // mremap failed or its budget was spent: memcpy instead
  std::uint64_t regions_collapsed = 0;     // full regions put on transparent huge pages, cumulative
  std::uint64_t collapse_failures = 0;
  // The background compactor (PoolOptions::background_interval).
  bool background_running = false;
  std::uint64_t background_wakeups = 0;
  std::uint64_t background_runs = 0;       // passes started (wakeups that found enough to do)
  std::uint64_t background_runs_complete = 0;  // passes ended (one fewer while a pass runs)
  std::uint64_t background_by_classes = 0;   // ... because of slack in class blocks,
  std::uint64_t background_by_regions = 0;   // ... of blocks and huge objects spread over too many regions,
  std::uint64_t background_by_pressure = 0;  // ... of memory pressure (PSI, cgroup limit)
  std::uint64_t background_by_handles = 0;   // ... of a sparse handle table with owners registered
  std::uint64_t background_cycles = 0;     // bounded cycles the passes ran (PoolOptions::background_cycle)
  std::uint64_t background_cycle_longest_us = 0;
  // Cycle times: element i counts cycles of at most kBackgroundCycleBoundsUs[i] µs, the last longer ones.
  static constexpr std::array<std::uint64_t, 8> kBackgroundCycleBoundsUs = {50, 100, 250, 500, 1000, 2000, 5000, 10000};
  using CycleCounts = std::array<std::uint64_t, kBackgroundCycleBoundsUs.size() + 1>;
  CycleCounts background_cycle_histogram{};
  // The same cycles on the compactor thread's CPU clock: their own work, without the time the scheduler ran
  // other threads on the CPU (on a busy machine the wall times above include such preemptions).
  std::uint64_t background_cycle_longest_cpu_us = 0;
  CycleCounts background_cycle_cpu_histogram{};
  std::uint64_t background_cycles_preempted = 0;  // cycles in which the thread was switched out involuntarily

  std::vector<ClassStats> classes;      // every size class, in size order
};

// A table a person reads: totals, then one row per class that has blocks (all classes if `all_classes`).
MOVA_API std::string FormatStatsText(const PoolStats& s, bool all_classes = false);
// One JSON object: the totals as fields and "classes" as an array of objects.
MOVA_API std::string FormatStatsJson(const PoolStats& s);
// A cycle histogram on one line, as FormatStatsText prints it: " <=50us n <=100us n ... longer n".
MOVA_API std::string FormatCycleCounts(const PoolStats::CycleCounts& counts);

}  // namespace mova

#endif  // MOVA_STATS_H_
