#!/usr/bin/env bash
# mova-kv against Debian's redis-server, driven by the real redis-cli and redis-benchmark.
#   W1  Redis's own defragmentation test (tests/unit/memefficiency.tcl, "Active defrag main dictionary"), through
#       pipelined SETs: maxmemory 100mb, allkeys-lru, 700k × 150 B then 170k × 300 B; then maxmemory 110mb and
#       activedefrag yes with that test's settings; memory before and after, the longest defrag cycle, the
#       latency redis-cli --latency-history sees meanwhile, and the digest before and after.
#   W2  The script Mesh and Alaska used: maxmemory 100mb, allkeys-lru, DEBUG POPULATE 700000 asdf 240, then
#       DEBUG POPULATE 170000 asdf 492, with W1's defrag settings; the server's RSS sampled at 10 Hz until 10 s
#       after the second populate (a PNG, one line per server).
#   W3  redis-benchmark -t set,get -n 1000000 -r 1000000 -d 492, with and without -P 16: throughput, p50, p99,
#       p99.9.
# Servers: redis (Debian's redis-server, jemalloc; its active defrag is not compiled in, so CONFIG SET
# activedefrag yes is refused), mova-kv (objects in mova), and mova-kv --store malloc with glibc, jemalloc and
# mimalloc (LD_PRELOAD): the control that tells the server's own costs from the allocator's. The server runs on
# CPU 0, the clients on CPU 1. Every workload runs RUNS times on a fresh server; the tables give medians.
# Usage: bench/service/run.sh [out dir, default build/service]
# Environment: RUNS (3), W3_N (1000000), WORKLOADS ("w1 w2 w3"), SERVERS ("redis mova-kv glibc jemalloc mimalloc").
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh
out=${1:-build/service}
runs=${RUNS:-3}
w3_n=${W3_N:-1000000}
workloads=${WORKLOADS:-"w1 w2 w3"}
servers=${SERVERS:-"redis mova-kv glibc jemalloc mimalloc"}
mkdir -p "$out"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DMOVA_TESTS=OFF -DMOVA_BENCH=OFF > "$out/cmake.log" 2>&1 \
  || { cat "$out/cmake.log"; exit 1; }
cmake --build build/release -j "$(nproc)" --target mova-kv > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
kv=build/release/mova-kv/mova-kv
lib=/usr/lib/x86_64-linux-gnu
port=${PORT:-6390}
SERVER_PID=

cli() { taskset -c 1 redis-cli -p "$port" "$@"; }
field() { cli INFO "$2" | tr -d '\r' | awk -F: -v f="$1" '$1 == f { print $2 }'; }
rss() { awk '{ print $2 * 4096 }' "/proc/$SERVER_PID/statm"; }

start() {
  case $1 in
    redis) taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
             --enable-debug-command yes --logfile "$out/redis.log" & ;;
    mova-kv) taskset -c 0 "$kv" --port "$port" 2> "$out/mova-kv.log" & ;;
    glibc) taskset -c 0 "$kv" --port "$port" --store malloc 2> "$out/mova-kv.log" & ;;
    jemalloc) LD_PRELOAD=$lib/libjemalloc.so.2 taskset -c 0 "$kv" --port "$port" --store malloc 2> "$out/mova-kv.log" & ;;
    mimalloc) LD_PRELOAD=$lib/libmimalloc.so.2 taskset -c 0 "$kv" --port "$port" --store malloc 2> "$out/mova-kv.log" & ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    [ "$(cli PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "$1 did not start" >&2
  exit 1
}
stop() {
  cli SHUTDOWN NOSAVE > /dev/null 2>&1 || true
  wait "$SERVER_PID" 2> /dev/null || true
}

# Pipelined SETs of n keys <prefix><i> with s-byte values of 'A', as memefficiency.tcl's populate.
populate() {
  awk -v n="$1" -v p="$2" -v s="$3" 'BEGIN {
    v = sprintf("%" s "s", ""); gsub(/ /, "A", v)
    for (i = 0; i < n; i++) { k = p i; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, s, v }
  }' | taskset -c 1 redis-cli -p "$port" --pipe > /dev/null
}

# memefficiency.tcl's defrag settings; echoes "yes" if the server runs active defrag.
defrag_on() {
  cli CONFIG SET hz 100 > /dev/null
  cli CONFIG SET active-defrag-threshold-lower 5 active-defrag-cycle-min 65 active-defrag-cycle-max 75 \
    active-defrag-ignore-bytes 2mb > /dev/null 2>&1 || true
  if [ "$(cli CONFIG SET activedefrag yes 2>&1)" = OK ]; then echo yes; else echo no; fi
}

w1() {  # server run
  start "$1"
  cli CONFIG SET maxmemory 100mb > /dev/null
  cli CONFIG SET maxmemory-policy allkeys-lru > /dev/null
  populate 700000 asdf1 150
  populate 170000 asdf2 300
  sleep 0.2
  local used0 rss0 frag0 digest0
  used0=$(field used_memory memory); rss0=$(rss); frag0=$(field allocator_frag_ratio memory)
  cli CONFIG SET maxmemory 110mb > /dev/null
  cli CONFIG SET latency-monitor-threshold 1 > /dev/null
  digest0=$(cli DEBUG DIGEST)
  local defrag longest=- lat_max
  defrag=$(defrag_on)
  taskset -c 1 timeout 6 redis-cli -p "$port" --latency-history -i 1 > "$out/w1-latency-$1-$2.txt" 2>&1 &
  local lat_pid=$!
  if [ "$defrag" = yes ]; then
    for _ in $(seq 50); do [ "$(field active_defrag_running memory)" != 0 ] && break; sleep 0.1; done
    for _ in $(seq 2000); do [ "$(field active_defrag_running memory)" = 0 ] && break; sleep 0.1; done
    longest=$(cli LATENCY LATEST | awk 'NR % 4 == 1 { e = $0 } NR % 4 == 0 && e == "active-defrag-cycle" { print $0 }')
    [ -n "$longest" ] || longest=0
  fi
  wait "$lat_pid" || true
  lat_max=$(tr '\r' '\n' < "$out/w1-latency-$1-$2.txt" | awk '/max:/ { sub(/,/, "", $4); if ($4 + 0 > m) m = $4 + 0 } END { print m + 0 }')
  sleep 0.2
  local used1 rss1 frag1 same
  used1=$(field used_memory memory); rss1=$(rss); frag1=$(field allocator_frag_ratio memory)
  [ "$(cli DEBUG DIGEST)" = "$digest0" ] && same=yes || same=NO
  echo -e "w1\t$1\t$2\t$used0\t$rss0\t$frag0\t$defrag\t$used1\t$rss1\t$frag1\t$longest\t$lat_max\t$same"
  stop
}

w2() {  # server run
  start "$1"
  cli CONFIG SET maxmemory 100mb > /dev/null
  cli CONFIG SET maxmemory-policy allkeys-lru > /dev/null
  local defrag
  defrag=$(defrag_on)
  local csv="$out/w2-rss-$1-$2.csv" t0
  t0=$(date +%s%N)
  ( while kill -0 "$SERVER_PID" 2> /dev/null; do
      echo "$(( ($(date +%s%N) - t0) / 1000000 )) $(rss)"
      sleep 0.1
    done ) > "$csv" 2> /dev/null &
  local sampler=$!
  cli DEBUG POPULATE 700000 asdf 240 > /dev/null
  cli DEBUG POPULATE 170000 asdf 492 > /dev/null
  sleep 10
  kill "$sampler" 2> /dev/null || true
  wait "$sampler" 2> /dev/null || true
  local rss_end used_end peak
  rss_end=$(rss)
  used_end=$(field used_memory memory)  # this INFO evicts down to maxmemory first, as any command does
  if [ "$defrag" = yes ]; then  # the holes the eviction left: one more defragmentation
    sleep 0.3
    for _ in $(seq 600); do [ "$(field active_defrag_running memory)" = 0 ] && break; sleep 0.1; done
  fi
  sleep 0.2
  peak=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$csv")
  echo -e "w2\t$1\t$2\t$defrag\t$peak\t$rss_end\t$used_end\t$(rss)"
  stop
}

w3() {  # server run
  start "$1"
  for p in 1 16; do
    taskset -c 1 redis-benchmark -p "$port" -t set,get -n "$w3_n" -r 1000000 -d 492 -P "$p" \
      > "$out/w3-$1-$2-P$p.txt" 2>&1
    tr '\r' '\n' < "$out/w3-$1-$2-P$p.txt" | awk -v s="$1" -v r="$2" -v p="$p" '
      /^====== / { test = $2; p999 = "" }
      /% <= / && test != "" { pct = $1; sub(/%/, "", pct); if (p999 == "" && pct + 0 >= 99.9) p999 = $3 }
      /throughput summary:/ { rps = $3 }
      /avg +min +p50/ { getline; printf "w3\t%s\t%s\tP%s\t%s\t%s\t%s\t%s\t%s\n", s, r, p, test, rps, $3, $5, p999 }'
  done
  stop
}

machine="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(redis-server --version | awk '{print $3, $4}')"
raw="$out/raw.tsv"
: > "$raw"
for w in $workloads; do
  for r in $(seq "$runs"); do
    for s in $servers; do
      $w "$s" "$r" | tee -a "$raw"
    done
  done
done

# Medians over the runs, one table per workload.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mib() { awk '{ printf "%.1f", $1 / 1048576 }'; }
col() { awk -F'\t' -v w="$1" -v s="$2" -v c="$3" '$1 == w && $2 == s { print $c }' "$raw"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
report="$out/report.md"
{
  echo "machine: $machine; medians of $runs runs; server on CPU 0, clients on CPU 1"
  if [[ " $workloads " == *" w1 "* ]]; then
    echo
    echo "W1 (memefficiency's main dictionary): MiB; frag = allocator_frag_ratio; longest cycle = LATENCY LATEST max (ms); latency = redis-cli --latency-history max (ms)"
    echo
    echo "| server | used_memory | RSS | RSS/used | frag | defrag | used_memory after | RSS after | RSS/used after | frag after | longest cycle | latency max | digest same |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for s in $servers; do
      u0=$(col w1 "$s" 4 | median); r0=$(col w1 "$s" 5 | median); u1=$(col w1 "$s" 8 | median); r1=$(col w1 "$s" 9 | median)
      echo "| $s | $(echo "$u0" | mib) | $(echo "$r0" | mib) | $(ratio "$r0" "$u0") | $(col w1 "$s" 6 | median) | $(col w1 "$s" 7 | head -1) | $(echo "$u1" | mib) | $(echo "$r1" | mib) | $(ratio "$r1" "$u1") | $(col w1 "$s" 10 | median) | $(col w1 "$s" 11 | median) | $(col w1 "$s" 12 | median) | $(col w1 "$s" 13 | sort -u | tr '\n' ' ') |"
    done
  fi
  if [[ " $workloads " == *" w2 "* ]]; then
    echo
    echo "W2 (Mesh's and Alaska's script): MiB; \"10 s after\": 10 s after the second populate; then an INFO evicts down"
    echo "to maxmemory (as any command does) and, where active defrag runs, one more defragmentation follows"
    echo
    echo "| server | defrag | peak RSS | RSS 10 s after | used_memory after eviction | RSS after eviction (and defrag) | RSS/used |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for s in $servers; do
      pk=$(col w2 "$s" 5 | median); re=$(col w2 "$s" 6 | median); ue=$(col w2 "$s" 7 | median); r2=$(col w2 "$s" 8 | median)
      echo "| $s | $(col w2 "$s" 4 | head -1) | $(echo "$pk" | mib) | $(echo "$re" | mib) | $(echo "$ue" | mib) | $(echo "$r2" | mib) | $(ratio "$r2" "$ue") |"
    done
  fi
  if [[ " $workloads " == *" w3 "* ]]; then
    echo
    echo "W3 (redis-benchmark -t set,get -n $w3_n -r 1000000 -d 492): requests/s, latency in ms"
    echo
    echo "| server | pipeline | test | requests/s | p50 | p99 | p99.9 |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for p in P1 P16; do
      for t in SET GET; do
        for s in $servers; do
          rows=$(awk -F'\t' -v s="$s" -v p="$p" -v t="$t" '$1 == "w3" && $2 == s && $4 == p && $5 == t' "$raw")
          echo "| $s | ${p#P} | $t | $(echo "$rows" | cut -f6 | median) | $(echo "$rows" | cut -f7 | median) | $(echo "$rows" | cut -f8 | median) | $(echo "$rows" | cut -f9 | median) |"
        done
      done
    done
  fi
} > "$report"
if [[ " $workloads " == *" w2 "* ]] && command -v gnuplot > /dev/null; then
  plot="plot"
  for s in $servers; do plot="$plot '$out/w2-rss-$s-1.csv' using (\$1/1000):(\$2/1048576) with lines title '$s',"; done
  gnuplot -e "set terminal png size 900,500; set output '$out/w2-rss.png'; set xlabel 'seconds'; set ylabel 'RSS (MiB)'; set key bottom right; set title 'W2: DEBUG POPULATE 700000 asdf 240, then 170000 asdf 492 (maxmemory 100mb, allkeys-lru)'; ${plot%,}"
  echo "plot: $out/w2-rss.png" >&2
fi
cat "$report"
