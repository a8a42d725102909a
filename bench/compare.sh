#!/usr/bin/env bash
# The end-to-end comparison, in one call on one GPU: kdtrain's default pipeline
# and bench/pytorch_reference.py (eager and torch.compile) on the same data,
# then the side-by-side table from bench/compare_table.py, printed and written
# to ${OUT:-.}/comparison.md for bench/RESULTS.md.
# Usage: bench/compare.sh KDTRAIN_BINARY DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
kdtrain="${1:?usage: bench/compare.sh KDTRAIN_BINARY DATA_DIR}"
data="${2:?usage: bench/compare.sh KDTRAIN_BINARY DATA_DIR}"
out="${OUT:-.}/compare"
mkdir -p "$out"
"$kdtrain" --data "$data" --device cuda --out "$out/kdtrain" --quiet
python3 bench/pytorch_reference.py --data "$data" --mode both --json "$out/pytorch.json"
python3 bench/compare_table.py "$out/kdtrain/summary.json" "$out/pytorch.json" | tee "${OUT:-.}/comparison.md"
