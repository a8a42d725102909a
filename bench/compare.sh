#!/usr/bin/env bash
# The end-to-end comparison, in one call on one GPU: kdtrain's default pipeline
# and bench/pytorch_reference.py (eager and torch.compile) on the same data,
# then the side-by-side table from bench/compare_table.py, printed and written
# to ${OUT:-runs}/comparison.md for bench/RESULTS.md (runs/ is git-ignored). Skips (exit 0, one line)
# without a CUDA device, a python3 with CUDA torch, the binary or the data.
#
# Usage: bench/compare.sh [--quick] [KDTRAIN_BINARY] [DATA_DIR]
#   defaults: build/kdtrain, data/mnist
#   --quick: both on a 1,000-image subset, one epoch each, latency at batch 1, PyTorch eager only
#            (a check of the script, not a comparison for RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
name=compare
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
kdtrain="${1:-build/kdtrain}"
data="${2:-data/mnist}"
nvidia-smi -L 2>/dev/null | grep -q '^GPU' || skip "no CUDA device (nvidia-smi lists none)"
require_torch
"$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
  skip "this torch ($("$python" -c 'import torch; print(torch.__version__)')) sees no CUDA device"
require_kdtrain "$kdtrain"
require_data "$data"
flags=()
mode=both
if [[ $quick == 1 ]]; then
  flags=("${quick_run_flags[@]}")
  mode=eager
fi
out="${OUT:-runs}/compare"
mkdir -p "$out"
"$kdtrain" --data "$data" --device cuda --out "$out/kdtrain" --quiet ${flags[@]+"${flags[@]}"}
"$python" bench/pytorch_reference.py --data "$data" --mode "$mode" --json "$out/pytorch.json" ${flags[@]+"${flags[@]}"}
"$python" bench/compare_table.py "$out/kdtrain/summary.json" "$out/pytorch.json" | tee "${OUT:-runs}/comparison.md"
