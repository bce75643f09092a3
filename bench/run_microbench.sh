#!/usr/bin/env bash
# Runs the microbenchmarks once per malloc (each binary links its own) and prints one table: the median
# ns/op of each loop per allocator, and each competitor's time as a multiple of mova's (>1: mova is faster).
# Usage: bench/run_microbench.sh [build dir, default build/bench] [repetitions, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/bench}
reps=${2:-5}
bash scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOVA_TESTS=OFF > /dev/null
cmake --build "$build" -j "$(nproc)" > /dev/null
out=$(mktemp -d)
[ -x "$build/bench/mova_microbench_glibc" ] || { echo "no microbenchmarks in $build (Google Benchmark missing?)" >&2; exit 1; }
for kind in glibc jemalloc mimalloc tcmalloc; do
  if [ ! -x "$build/bench/mova_microbench_$kind" ]; then
    echo "skipping $kind: not built (it was not installed when mova was configured)" >&2
    continue
  fi
  extra=""
  [ "$kind" = glibc ] && extra="--with_mova"
  "$build/bench/mova_microbench_$kind" $extra --benchmark_repetitions="$reps" \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 --benchmark_format=csv \
    > "$out/$kind.csv" 2> "$out/$kind.err" || { cat "$out/$kind.err"; exit 1; }
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "median of $reps repetitions; ns per operation; (x) = that allocator's time / mova's"
cat "$out"/*.csv | awk -F, '
  /_median"?,/ {
    name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
    split(name, parts, "/"); who = parts[1]; bench = substr(name, length(who) + 2)
    sub(/\/iterations:[0-9]+/, "", bench); sub(/\/manual_time/, "", bench); sub(/\/real_time/, "", bench)
    ips = $7
    if (ips != "" && ips != 0) ns[bench, who] = 1e9 / ips
    else if ($6 != "") { mbps[bench, who] = $6 / 1048576; label[bench, who] = $8; gsub(/"/, "", label[bench, who]) }
    else next
    if (!(bench in seen)) { seen[bench] = 1; order[++n] = bench }
  }
  END {
    cols = "mova mova-decay0 glibc jemalloc mimalloc tcmalloc"
    k = split(cols, c, " ")
    printf "%-22s", "benchmark"
    for (i = 1; i <= k; i++) printf " %18s", c[i]
    printf "\n"
    for (j = 1; j <= n; j++) {
      b = order[j]; printf "%-22s", b
      base = ns[b, "mova"]
      for (i = 1; i <= k; i++) {
        v = ns[b, c[i]]
        if (v == "") { printf " %18s", "-"; continue }
        if (c[i] == "mova" || base == "") printf " %18.1f", v
        else printf " %11.1f (%4.2fx)", v, v / base
      }
      if (mbps[b, "mova"] != "") {
        printf "   (mova: %.0f MiB/s moved", mbps[b, "mova"]
        if (label[b, "mova"] != "") printf "; %s", label[b, "mova"]
        printf ")"
      }
      printf "\n"
    }
  }'
rm -rf "$out"
