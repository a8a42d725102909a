#!/usr/bin/env bash
# What each ingredient of `--recipe patient` adds to the distilled MLP student
# (issue #21): the student is distilled from one saved teacher under a ladder
# of settings, each step adding one ingredient to the one before (mixup, the
# hint, and both, to patient), and each
# distilled student is compared with the scratch student that `kdtrain distill`
# trains beside it with the same augmentation, schedule and budget. The fast
# CPU engine's accuracies are deterministic for a fixed --threads, so the
# machine's load changes only how long this takes (~13 minutes per seed on
# 2 idle AVX-512 cores for the first six steps; mixup-hint is one more
# patient-length pair).
#
# Usage: bench/recipe_ingredients.sh [--quick] TEACHER [KDTRAIN_BINARY] [DATA_DIR]
#   TEACHER: a teacher .safetensors (e.g. the teacher.safetensors of a `kdtrain --recipe patient` run)
#   env: SEEDS (default "0 1 2"), THREADS (default: nproc), OUT (default: a temporary directory),
#        STEPS (default: every step, e.g. "seed augment")
#   --quick: one seed, a 1,000-image subset, one epoch per step (CI): checks the script, not the
#            accuracies. Skips (exit 0, one line) without the binary, the data or the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
name=recipe_ingredients
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
teacher="${1:-}"
kdtrain="${2:-build/kdtrain}"
data="${3:-data/mnist}"
require_kdtrain "$kdtrain"
require_data "$data"
[[ -n "$teacher" && -f "$teacher" ]] || skip "no teacher file given (usage: $0 TEACHER [KDTRAIN] [DATA])"
seeds="${SEEDS:-0 1 2}"
threads="${THREADS:-$(nproc)}"

# The ladder: step name, then the flags it runs with (each adds to the step above).
declare -A step_flags=(
  [seed]="--recipe seed"
  [augment]="--recipe seed --augment --soft-targets online"
  [schedule]="--recipe seed --augment --soft-targets online --lr-schedule cosine --warmup-epochs 1 --weight-decay 0.01"
  [patient]="--recipe patient"
  [mixup]="--recipe patient --mixup 0.2"
  [hint]="--recipe patient --hint cosine"
  [mixup-hint]="--recipe patient --mixup 0.2 --hint cosine"
)
# The step each one adds to: the ladder up to patient, then mixup, the hint and both added to patient.
declare -A step_base=([augment]=seed [schedule]=augment [patient]=schedule [mixup]=patient [hint]=patient
                      [mixup-hint]=patient)
steps="${STEPS:-seed augment schedule patient mixup hint mixup-hint}"
extra=(--latency-batches 1 --no-ort --quiet)
if [[ $quick == 1 ]]; then
  seeds="${SEEDS:-0}"
  extra=(--train-limit 1000 --val-size 200 --test-limit 500 --epochs-student 1 --latency-batches 1 --no-ort --quiet)
fi
out="${OUT:-$(mktemp -d)}"
echo "recipe_ingredients: steps $steps, seeds $seeds, $threads threads, teacher $teacher, runs in $out," \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
dirs=()
for step in $steps; do
  [[ -n "${step_flags[$step]:-}" ]] || { echo "$name: unknown step '$step' (one of: ${!step_flags[*]})" >&2; exit 2; }
  for s in $seeds; do
    dir="$out/$step-seed$s"
    # shellcheck disable=SC2086  # the step's flags are words
    "$kdtrain" distill --teacher "$teacher" --device cpu --threads "$threads" --data "$data" --seed "$s" \
      ${step_flags[$step]} "${extra[@]}" --out "$dir"
    dirs+=("$step${step_base[$step]:+:${step_base[$step]}}=$dir")
  done
done
python3 bench/recipe_ingredients.py "${dirs[@]}"
