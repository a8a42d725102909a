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
cmake --build build-fuzz -j"$(nproc)" --target $fuzzers
for name in $fuzzers; do
  fuzzer="build-fuzz/$name"
  corpus="build-fuzz/corpus-$name"
  mkdir -p "$corpus"
  echo "fuzz: $name for ${seconds}s"
  extra=()
  [[ -f "tests/fuzz/$name.dict" ]] && extra+=(-dict="tests/fuzz/$name.dict")
  seeds=()
  [[ -d "tests/fuzz/seeds/$name" ]] && seeds+=("tests/fuzz/seeds/$name")
  "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" "$corpus" "${seeds[@]}" \
    2>"build-fuzz/$name.log" ||
    { tail -40 "build-fuzz/$name.log"; echo "fuzz: $name FAILED" >&2; exit 1; }
  grep -E "^stat::number_of_executed_units" "build-fuzz/$name.log" || true
done
echo "fuzz: all targets ran clean"
