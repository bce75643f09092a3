#!/usr/bin/env bash
# tests/install/check_configure.sh SOURCE_DIR WORK_DIR — configures mova as a user without the competitors
# would: none of jemalloc, mimalloc, tcmalloc, Google Benchmark or GoogleTest findable, benchmarks asked for.
# The configure must succeed and say what it left out. Then as a subproject (add_subdirectory), where tests
# and benchmarks are off by default.
set -euo pipefail
src=$(cd "$1" && pwd)
work=$2
rm -rf "$work"
mkdir -p "$work"
fail() { echo "check_configure: $*" >&2; exit 1; }
hide=(-DCMAKE_DISABLE_FIND_PACKAGE_mimalloc=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON)

PKG_CONFIG_LIBDIR=/nonexistent cmake -S "$src" -B "$work/alone" -DMOVA_TESTS=OFF -DMOVA_BENCH=ON "${hide[@]}" \
  > "$work/alone.log" 2>&1 || { cat "$work/alone.log"; fail "configure without the competitors failed"; }
for what in "jemalloc not found" "mimalloc not found" "tcmalloc not found" "Google Benchmark not found"; do
  grep -q "$what" "$work/alone.log" || fail "configure did not say '$what'"
done
grep -q "mova_microbench" "$work/alone/bench/Makefile" && fail "microbenchmarks configured without Google Benchmark"

mkdir -p "$work/outer"
cat > "$work/outer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.22)
project(outer CXX)
add_subdirectory("$src" mova)
add_executable(app app.cc)
target_link_libraries(app PRIVATE mova::mova)
CMAKE
printf '#include <mova/pool.h>\nint main() { return mova::Pool::Create().ok() ? 0 : 1; }\n' > "$work/outer/app.cc"
PKG_CONFIG_LIBDIR=/nonexistent cmake -S "$work/outer" -B "$work/outer/build" "${hide[@]}" > "$work/outer.log" 2>&1 \
  || { cat "$work/outer.log"; fail "configure as a subproject failed"; }
grep -q "^MOVA_TESTS:BOOL=OFF" "$work/outer/build/CMakeCache.txt" || fail "tests are on in a subproject"
grep -q "^MOVA_BENCH:BOOL=OFF" "$work/outer/build/CMakeCache.txt" || fail "benchmarks are on in a subproject"
echo "check_configure: configures without any competitor, and as a subproject with tests and benchmarks off"
