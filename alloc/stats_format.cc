// alloc/stats_format.cc — PoolStats as a table a person reads, and as JSON.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "mova/stats.h"

namespace mova {
namespace {

double MiB(std::uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

// One JSON member: "name":[counts...],
void HistogramField(std::string* out, const char* name, const PoolStats::CycleCounts& counts) {
  absl::StrAppendFormat(out, "\"%s\":[%s],", name, absl::StrJoin(counts, ","));
}

}  // namespace

std::string FormatCycleCounts(const PoolStats::CycleCounts& counts) {
  std::string out;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (i < PoolStats::kBackgroundCycleBoundsUs.size()) {
      absl::StrAppendFormat(&out, " <=%uus %u", PoolStats::kBackgroundCycleBoundsUs[i], counts[i]);
    } else {
      absl::StrAppendFormat(&out, " longer %u", counts[i]);
    }
  }
  return out;
}

std::string FormatStatsText(const PoolStats& s, bool all_classes) {
  std::string out;
  absl::StrAppendFormat(&out, "live        %10.2f MiB in %u objects (%u huge)\n", MiB(s.live_bytes), s.live_objects,
                        s.huge_objects);
  absl::StrAppendFormat(&out, "resident    %10.2f MiB = blocks %.2f + huge %.2f + dirty %.2f + handle table %.2f + metadata %.2f\n",
                        MiB(s.resident_bytes), MiB(s.block_bytes), MiB(s.huge_bytes), MiB(s.dirty_bytes),
                        MiB(s.handle_table_bytes), MiB(s.metadata_bytes));
  absl::StrAppendFormat(&out, "slots       %10.2f MiB of live slots; %u handles in use; table peak %u pages; %u entries rested, %u pages re-keyed\n",
                        MiB(s.slot_bytes), s.handles_in_use, s.handle_table_pages_peak, s.handles_rested,
                        s.handle_pages_rekeyed);
  if (s.handle_compactions > 0 && (s.handles_owned > 0 || s.handles_migrated > 0)) {
    absl::StrAppendFormat(&out, "owned       %u handles owned; %u compactions moved %u entries (%u freed while isolated; %u isolations failed, %u put back), %u table pages given back\n",
                          s.handles_owned, s.handle_compactions, s.handles_migrated, s.handles_freed_while_isolated,
                          s.handle_isolate_failed, s.handles_put_back, s.handle_pages_evacuated);
  }
  absl::StrAppendFormat(&out, "arena       %u regions in use, %u touched; %u populate calls; %u discard calls for %u runs (%u runs failed); %u regions collapsed to huge pages (%u failed)\n",
                        s.regions_in_use, s.regions_touched, s.populate_calls, s.discard_calls, s.discard_runs, s.discard_failures,
                        s.regions_collapsed, s.collapse_failures);
  if (s.background_running || s.background_wakeups > 0) {
    absl::StrAppendFormat(&out,
                          "background  %s: %u wakeups, %u passes (%u complete; for class slack %u, region spread "
                          "%u, memory pressure %u, handle table %u), %u cycles, the longest %u us\n",
                          s.background_running ? "running" : "not running in this process", s.background_wakeups,
                          s.background_runs, s.background_runs_complete, s.background_by_classes, s.background_by_regions,
                          s.background_by_pressure, s.background_by_handles, s.background_cycles,
                          s.background_cycle_longest_us);
    if (s.background_cycles > 0) {
      absl::StrAppend(&out, "  cycles    ", FormatCycleCounts(s.background_cycle_histogram), "\n");
      absl::StrAppend(&out, "  cpu time  ", FormatCycleCounts(s.background_cycle_cpu_histogram), "\n");
      absl::StrAppendFormat(&out, "  preempted %u cycles; the longest in cpu time %u us\n",
                            s.background_cycles_preempted, s.background_cycle_longest_cpu_us);
    }
  }
  absl::StrAppendFormat(&out, "compaction  %u runs, %u objects / %.2f MiB moved, %u pages released\n", s.compactions,
                        s.objects_moved, MiB(s.bytes_moved), s.pages_compacted);
  absl::StrAppendFormat(&out, "direct      %u compactions run by allocations\n", s.direct_compactions);
  absl::StrAppendFormat(&out, "caches      %u thread caches emptied for threads not in a call\n", s.thread_caches_stolen);
  absl::StrAppendFormat(&out, "relocate    %u calls, %u objects moved\n", s.relocations, s.objects_relocated);
  if (s.keeping_old_copies) {
    absl::StrAppendFormat(&out, "old copies  %.2f MiB kept for read sections; %u given back (%.2f MiB), %u of them under pressure\n",
                          MiB(s.old_copy_bytes), s.old_copies_freed, MiB(s.old_copy_bytes_freed),
                          s.old_copies_freed_under_pressure);
  }
  absl::StrAppendFormat(&out, "defrag      %u runs: %u blocks scanned, %u isolated, %u migrated (%u huge), %u failed; %u regions freed\n",
                        s.defrag_runs, s.blocks_scanned, s.blocks_isolated, s.blocks_migrated, s.huge_migrated,
                        s.blocks_migrate_failed, s.regions_freed);
  absl::StrAppendFormat(&out,
                        "moves       userfaultfd %s: %u by UFFDIO_MOVE (%.2f MiB), %u by mremap (%.2f MiB), %u by memcpy "
                        "(%.2f MiB); fallbacks: %u shared pages, %u other (%u miscounted), %u mremap\n",
                        s.userfaultfd_ready ? "ready" : "unavailable", s.moves_uffd, MiB(s.bytes_moved_uffd),
                        s.moves_mremap, MiB(s.bytes_moved_mremap), s.moves_copy, MiB(s.bytes_moved_copy),
                        s.uffd_busy_fallbacks, s.uffd_other_fallbacks, s.uffd_miscounts, s.mremap_fallbacks);
  absl::StrAppendFormat(&out, "%5s %6s %5s %6s %8s %9s %7s  %s\n", "class", "size", "pages", "objs", "blocks", "in_use",
                        "cached", "fullness: empty 0-10% .. 90-99% full");
  for (std::size_t i = 0; i < s.classes.size(); ++i) {
    const ClassStats& c = s.classes[i];
    if (!all_classes && c.blocks == 0) continue;
    absl::StrAppendFormat(&out, "%5u %6u %5u %6u %8u %9u %7u  %s\n", i, c.slot_size, c.pages_per_block,
                          c.objects_per_block, c.blocks, c.objects_in_use, c.objects_cached,
                          absl::StrJoin(c.fullness, " "));
  }
  return out;
}

std::string FormatStatsJson(const PoolStats& s) {
  std::string out = "{";
  auto field = [&out](const char* name, std::uint64_t v) { absl::StrAppendFormat(&out, "\"%s\":%u,", name, v); };
  field("live_bytes", s.live_bytes);
  field("live_objects", s.live_objects);
  field("slot_bytes", s.slot_bytes);
  field("huge_objects", s.huge_objects);
  field("block_bytes", s.block_bytes);
  field("huge_bytes", s.huge_bytes);
  field("dirty_bytes", s.dirty_bytes);
  field("handle_table_bytes", s.handle_table_bytes);
  field("metadata_bytes", s.metadata_bytes);
  field("resident_bytes", s.resident_bytes);
  field("handles_in_use", s.handles_in_use);
  field("handle_table_pages_peak", s.handle_table_pages_peak);
  field("handles_rested", s.handles_rested);
  field("handle_pages_rekeyed", s.handle_pages_rekeyed);
  field("handle_compactions", s.handle_compactions);
  field("handles_owned", s.handles_owned);
  field("handles_migrated", s.handles_migrated);
  field("handles_freed_while_isolated", s.handles_freed_while_isolated);
  field("handle_isolate_failed", s.handle_isolate_failed);
  field("handles_put_back", s.handles_put_back);
  field("handle_pages_evacuated", s.handle_pages_evacuated);
  field("regions_in_use", s.regions_in_use);
  field("regions_touched", s.regions_touched);
  field("populate_calls", s.populate_calls);
  field("discard_calls", s.discard_calls);
  field("discard_runs", s.discard_runs);
  field("compactions", s.compactions);
  field("objects_moved", s.objects_moved);
  field("bytes_moved", s.bytes_moved);
  field("pages_compacted", s.pages_compacted);
  field("direct_compactions", s.direct_compactions);
  field("thread_caches_stolen", s.thread_caches_stolen);
  field("relocations", s.relocations);
  field("objects_relocated", s.objects_relocated);
  field("discard_failures", s.discard_failures);
  field("keeping_old_copies", s.keeping_old_copies ? 1 : 0);
  field("stale_touch_watch", s.stale_touch_watch ? 1 : 0);
  field("old_copy_bytes", s.old_copy_bytes);
  field("old_copies_freed", s.old_copies_freed);
  field("old_copy_bytes_freed", s.old_copy_bytes_freed);
  field("old_copies_freed_under_pressure", s.old_copies_freed_under_pressure);
  field("defrag_runs", s.defrag_runs);
  field("blocks_scanned", s.blocks_scanned);
  field("blocks_isolated", s.blocks_isolated);
  field("blocks_migrated", s.blocks_migrated);
  field("blocks_migrate_failed", s.blocks_migrate_failed);
  field("regions_freed", s.regions_freed);
  field("huge_migrated", s.huge_migrated);
  field("userfaultfd_ready", s.userfaultfd_ready ? 1 : 0);
  field("moves_uffd", s.moves_uffd);
  field("moves_mremap", s.moves_mremap);
  field("moves_copy", s.moves_copy);
  field("bytes_moved_uffd", s.bytes_moved_uffd);
  field("bytes_moved_mremap", s.bytes_moved_mremap);
  field("bytes_moved_copy", s.bytes_moved_copy);
  field("uffd_busy_fallbacks", s.uffd_busy_fallbacks);
  field("uffd_other_fallbacks", s.uffd_other_fallbacks);
  field("uffd_miscounts", s.uffd_miscounts);
  field("mremap_fallbacks", s.mremap_fallbacks);
  field("regions_collapsed", s.regions_collapsed);
  field("collapse_failures", s.collapse_failures);
  field("background_running", s.background_running ? 1 : 0);
  field("background_wakeups", s.background_wakeups);
  field("background_runs", s.background_runs);
  field("background_runs_complete", s.background_runs_complete);
  field("background_by_classes", s.background_by_classes);
  field("background_by_regions", s.background_by_regions);
  field("background_by_pressure", s.background_by_pressure);
  field("background_by_handles", s.background_by_handles);
  field("background_cycles", s.background_cycles);
  field("background_cycle_longest_us", s.background_cycle_longest_us);
  HistogramField(&out, "background_cycle_histogram", s.background_cycle_histogram);
  field("background_cycle_longest_cpu_us", s.background_cycle_longest_cpu_us);
  HistogramField(&out, "background_cycle_cpu_histogram", s.background_cycle_cpu_histogram);
  field("background_cycles_preempted", s.background_cycles_preempted);
  out += "\"classes\":[";
  for (std::size_t i = 0; i < s.classes.size(); ++i) {
    const ClassStats& c = s.classes[i];
    absl::StrAppendFormat(&out,
                          "%s{\"class\":%u,\"size\":%u,\"pages_per_block\":%u,\"objects_per_block\":%u,\"blocks\":%u,"
                          "\"block_pages\":%u,\"objects_in_use\":%u,\"objects_cached\":%u,\"fullness\":[%s]}",
                          i == 0 ? "" : ",", i, c.slot_size, c.pages_per_block, c.objects_per_block, c.blocks,
                          c.block_pages, c.objects_in_use, c.objects_cached, absl::StrJoin(c.fullness, ","));
  }
  out += "]}";
  return out;
}

}  // namespace mova
