# shellcheck shell=bash disable=SC2034,SC2154  # sets variables for, and reads `name` from, the sourcing script
# Shared by the bench/*.sh scripts (sourced, not run): the --quick flag, and
# the one-line skip (exit 0) when a dependency is missing, which CTest's
# SKIP_REGULAR_EXPRESSION "skipped:" reports as SKIPPED.
# Before sourcing, set `name` (the script's name in messages).

# skip REASON: prints "NAME: skipped: REASON" and exits 0.
skip() {
  echo "$name: skipped: $*"
  exit 0
}

# Sets `quick` to 1 and drops a leading --quick from the arguments: use as
#   parse_quick "$@"; set -- "${rest[@]}"
parse_quick() {
  quick=0
  rest=()
  for arg in "$@"; do
    if [[ "$arg" == --quick ]]; then quick=1; else rest+=("$arg"); fi
  done
}

# require_kdtrain BINARY / require_data DIR: skip when either is absent.
require_kdtrain() {
  [[ -x "$1" ]] || skip "no kdtrain binary at $1 (build first: scripts/build.sh)"
}
require_data() {
  [[ -f "$1/train-images-idx3-ubyte" || -f "$1/train-images-idx3-ubyte.gz" ]] ||
    skip "no MNIST-format data in $1 (data/fetch.sh)"
}

# Sets `python` to a python3 that imports torch (this one or Debian's), or skips.
require_torch() {
  python=""
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
      python="$candidate"
      return
    fi
  done
  skip "no python3 with torch (apt-get install python3-torch)"
}

# The flags both kdtrain and bench/pytorch_reference.py take for a quick,
# CI-sized run: a small subset, one epoch each, latency at batch 1 only.
quick_run_flags=(--train-limit 1000 --val-size 200 --test-limit 500 --epochs-teacher 1 --epochs-student 1
                 --latency-batches 1)
