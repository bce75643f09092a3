// bench/fragbench_main.cc — mova-fragbench: the fragmentation suite, mova against glibc, jemalloc, mimalloc
// and tcmalloc in one run.
//
// For every workload and allocator it starts a worker process (mova_fragbench_worker_<malloc>, found next to
// this binary), so each allocator has a process of its own, and prints one table — or JSON lines with --json —
// and a PNG plot of RSS over time for one workload (gnuplot). Five mova rows: "mova" compacts once, at the end
// (its best effort, like the others' purge); "mova-periodic" also compacts after every live/2 bytes allocated,
// as a service calling compact() itself would; "mova-background" leaves it to the pool's background compactor
// (PoolOptions::background_interval = 10 ms); "mova-owned" and "mova-periodic-owned" are the first two with the
// workload's handles owned by the pool (mova/handle_owner.h), so its compactions compact the handle table too. Runs are sequential: the machine has 2 cores
// and measurements running side by side would disturb each other.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/workloads.h"

ABSL_FLAG(std::uint64_t, live_mib, 64, "live size every workload is scaled to, MiB");
ABSL_FLAG(std::string, workloads, "all", "comma-separated workloads, or all");
ABSL_FLAG(std::string, allocators,
          "mova,mova-owned,mova-periodic,mova-periodic-owned,mova-background,glibc,jemalloc,mimalloc,tcmalloc",
          "comma-separated allocators (mova-periodic: mova compacting after every live/2 bytes allocated; "
          "-owned: the workload's handles owned by the pool, so compaction compacts the handle table; "
          "mova-background: mova with its background compactor, waking every 10 ms)");
ABSL_FLAG(bool, json, false, "print one JSON object per row instead of the table");
ABSL_FLAG(std::string, plot, "fragbench-rss.png", "PNG plot of RSS over time (empty: none)");
ABSL_FLAG(std::string, plot_workload, "churn", "the workload the plot shows");
ABSL_FLAG(std::uint64_t, seed, 1, "random seed (the same for every allocator)");
ABSL_FLAG(std::int64_t, mova_decay_ms, -1, "mova rows: PoolOptions::decay in ms (-1: the default)");

namespace {

struct Row {
  std::map<std::string, std::string> fields;
  std::vector<std::pair<double, double>> series;  // seconds, RSS MiB
  double Num(const std::string& k) const {
    double v = 0;
    auto it = fields.find(k);
    if (it == fields.end() || !absl::SimpleAtod(it->second, &v)) return 0;
    return v;
  }
};

std::string SelfDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

std::string WorkerBinary(const std::string& dir, const std::string& allocator) {
  const bool mova = allocator.rfind("mova", 0) == 0;
  return dir + "/mova_fragbench_worker_" + (mova ? "glibc" : allocator);
}

bool RunWorker(const std::string& dir, const std::string& allocator, const std::string& workload, bool series,
               Row* row) {
  const std::string binary = WorkerBinary(dir, allocator);
  const std::string cmd = absl::StrFormat("'%s' --allocator=%s --workload=%s --live_mib=%u --seed=%u --mova_decay_ms=%d%s",
                                          binary, allocator, workload, absl::GetFlag(FLAGS_live_mib),
                                          absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_mova_decay_ms),
                                          series ? " --series" : "");
  std::FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return false;
  char line[4096];
  bool got = false;
  while (std::fgets(line, sizeof(line), p) != nullptr) {
    std::string s(line);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (s.rfind("result ", 0) == 0) {
      for (absl::string_view kv : absl::StrSplit(s.substr(7), ' ', absl::SkipEmpty())) {
        std::pair<std::string, std::string> p2 = absl::StrSplit(kv, absl::MaxSplits('=', 1));
        row->fields[p2.first] = p2.second;
      }
      got = true;
    } else if (s.rfind("series ", 0) == 0) {
      std::vector<std::string> parts = absl::StrSplit(s, ' ');
      double t = 0, b = 0;
      if (parts.size() == 3 && absl::SimpleAtod(parts[1], &t) && absl::SimpleAtod(parts[2], &b)) {
        row->series.push_back({t, b / 1048576.0});
      }
    }
  }
  const int status = pclose(p);
  if (status != 0 || !got) {
    std::fprintf(stderr, "worker failed (status %d): %s\n", status, cmd.c_str());
    return false;
  }
  return true;
}

void Plot(const std::string& png, const std::string& workload, const std::vector<Row>& rows) {
  std::vector<std::string> plots;
  const std::string dir = "/tmp/mova-fragbench-plot-" + std::to_string(getpid());
  std::system(("mkdir -p '" + dir + "'").c_str());
  for (const Row& r : rows) {
    if (r.fields.at("workload") != workload || r.series.empty()) continue;
    const std::string name = r.fields.at("allocator");
    const std::string data = dir + "/" + name + ".dat";
    std::ofstream f(data);
    for (auto [t, mib] : r.series) f << t << " " << mib << "\n";
    plots.push_back(absl::StrFormat("'%s' using 1:2 with lines lw 2 title '%s'", data, name));
  }
  if (plots.empty()) return;
  const std::string script = dir + "/plot.gp";
  std::ofstream g(script);
  g << "set terminal pngcairo size 1000,560 font 'sans,11'\n"
    << "set output '" << png << "'\n"
    << "set title 'mova-fragbench: RSS over time, workload " << workload << " (live target "
    << absl::GetFlag(FLAGS_live_mib) << " MiB)'\n"
    << "set xlabel 'seconds'\nset ylabel 'RSS above baseline, MiB'\nset key top left\nset grid\n"
    << "plot " << absl::StrJoin(plots, ", ") << "\n";
  g.close();
  if (std::system(("gnuplot '" + script + "'").c_str()) != 0) {
    std::fprintf(stderr, "gnuplot failed; no plot written\n");
  } else if (!absl::GetFlag(FLAGS_json)) {
    std::printf("plot of RSS over time (%s): %s\n", workload.c_str(), png.c_str());
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using mova::bench::Workloads;
  std::vector<std::string> workloads;
  if (absl::GetFlag(FLAGS_workloads) == "all") {
    for (const auto& w : Workloads()) workloads.push_back(w.name);
  } else {
    workloads = absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty());
  }
  for (const std::string& w : workloads) {
    if (!mova::bench::IsWorkload(w)) {
      std::fprintf(stderr, "unknown workload %s\n", w.c_str());
      return 2;
    }
  }
  const std::string dir = SelfDir();
  // A competitor that was not installed when mova was configured has no worker: its rows are left out.
  std::vector<std::string> allocators;
  for (const std::string& a : std::vector<std::string>(absl::StrSplit(absl::GetFlag(FLAGS_allocators), ',', absl::SkipEmpty()))) {
    const std::string worker = WorkerBinary(dir, a);
    if (access(worker.c_str(), X_OK) == 0) {
      allocators.push_back(a);
    } else {
      std::fprintf(stderr, "mova-fragbench: skipping %s: %s was not built (not installed when mova was configured)\n",
                   a.c_str(), worker.c_str());
    }
  }
  const bool json = absl::GetFlag(FLAGS_json);
  const std::string plot_workload = absl::GetFlag(FLAGS_plot_workload);

  if (!json) {
    std::printf("mova-fragbench: live target %lu MiB per workload; RSS is anonymous RSS above the process's own before "
                "the workload,\nread after each allocator's best effort (mova: compact(); jemalloc: arena.4096.purge; "
                "mimalloc: mi_collect(true);\ntcmalloc: MallocExtension_ReleaseFreeMemory(); glibc: malloc_trim(0)).\n\n",
                static_cast<unsigned long>(absl::GetFlag(FLAGS_live_mib)));
    std::printf("%-10s %-19s %9s %9s %8s %9s %8s %8s %9s %9s\n", "workload", "allocator", "live MiB", "RSS MiB",
                "RSS/live", "peak MiB", "time s", "effort s", "Mops/s", "sys/Mop");
  }
  std::vector<Row> rows;
  bool ok = true;
  for (const std::string& w : workloads) {
    if (!json) {
      for (const auto& info : Workloads()) {
        if (info.name == w) std::printf("-- %s: %s\n", w.c_str(), info.distribution.c_str());
      }
    }
    for (const std::string& a : allocators) {
      Row row;
      if (!RunWorker(dir, a, w, w == plot_workload, &row)) {
        ok = false;
        continue;
      }
      const double live = row.Num("live_bytes"), rss = row.Num("rss_bytes");
      if (json) {
        std::printf("{\"allocator\":\"%s\",\"workload\":\"%s\",\"live_bytes\":%.0f,\"rss_bytes\":%.0f,"
                    "\"rss_before_best_effort\":%.0f,\"peak_rss_bytes\":%.0f,\"seconds\":%.6f,"
                    "\"best_effort_seconds\":%.6f,\"live_objects\":%.0f,\"rss_over_live\":%.4f,\"ops\":%.0f,"
                    "\"syscalls\":%.0f}\n",
                    a.c_str(), w.c_str(), live, rss, row.Num("rss_before_best_effort"), row.Num("peak_rss_bytes"),
                    row.Num("seconds"), row.Num("best_effort_seconds"), row.Num("live_objects"),
                    live > 0 ? rss / live : 0.0, row.Num("ops"), row.Num("syscalls"));
      } else {
        const double ops = row.Num("ops"), secs = row.Num("seconds"), sys = row.Num("syscalls");
        const std::string per_mop = sys >= 0 && ops > 0 ? absl::StrFormat("%9.0f", sys / ops * 1e6) : "        -";
        std::printf("%-10s %-19s %9.1f %9.1f %8.2f %9.1f %8.2f %8.3f %9.2f %s\n", w.c_str(), a.c_str(),
                    live / 1048576.0, rss / 1048576.0, live > 0 ? rss / live : 0.0,
                    row.Num("peak_rss_bytes") / 1048576.0, secs, row.Num("best_effort_seconds"),
                    secs > 0 ? ops / secs / 1e6 : 0.0, per_mop.c_str());
      }
      std::fflush(stdout);
      rows.push_back(std::move(row));
    }
  }
  if (!absl::GetFlag(FLAGS_plot).empty()) Plot(absl::GetFlag(FLAGS_plot), plot_workload, rows);
  return ok ? 0 : 1;
}
