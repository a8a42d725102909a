#!/usr/bin/env bash
# The default pipeline's test accuracies over several seeds, on the fast CPU
# engine: how much of a difference between two runs (or between a run and a
# target) is the seed. Each seed runs `kdtrain --device cpu --seed S` with
# everything else default except latency (batch 1 only, no ONNX Runtime),
# which does not touch the accuracies. For a fixed --threads the accuracies
# are deterministic, so the machine's load changes only how long it takes
# (about 2 minutes per seed on 2 cores).
#
# Usage: bench/accuracy_seeds.sh [--quick] [KDTRAIN_BINARY] [DATA_DIR]
#   env: SEEDS (default "0 1 2 3 4"), THREADS (default: nproc), OUT (default: a temporary directory)
#   --quick: seeds 0 and 1 on a 1,000-image subset, one epoch each (CI, under a minute): checks the
#            script, not the accuracies. Skips (exit 0, one line) without the binary or the data.
set -euo pipefail
cd "$(dirname "$0")/.."
name=accuracy_seeds
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
kdtrain="${1:-build/kdtrain}"
data="${2:-data/mnist}"
seeds="${SEEDS:-0 1 2 3 4}"
threads="${THREADS:-$(nproc)}"
flags=(--latency-batches 1)
if [[ $quick == 1 ]]; then
  seeds="${SEEDS:-0 1}"
  flags=("${quick_run_flags[@]}")
fi
require_kdtrain "$kdtrain"
require_data "$data"
out="${OUT:-$(mktemp -d)}"
echo "accuracy_seeds: seeds $seeds, $threads threads, runs in $out, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
dirs=()
for s in $seeds; do
  "$kdtrain" --device cpu --threads "$threads" --data "$data" --seed "$s" "${flags[@]}" --no-ort --quiet \
    --out "$out/seed$s"
  dirs+=("$out/seed$s")
done
python3 bench/accuracy_table.py "${dirs[@]}"
