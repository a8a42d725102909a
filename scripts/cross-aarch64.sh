#!/usr/bin/env bash
# Cross-compiles the fast CPU engine's own SIMD kernels for ARM64 (their NEON path) with
# their tests, and runs the tests under qemu-user: the check that the one kernel source
# builds and computes right on ARM64, on an x86-64 machine without ARM hardware (emulated,
# so it says nothing about speed). Not the whole kdtrain, which needs ARM64 builds of
# oneDNN and the rest: src/cpu/fast/{winograd_conv,dense_gemm,cpu_path}.cpp, the CPU
# reference they are tested against (src/reference/, src/cpu/reference_ops.cpp),
# GoogleTest from /usr/src/googletest, and tests/{winograd_conv,dense_gemm}_test.cpp.
# Then the NEON outputs' bits against the x86-64 paths' (the same tests of this machine's
# build, $KD_HOST_BUILD, default build/; skipped with a message when it is not built).
#
# Usage: scripts/cross-aarch64.sh [GoogleTest flags, e.g. --gtest_filter=DenseGemm*]
# Builds into $KD_CROSS_DIR (default build-aarch64/), with ccache when it is installed.
# Installs g++-aarch64-linux-gnu and qemu-user when missing and run as root; they are not
# in scripts/setup.sh, because CI does not run this (CTest registers it as cross.aarch64
# only where both are installed).
set -euo pipefail
cd "$(dirname "$0")/.."

CXX=aarch64-linux-gnu-g++
if ! command -v "$CXX" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "cross-aarch64.sh: needs $CXX and qemu-aarch64: run 'apt-get install g++-aarch64-linux-gnu qemu-user' as root" >&2
    exit 1
  fi
  apt-get install -y g++-aarch64-linux-gnu qemu-user >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y g++-aarch64-linux-gnu qemu-user >/dev/null; }
fi

OUT=${KD_CROSS_DIR:-build-aarch64}
mkdir -p "$OUT/obj"
CCACHE=$(command -v ccache || true)
# The flags CMakeLists.txt gives the same files: the warnings, Release's -O3 for the
# library code, -O1 for the tests, and the kernels' -ffp-contract=off (their transforms
# round alike on every path; the GEMM's FMAs are explicit).
COMMON=(-std=gnu++17 -fopenmp -DNDEBUG -Wall -Wextra -Wno-unused-parameter -Werror=switch -Iinclude/core -Iinclude/cpu)
KERNEL=(-O3 -ffp-contract=off -Wno-psabi)
GTEST=/usr/src/googletest/googletest

# At most two compilers at a time (the machines this runs on are shared); a failed one
# stops the script when it is waited for.
pids=()
job() {
  "$@" &
  pids+=($!)
  if [ "${#pids[@]}" -ge 2 ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
}
wait_all() {
  for pid in "${pids[@]}"; do wait "$pid"; done
  pids=()
}
cc() {  # source, object, flags...
  local src=$1 obj=$2
  shift 2
  $CCACHE "$CXX" "${COMMON[@]}" "$@" -c "$src" -o "$obj"
}

started=$(date +%s)
# GoogleTest once: it never changes.
if [ ! -f "$OUT/libgtest.a" ]; then
  job cc "$GTEST/src/gtest-all.cc" "$OUT/obj/gtest-all.o" -O2 -I"$GTEST/include" -I"$GTEST"
  job cc "$GTEST/src/gtest_main.cc" "$OUT/obj/gtest_main.o" -O2 -I"$GTEST/include"
  wait_all
  aarch64-linux-gnu-ar rcs "$OUT/libgtest.a" "$OUT/obj/gtest-all.o" "$OUT/obj/gtest_main.o"
fi
objects=()
for src in src/cpu/fast/winograd_conv.cpp src/cpu/fast/dense_gemm.cpp; do
  objects+=("$OUT/obj/$(basename "$src" .cpp).o")
  job cc "$src" "${objects[-1]}" "${KERNEL[@]}"
done
for src in src/cpu/fast/cpu_path.cpp src/cpu/fast/omp_waits.cpp src/cpu/reference_ops.cpp src/reference/*.cpp; do
  objects+=("$OUT/obj/$(basename "$src" .cpp).o")
  job cc "$src" "${objects[-1]}" -O3
done
tests=(winograd_conv_test dense_gemm_test)
for t in "${tests[@]}"; do job cc "tests/$t.cpp" "$OUT/obj/$t.o" -O1 -I"$GTEST/include"; done
wait_all
for t in "${tests[@]}"; do
  "$CXX" -fopenmp "$OUT/obj/$t.o" "${objects[@]}" "$OUT/libgtest.a" -lpthread -o "$OUT/$t"
done
built=$(date +%s)
echo "cross-aarch64.sh: built in $((built - started)) s; running under $(qemu-aarch64 --version | head -1)"

# Passive OpenMP waits: the tests run 3 threads, and emulated spinning takes the cores
# from the threads being waited for.
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu OMP_WAIT_POLICY=passive
for t in "${tests[@]}"; do
  qemu-aarch64 "$OUT/$t" --gtest_brief=1 "$@" | tee "$OUT/$t.log"
done
ran=$(date +%s)
echo "cross-aarch64.sh: tests passed under qemu-aarch64 in $((ran - built)) s"

# NEON's bits against this machine's x86-64 paths: the tests that compare paths print a hash
# of the widest path's outputs ("bits PATH HASH"), here neon's; the x86-64 build of the same
# tests ($KD_HOST_BUILD, default build/) prints its own, computed from the same inputs.
HOST=${KD_HOST_BUILD:-build}
for t in "${tests[@]}"; do
  neon=$(grep '^bits ' "$OUT/$t.log" || true)
  if [ -z "$neon" ]; then
    echo "cross-aarch64.sh: $t printed no bits (a --gtest_filter left PathsAgreeBitForBit out): not compared with x86-64"
    continue
  fi
  if [ ! -x "$HOST/$t" ]; then
    echo "cross-aarch64.sh: no x86-64 $HOST/$t (build it, or set KD_HOST_BUILD): neon not compared with x86-64"
    continue
  fi
  x86=$(OMP_WAIT_POLICY=passive "$HOST/$t" --gtest_filter='*PathsAgreeBitForBit' | grep '^bits ') ||
    { echo "cross-aarch64.sh: $HOST/$t --gtest_filter='*PathsAgreeBitForBit' failed" >&2; exit 1; }
  if [ "${neon#bits * }" != "${x86#bits * }" ]; then
    echo "cross-aarch64.sh: $t: $neon (ARM64, qemu) but $x86 ($HOST/$t): the paths differ in bits" >&2
    exit 1
  fi
  echo "cross-aarch64.sh: $t: $neon (ARM64, qemu) = $x86 (x86-64)"
done
