#!/usr/bin/env bash
# Builds one stress tool (mova-fuzz or mova-soak) in build/stress-<sanitizer> and runs it with the rest of the
# arguments. Usage: stress-run.sh TOOL [--sanitize address|thread] [tool flags...]. Installs missing Debian
# packages first. scripts/fuzz.sh and scripts/soak.sh are the commands to use.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$1
shift
sanitize="" args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=$2; shift 2 ;;
    --sanitize=*) sanitize=${1#--sanitize=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
bash scripts/install-deps.sh
dir="build/stress-${sanitize:-plain}"
mkdir -p build
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOVA_BENCH=OFF -DMOVA_TESTS=OFF -DMOVA_SANITIZE="$sanitize" \
  > "$dir.cmake.log" 2>&1 || { cat "$dir.cmake.log"; exit 1; }
cmake --build "$dir" -j "$(nproc)" --target "$tool" > "$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-"halt_on_error=1 second_deadlock_stack=1"}
exec "$dir/$tool" "${args[@]}"
