#!/usr/bin/env bash
# Builds and runs bench/cpu_libs.cpp: the teacher's convolutions and dense
# layer on oneDNN and on OpenBLAS (im2col + SGEMM), one thread, CPU time, the
# measurement behind the fast CPU engine's choice of oneDNN (docs/cpu-engines.md,
# "Why oneDNN"). Needs libdnnl-dev and libopenblas-dev; skips (exit 0, one line)
# without either, since kdtrain itself does not use OpenBLAS.
#
# OpenBLAS is found by compiling a call to openblas_set_num_threads with
# `pkg-config openblas`'s flags: a cblas.h alone may be the reference BLAS's
# (libblas-dev), which has no such function.
#
# Usage: bench/cpu_libs.sh [--quick]
#   --quick: 1 warm-up and 3 timed calls per measurement instead of 3 and 15 (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
name=cpu_libs
source bench/script_lib.sh
command -v g++ >/dev/null 2>&1 || skip "no g++"
blas_flags=$(pkg-config --cflags --libs openblas 2>/dev/null || echo -lopenblas)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '#include <cblas.h>\nint main() { openblas_set_num_threads(1); }\n' >"$out/probe.cpp"
# shellcheck disable=SC2086  # the pkg-config flags are several words
g++ "$out/probe.cpp" -o "$out/probe" $blas_flags >/dev/null 2>&1 ||
  skip "no OpenBLAS (its cblas.h and library; apt-get install libopenblas-dev)"
printf '#include <dnnl.hpp>\nint main() { dnnl::engine e(dnnl::engine::kind::cpu, 0); }\n' >"$out/probe.cpp"
g++ -std=c++17 "$out/probe.cpp" -o "$out/probe" -ldnnl >/dev/null 2>&1 || skip "no oneDNN (apt-get install libdnnl-dev)"
# shellcheck disable=SC2086
g++ -O3 -std=c++17 bench/cpu_libs.cpp -o "$out/cpu_libs" -ldnnl $blas_flags
echo "cpu_libs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%Y-%m-%d)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 "$out/cpu_libs" "$@"
