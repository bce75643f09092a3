#!/usr/bin/env bash
# The main job: builds mova and runs the fragmentation suite against glibc, jemalloc, mimalloc and tcmalloc,
# printing one table and writing a PNG plot of RSS over time (build/bench/fragbench-rss.png).
# Installs missing Debian packages first. Extra arguments go to mova-fragbench (e.g. --live_mib=256).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
mkdir -p build
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DMOVA_TESTS=OFF > build/bench.cmake.log 2>&1 \
  || { cat build/bench.cmake.log; exit 1; }
cmake --build build/bench -j "$(nproc)" --target mova-fragbench
exec build/bench/bench/mova-fragbench --plot=build/bench/fragbench-rss.png "$@"
