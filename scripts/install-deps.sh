#!/usr/bin/env bash
# Installs the Debian 12 packages mova builds, tests and benchmarks with, if any is missing. Idempotent.
set -euo pipefail
packages=(
  cmake g++ make pkg-config
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
  gnuplot-nox
  libasio-dev redis-server redis-tools
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
