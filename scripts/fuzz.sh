#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, CPU-only) into build-fuzz/
# and runs each for the given number of seconds (default 60). Non-zero exit on
# any crash, leak or sanitizer report. Every tests/fuzz/X_fuzz.cpp is a target;
# where present, tests/fuzz/X_fuzz.dict is its libFuzzer dictionary and
# tests/fuzz/seeds/X_fuzz/ its seed inputs (read, never written: new inputs go
# to build-fuzz/corpus-X_fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DKD_WITH_CUDA=OFF -DKD_BUILD_TESTS=OFF -DKD_BUILD_BENCH=OFF \
  -DKD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fuzzers=$(cd tests/fuzz && ls ./*_fuzz.cpp | sed 's|^\./||; s|\.cpp$||')
# shellcheck disable=SC2086  # one target name per word
cmake --build build-fuzz -j"$(($(nproc) + 1))" --target $fuzzers
# The readers are fuzzed at the same time, each libFuzzer on one process: on
# CI's two cores three fuzzers share them, a third less work per reader than
# one after another, in a third of the wall time.
fuzz_one() {
  local name="$1" fuzzer="build-fuzz/$1" corpus="build-fuzz/corpus-$1"
  mkdir -p "$corpus"
  local extra=() seeds=()
  [[ -f "tests/fuzz/$name.dict" ]] && extra+=(-dict="tests/fuzz/$name.dict")
  [[ -d "tests/fuzz/seeds/$name" ]] && seeds+=("tests/fuzz/seeds/$name")
  "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" "$corpus" "${seeds[@]}" \
    2>"build-fuzz/$name.log"
}
declare -A pids=()
for name in $fuzzers; do
  echo "fuzz: $name for ${seconds}s"
  fuzz_one "$name" &
  pids[$name]=$!
done
failed=0
for name in $fuzzers; do
  if ! wait "${pids[$name]}"; then
    tail -40 "build-fuzz/$name.log"
    echo "fuzz: $name FAILED" >&2
    failed=1
  fi
  grep -E "^stat::number_of_executed_units" "build-fuzz/$name.log" | sed "s/^/$name: /" || true
done
((failed == 0)) || exit 1
echo "fuzz: all targets ran clean"
