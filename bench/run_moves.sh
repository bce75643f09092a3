#!/usr/bin/env bash
# Runs the move benchmarks and prints two tables: the cost of one move per way and size (median of the
# repetitions, µs per move and GiB/s, and each way's time as a multiple of UFFDIO_MOVE's), then
# mova-defragbench (defragmentation end to end, per way).
# Usage: bench/run_moves.sh [build dir, default build/bench] [repetitions, default 5] [defragbench fill MiB, default 256]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/bench}
reps=${2:-5}
fill=${3:-256}
bash scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOVA_TESTS=OFF > /dev/null
cmake --build "$build" -j "$(nproc)" --target mova_movebench mova-defragbench > /dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "one move per iteration; median of $reps repetitions; (x) = that way's time / UFFDIO_MOVE's"
"$build/bench/mova_movebench" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
  --benchmark_min_time=0.2 --benchmark_format=csv 2> /dev/null | awk -F, '
  /_median"?,/ {
    name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
    n = split(name, parts, "/"); way = parts[2]; size = parts[3]
    us = $3; if ($5 == "ns") us = us / 1000; else if ($5 == "ms") us = us * 1000
    t[way, size] = us; gibs[way, size] = $6 / 1073741824
    if (!(size in seen)) { seen[size] = 1; sizes[++ns] = size }
  }
  END {
    k = split("uffd uffd-thp mremap copy fresh-memcpy", w, " ")
    printf "%-10s", "size"
    for (i = 1; i <= k; i++) printf " %24s", w[i]
    printf "\n"
    for (j = 1; j <= ns; j++) {
      s = sizes[j]; label = s >= 1048576 ? (s / 1048576) " MiB" : (s / 1024) " KiB"
      printf "%-10s", label
      for (i = 1; i <= k; i++) {
        v = t[w[i], s]
        if (v == "") { printf " %24s", "-"; continue }
        cell = sprintf("%.2f us %.0f GiB/s", v, gibs[w[i], s])
        if (w[i] != "uffd" && t["uffd", s] != "") cell = cell sprintf(" (%.2fx)", v / t["uffd", s])
        printf " %24s", cell
      }
      printf "\n"
    }
  }'
echo
"$build/bench/mova-defragbench" --fill_mib="$fill" --reps=3
