#!/usr/bin/env bash
# Teacher training throughput on the CPU: kdtrain's fast engine against
# Debian's PyTorch (python3-torch) on this machine, same thread count, same
# architecture, batch, optimiser and data, side by side in one call.
#
# Each repeat runs one kdtrain teacher epoch on the first N training images
# (`train-teacher --device cpu --epochs-teacher 1 --train-limit N`, its
# samples_per_s from metrics.csv) and then the same epoch in PyTorch
# (bench/cpu_compare.py), back to back, so both see the same machine load.
# Prints every run, the medians, their ratios and the load average; skips
# (exit 0, one line) without a python3 with torch, the binary or the data.
#
# Both run with OMP_WAIT_POLICY=passive (kdtrain sets it for itself when
# unset; PyTorch uses the same libgomp and gets the same setting, so neither
# spins on a shared machine). Override by exporting OMP_WAIT_POLICY.
#
# Usage: bench/cpu_compare.sh [--quick] [KDTRAIN_BINARY] [DATA_DIR]
#   env: THREADS (default: nproc), TRAIN_LIMIT (default 6400 = 100 batches), REPEATS (default 3)
#   --quick: one repeat of 640 images (10 batches) unless TRAIN_LIMIT / REPEATS say otherwise (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
name=cpu_compare
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
kdtrain="${1:-build/kdtrain}"
data="${2:-data/mnist}"
threads="${THREADS:-$(nproc)}"
limit="${TRAIN_LIMIT:-$([[ $quick == 1 ]] && echo 640 || echo 6400)}"
repeats="${REPEATS:-$([[ $quick == 1 ]] && echo 1 || echo 3)}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
require_torch
require_kdtrain "$kdtrain"
require_data "$data"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "cpu_compare: teacher, batch 64, Adam, $limit images per epoch, $threads threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
echo "cpu_compare: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) hardware threads;" \
     "torch $("$python" -c 'import torch; print(torch.__version__)'); $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$repeats"); do
  "$kdtrain" train-teacher --device cpu --threads "$threads" --data "$data" --train-limit "$limit" \
    --epochs-teacher 1 --test-limit 100 --latency-batches 1 --quiet --out "$tmp/run$r"
  k=$(awk -F, '$1 == "teacher" {print $8}' "$tmp/run$r/metrics.csv")
  t=$("$python" bench/cpu_compare.py --data "$data" --threads "$threads" --train-limit "$limit" | awk '{print $2}')
  printf 'repeat %d: kdtrain %8.1f samples/s   pytorch %8.1f samples/s   load %s\n' "$r" "$k" "$t" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  echo "$k" >>"$tmp/k"
  echo "$t" >>"$tmp/t"
  awk -v k="$k" -v t="$t" 'BEGIN {print k / t}' >>"$tmp/r"
done
k=$(median <"$tmp/k")
t=$(median <"$tmp/t")
r=$(median <"$tmp/r")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# The paired ratio (both engines back to back in one repeat, under the same
# load) is the comparison; the ratio of the medians is printed beside it.
awk -v k="$k" -v t="$t" -v r="$r" -v n="$threads" 'BEGIN {
  printf "median over repeats: kdtrain %.1f samples/s, pytorch %.1f samples/s, ratio of medians %.2fx (%d threads)\n", k, t, k / t, n
  printf "median of the paired ratios: %.2fx\n", r }'
