#!/usr/bin/env bash
# The fast CPU engine against the core's measured fp32 peak, on every SIMD path
# this CPU can run (bench/cpu_peak.cpp, one run per path with KD_CPU_PATH set,
# which also caps oneDNN at that ISA): the teacher's training step at batch 64
# and batch-1 inference of the teacher and the student, in GFLOP/s and % of the
# path's peak, one thread, CPU time. Skips (exit 0, one line) without the binary.
#
# Usage: bench/cpu_peak.sh [--quick] [CPU_PEAK_BINARY]
#   --quick: 3 rounds instead of 20 (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
name=cpu_peak
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
bin="${1:-build/cpu_peak}"
[[ -x "$bin" ]] || skip "no cpu_peak binary at $bin (build it: cmake --build build --target cpu_peak)"
rounds=$([[ $quick == 1 ]] && echo 3 || echo 20)
echo "cpu_peak: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(date -u +%Y-%m-%dT%H:%M:%SZ);" \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
flags=$(grep -m1 '^flags' /proc/cpuinfo)
paths=(scalar)
[[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]] && paths=(avx2 "${paths[@]}")
[[ " $flags " == *" avx512f "* && " $flags " == *" avx512bw "* ]] && paths=(avx512 "${paths[@]}")
for path in "${paths[@]}"; do
  KD_CPU_PATH=$path OMP_NUM_THREADS=1 "$bin" "$rounds"
done
