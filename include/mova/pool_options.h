// mova/pool_options.h — how a pool is configured: PoolOptions, their defaults, MOVA_OPTIONS and MOVA_SHOW_STATS.
//
// Types: PoolOptions, StatsOutput; ParsePoolOptions (text → options), ValidatePoolOptions,
// EnvironmentOptionsStatus.
//
// Defaults come in two layers, as jemalloc's MALLOC_CONF and mimalloc's MIMALLOC_* do it: the built-in value
// of each field (written next to it below), overridden by the environment. A PoolOptions starts from the
// environment's defaults, and what the program sets on it wins over both:
//
//   MOVA_OPTIONS="decay_ms=200,checked=true,memory_limit=512m" ./service
//   MOVA_SHOW_STATS=1 ./service          # each pool prints its stats to stderr when it is destroyed (or json)
//
// MOVA_OPTIONS is a comma-separated list of name=value (the names and values ParsePoolOptions takes); the
// environment is read once, at the first PoolOptions made in the process. A bad variable (unknown name, a
// value that is not a number, out of range) is never half applied and never ignored quietly: every
// Pool::Create (and mova_pool_create) fails with kInvalidArgument whose message names the variable, the item
// and why, until the process is started with a good value.
#ifndef MOVA_POOL_OPTIONS_H_
#define MOVA_POOL_OPTIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "mova/export.h"
#include "mova/units.h"

namespace mova {

namespace os {
class Os;
}

// What a pool prints to stderr when it is destroyed.
enum class StatsOutput { kNone = 0, kText = 1, kJson = 2 };  // the numbers are the C API's

struct PoolOptions;

namespace internal {
// The environment's defaults (MOVA_OPTIONS, MOVA_SHOW_STATS applied to the built-in ones), or nullptr while
// they are being made and when the environment is bad.
MOVA_API const PoolOptions* EnvironmentDefaults();
}  // namespace internal

struct PoolOptions {
  // Address space reserved for objects (at most 1 TiB). MOVA_OPTIONS: arena_capacity=64g (k, m, g, t: KiB...).
  Bytes arena_capacity = Default(&PoolOptions::arena_capacity, Bytes{std::size_t{64} << 30});
  // Most bytes of object pages at once, freed-but-resident ones included. memory_limit=512m.
  Bytes memory_limit = Default(&PoolOptions::memory_limit, Bytes{~std::size_t{0}});
  // Freed pages stay resident this long before they go back to the kernel, so that churn reuses them without
  // a syscall or a page fault (0: give back at once). compact(), release_free_memory() and the memory limit
  // give them back at once. 1 s: on the churn-ops workload (64 MiB) it cut the time from 3.3 to 2.2 s and the
  // syscalls from 5,859 to ~150 per million operations, for +5% peak RSS (bench/RESULTS.md). decay_ms=1000.
  std::chrono::milliseconds decay = Default(&PoolOptions::decay, std::chrono::milliseconds{1000});
  // Most handles in use at once, exactly (live objects plus entries the threads' caches hold; at most
  // 2^28 - 1). The table reserves 16 B of address space per handle; memory is used only where entries are.
  std::uint32_t max_handles = Default(&PoolOptions::max_handles, std::uint32_t{(1u << 28) - 1});
  // Abort on handle misuse, naming the handle; and watch the object pages for stale pointers: the arena is
  // registered with a userfaultfd of its own (its pages populated through it, 2 µs a page; moves copy), so a
  // touch of a page no longer in use — given back after frees, or left by a block that moved — aborts with the
  // address and, from a log of the last 16384 places objects left, the handle whose object was there. The
  // watch is page-grained: a stale pointer into a page still in use reads whatever is there now. Without
  // checked mode such a touch reads zeros (or the page's new contents) and nothing reports it. checked=true.
  bool checked = Default(&PoolOptions::checked, false);
  // The OS seam (os/os.h, for the tree's own tests); nullptr is the real kernel. Not settable from the
  // environment.
  os::Os* os = nullptr;
  // How defragment() may move pages. Each way falls back to memcpy where the kernel refuses it; stats()
  // counts which way every move went.
  // UFFDIO_MOVE (Linux 6.8+): zero-copy, the mappings stay as they are. move_by_userfaultfd=false.
  bool move_by_userfaultfd = Default(&PoolOptions::move_by_userfaultfd, true);
  // Huge objects, where there is no UFFDIO_MOVE: at most 256 of them in the pool's lifetime (the kernel
  // gives each a mapping of its own). move_by_mremap=false.
  bool move_by_mremap = Default(&PoolOptions::move_by_mremap, true);
  // Moves shorter than this go by memcpy even where a zero-copy way is on: UFFDIO_MOVE of 4 KiB pages flushes the
  // TLB once per page, dear in a VM (on the AMD EPYC guest a class block moves 2.3× faster by copy), while the
  // copied-from pages are discarded later, a thousand runs to a call. Every class block is shorter than the
  // default; long huge objects and pages on transparent huge pages still move without a copy.
  // zero_copy_min=128k (0: zero-copy whenever a way is on).
  Bytes zero_copy_min = Default(&PoolOptions::zero_copy_min, Bytes{std::size_t{128} << 10});
  // After defragment(), put every 2 MiB region that is full on a transparent huge page (MADV_COLLAPSE,
  // Linux 6.1+; no mapping changes): fewer TLB misses on live data, and huge objects then move as one page-table
  // entry. Costs about 1.5 ms per region collapsed here, so it is off unless asked for. collapse_dense_regions=true.
  bool collapse_dense_regions = Default(&PoolOptions::collapse_dense_regions, false);
  // A background compactor (the kernel's kcompactd): a thread of the pool's own that wakes every
  // `background_interval` and runs a pass — compact(), then defragment(), then compact_handles() — when any
  // of these holds:
  //  - more than `background_threshold` of the class blocks' bytes are not live slots, and more than a block
  //    per class (each class's last block is slack no compaction removes);
  //  - the arena's regions in use hold more than (1 + background_threshold) × its used pages, plus a region
  //    (blocks and huge objects spread over more 2 MiB regions than they need);
  //  - owners are registered (mova/handle_owner.h) and the handle table holds more than (1 +
  //    background_threshold) × 8 B per entry in use, plus the 32 pages it keeps at hand; not again after a
  //    compact_handles() that gave no page back, until the table changes;
  //  - the system is short of memory (PSI memory "some" avg10 ≥ 10%, or this cgroup's memory.current ≥ 90% of
  //    memory.max) and there is anything to give back; such a pass also ends with release_free_memory().
  // A pass runs as cycles of at most `background_cycle` each (PassBudget: a class lock is held at most a cycle
  // plus one batch of moves), and rests between cycles so that the pass takes `background_cpu_percent` of one
  // core, as Redis's active defragmentation paces itself. The default, 100, runs a pass flat out on the
  // compactor's own thread (Redis's 25% is for a defragmenter on the server's only thread): the cycles still
  // bound how long any lock is held, and a slower pass lets memory grow meanwhile (measured: at 25% the
  // fragbench churn rows peaked at 137–159 MiB against 102 MiB at 100%). Zero interval: no thread (compact
  // when you choose). A forked child's copy of the pool has no background thread. background_interval_ms=100,
  // background_threshold=0.25, background_cycle_us=1000, background_cpu_percent=25.
  std::chrono::milliseconds background_interval = Default(&PoolOptions::background_interval, std::chrono::milliseconds{0});
  double background_threshold = Default(&PoolOptions::background_threshold, 0.15);
  std::chrono::microseconds background_cycle = Default(&PoolOptions::background_cycle, std::chrono::microseconds{1000});
  double background_cpu_percent = Default(&PoolOptions::background_cpu_percent, 100.0);
  // Direct compaction (the kernel's direct compaction, without a thread): when a thread's refill had to make
  // a new block while more than `background_threshold` of the class blocks' bytes (beyond a block per class)
  // are not live slots, the allocating thread recalls the thread caches (as compact() does; the other threads
  // return theirs at their next call) and compacts for at most this long — once ten times this has passed
  // since the last, or 32 refills have made blocks since, whichever comes first, and never waiting for a
  // compaction under way — and the next new blocks take pages compaction emptied instead of fresh ones. Churn
  // that shifts sizes then peaks near its live bytes instead of growing by the classes it left behind (64 MiB
  // live: churn-ops peaks at 89.5-90.5 MiB, glibc 96; size-shift 73.1, glibc 82.5; bench/RESULTS.md). The trigger
  // was 25% before: churn-ops then peaked ~14 MiB higher, in the same time. Zero: never.
  // direct_compaction_us=500.
  std::chrono::microseconds direct_compaction =
      Default(&PoolOptions::direct_compaction, std::chrono::microseconds{500});
  // The pool's reserved ranges (objects, handle table, page map) are left out of core dumps (MADV_DONTDUMP):
  // tens of GiB of address space would otherwise be walked by every dump. True puts them in, for debugging
  // with the objects' contents. include_in_core_dumps=true.
  bool include_in_core_dumps = Default(&PoolOptions::include_in_core_dumps, false);
  // Stats printed to stderr when the pool is destroyed. show_stats=text | json | none; MOVA_SHOW_STATS=1
  // (or text) | json | 0 sets it too, after MOVA_OPTIONS.
  StatsOutput show_stats = Default(&PoolOptions::show_stats, StatsOutput::kNone);

 private:
  template <typename T>
  static T Default(T PoolOptions::*field, T built_in) {
    const PoolOptions* env = internal::EnvironmentDefaults();
    return env != nullptr ? env->*field : built_in;
  }
};

// Applies "name=value[,name=value...]" to `options` (the names are the MOVA_OPTIONS names above; booleans
// take true/false/1/0, sizes take a k/m/g/t suffix, durations are whole milliseconds). All or nothing: on an
// error `options` is unchanged and the status (kInvalidArgument) names the item and why.
MOVA_API absl::Status ParsePoolOptions(std::string_view text, PoolOptions& options);

// OK, or why MOVA_OPTIONS / MOVA_SHOW_STATS could not be applied (then every Pool::Create fails with it): a
// service may check it at startup.
MOVA_API absl::Status EnvironmentOptionsStatus();

// kInvalidArgument naming the field if an option is out of its range (what Pool::Create checks first).
MOVA_API absl::Status ValidatePoolOptions(const PoolOptions& options);

}  // namespace mova

#endif  // MOVA_POOL_OPTIONS_H_
