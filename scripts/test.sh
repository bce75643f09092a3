#!/usr/bin/env bash
# Builds mova three ways and runs its tests: plain (all tests, RSS bounds included), AddressSanitizer +
# UndefinedBehaviorSanitizer (all tests; the RSS-bound tests skip themselves), ThreadSanitizer (the
# concurrency tests). Installs missing Debian packages first. Exit code 0 only if every run passed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
total_pass=0
total_fail=0

run() {  # name, ctest label filter, cmake args...
  local name=$1 labels=$2
  shift 2
  echo "=== ${name} build"
  cmake -S . -B "build/${name}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOVA_BENCH=OFF "$@" > "build/${name}.cmake.log" \
    || { cat "build/${name}.cmake.log"; exit 1; }
  cmake --build "build/${name}" -j "${jobs}" > "build/${name}.build.log" 2>&1 \
    || { tail -50 "build/${name}.build.log"; exit 1; }
  echo "=== ${name} tests"
  local log="build/${name}.ctest.log" rc=0
  (cd "build/${name}" && ctest --output-on-failure -j "${jobs}" -L "${labels}") 2>&1 | tee "${log}" || rc=$?
  local line
  line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "${log}" | tail -1 || true)
  if [ -z "${line}" ]; then
    echo "${name}: ctest printed no summary"; exit 1
  fi
  local failed all
  failed=$(echo "${line}" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  all=$(echo "${line}" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
  total_pass=$((total_pass + all - failed))
  total_fail=$((total_fail + failed))
  [ "${rc}" -eq 0 ] || echo "${name}: ctest exited ${rc}"
}

mkdir -p build
run plain "."
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run asan "." -DMOVA_SANITIZE=address
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run tsan concurrency -DMOVA_SANITIZE=thread
echo "all builds: ${total_pass} passed, ${total_fail} failed"
[ "${total_fail}" -eq 0 ]
