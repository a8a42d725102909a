#!/usr/bin/env bash
# The default pipeline's test accuracies over several seeds, on the fast CPU
# engine: how much of a difference between two runs (or between a run and a
# target) is the seed. Each seed runs `kdtrain --device cpu --seed S` with
# everything else default except latency (batch 1 only, no ONNX Runtime),
# which does not touch the accuracies. For a fixed --threads the accuracies
# are deterministic, so the machine's load changes only how long it takes
# (about 2 minutes per seed on 2 cores).
#
# Usage: bench/accuracy_seeds.sh [KDTRAIN_BINARY] [DATA_DIR]
#   env: SEEDS (default "0 1 2 3 4"), THREADS (default: nproc), OUT (default: a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
kdtrain="${1:-build/kdtrain}"
data="${2:-data/mnist}"
seeds="${SEEDS:-0 1 2 3 4}"
threads="${THREADS:-$(nproc)}"
[[ -x "$kdtrain" ]] || { echo "accuracy_seeds: no kdtrain binary at $kdtrain (build first: scripts/build.sh)" >&2; exit 1; }
out="${OUT:-$(mktemp -d)}"
echo "accuracy_seeds: seeds $seeds, $threads threads, runs in $out, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
dirs=()
for s in $seeds; do
  "$kdtrain" --device cpu --threads "$threads" --data "$data" --seed "$s" --latency-batches 1 --no-ort --quiet \
    --out "$out/seed$s"
  dirs+=("$out/seed$s")
done
python3 bench/accuracy_table.py "${dirs[@]}"
