#!/usr/bin/env bash
# tests/install/check_install.sh BUILD_DIR WORK_DIR — installs a built mova into a fresh prefix and checks what a
# user gets: the public headers (and the five of handles/ that ReadGuard::read and Pool::pin_owned inline), libmova.so
# (versioned, exporting the API and nothing else), a position-independent libmova.a, movaConfig.cmake and
# mova.pc; then builds and runs consumers against the installed tree only: C++ with find_package (shared and
# static), C with pkg-config (shared and static), and a shared object made from libmova.a, loaded with dlopen.
set -euo pipefail
build=$(cd "$1" && pwd)
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
fail() { echo "check_install: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" > "$work/install.log"

# Headers: exactly the public ones and mova/internal/handles/ (inline_read.h, inline_pin.h and what they include).
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
expected="./mova/export.h ./mova/handle.h ./mova/handle_owner.h ./mova/internal/handles/access_record.h \
./mova/internal/handles/entry_layout.h ./mova/internal/handles/handle_seal.h ./mova/internal/handles/inline_pin.h \
./mova/internal/handles/inline_read.h ./mova/mova.h ./mova/owned_index.h \
./mova/pool.h ./mova/pool_options.h ./mova/stats.h ./mova/units.h ./mova/version.h "
[ "$headers" = "$expected" ] || fail "installed headers are '$headers', expected '$expected'"

libdir=$(dirname "$(find "$prefix" -name libmova.a | head -1)")
[ -f "$libdir/libmova.a" ] || fail "no libmova.a"
so=$(find "$libdir" -name 'libmova.so.*.*.*' -type f | head -1)
[ -n "$so" ] || fail "no versioned libmova.so"
soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -L "$libdir/$soname" ] && [ -L "$libdir/libmova.so" ] || fail "missing symlinks $soname / libmova.so"
[ -f "$libdir/cmake/mova/movaConfig.cmake" ] && [ -f "$libdir/cmake/mova/movaConfigVersion.cmake" ] \
  || fail "no movaConfig.cmake"
[ -f "$libdir/pkgconfig/mova.pc" ] || fail "no mova.pc"

# The dynamic symbols are the API: the C functions of mova.h and the C++ API's names, nothing else.
nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u > "$work/symbols"
c++filt < "$work/symbols" > "$work/symbols.demangled"
stray=$(grep -Ev '^(mova_[a-z_]+|mova::(Pool::|Pinned::(mutable_data|DropCountedPin)|ReadGuard::(ReadSlow|End)|FormatStats(Text|Json)|FormatCycleCounts|ParsePoolOptions|ValidatePoolOptions|EnvironmentOptionsStatus|internal::(EnvironmentDefaults|thread_binding))).*$' \
  "$work/symbols.demangled" || true)
[ -z "$stray" ] || fail "libmova.so exports more than the API:
$stray"
for f in $(sed -n 's/^MOVA_API [^(]*[ *]\(mova_[a-z_]*\)(.*/\1/p' "$prefix/include/mova/mova.h"); do
  grep -qx "$f" "$work/symbols" || fail "libmova.so does not export $f (declared in mova.h)"
done
grep -q '^mova::Pool::allocate' "$work/symbols.demangled" || fail "libmova.so does not export mova::Pool::allocate"
echo "check_install: libmova.so ($soname) exports $(wc -l < "$work/symbols") symbols, all of the API"

# C++ with find_package, against the installed tree only.
cmake -S "$here/cxx_consumer" -B "$work/cxx" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  > "$work/cxx.cmake.log" || { cat "$work/cxx.cmake.log"; fail "find_package(mova) consumer did not configure"; }
cmake --build "$work/cxx" -j "$(nproc)" > "$work/cxx.build.log" 2>&1 \
  || { cat "$work/cxx.build.log"; fail "find_package(mova) consumer did not build"; }
"$work/cxx/consumer_shared"
"$work/cxx/consumer_static"
# (Outputs are read whole before grep: with pipefail, grep -q closing the pipe early would fail the pipeline.)
loads() { local out; out=$(ldd "$1"); grep -q "$libdir/$soname" <<< "$out"; }
needs_libmova() { local out; out=$(readelf -d "$1"); grep -q 'libmova' <<< "$out"; }
loads "$work/cxx/consumer_shared" || fail "consumer_shared does not load the installed $soname"
! needs_libmova "$work/cxx/consumer_static" || fail "consumer_static needs libmova.so"

# C with pkg-config.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --exists mova || fail "pkg-config does not find mova"
[ "$(pkg-config --modversion mova)" = "$(sed -n 's/#define MOVA_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/mova/version.h")" ] \
  || fail "mova.pc's version differs from version.h"
src=$here/c_consumer
cc -std=c11 -Wall -Werror $(pkg-config --cflags mova) "$src/main.c" "$src/consumer.c" -o "$work/c_shared" \
  $(pkg-config --libs mova) -Wl,-rpath,"$libdir"
"$work/c_shared"
loads "$work/c_shared" || fail "c_shared does not load the installed $soname"
static_libs=$(pkg-config --static --libs mova | sed 's/-lmova\b/-l:libmova.a/')
cc -std=c11 -Wall -Werror $(pkg-config --cflags mova) "$src/main.c" "$src/consumer.c" -o "$work/c_static" $static_libs
"$work/c_static"
! needs_libmova "$work/c_static" || fail "c_static needs libmova.so"

# A shared object made from libmova.a (a Redis module, a Python extension), loaded with dlopen.
cc -std=c11 -shared -fPIC $(pkg-config --cflags mova) "$src/consumer.c" -o "$work/libplugin.so" \
  -Wl,--whole-archive "$libdir/libmova.a" -Wl,--no-whole-archive $(pkg-config --static --libs mova | sed 's/-lmova\b//') \
  || fail "libmova.a cannot go into a shared object"
cc -std=c11 "$src/dlopen_main.c" -o "$work/dlopen_main" -ldl
"$work/dlopen_main" "$work/libplugin.so"
echo "check_install: all consumers built against $prefix only and ran"
