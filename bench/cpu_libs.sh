#!/usr/bin/env bash
# Builds and runs bench/cpu_libs.cpp: the teacher's convolutions and dense
# layer on oneDNN and on OpenBLAS (im2col + SGEMM), one thread, CPU time, the
# measurement behind the fast CPU engine's choice of oneDNN (docs/cpu-engines.md,
# "Why oneDNN"). Needs libdnnl-dev and libopenblas-dev; skips (exit 0) without
# OpenBLAS, which kdtrain itself does not use.
# Usage: bench/cpu_libs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f /usr/include/x86_64-linux-gnu/cblas.h && ! -f /usr/include/cblas.h ]]; then
  echo "cpu_libs: skipped: no OpenBLAS headers (apt-get install libopenblas-dev)"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -O3 -std=c++17 bench/cpu_libs.cpp -o "$out/cpu_libs" -ldnnl -lopenblas
echo "cpu_libs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%Y-%m-%d)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 "$out/cpu_libs"
