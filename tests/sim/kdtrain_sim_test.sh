#!/usr/bin/env bash
# kdtrain_sim_test.sh KDTRAIN_SIM MODEL_DIFF WORKDIR: kdtrain-sim (the CLI on
# the simulated CUDA engine) end to end with --device cuda on small synthetic
# data, every command, against --device reference on the same flags.
#
# Tolerances. The two engines run the same arithmetic in fp32 and differ only
# in summation order (cuBLAS/cuDNN's against the reference's double sums):
# ~1e-7 relative per step. Over the few Adam steps here a weight tensor's
# ||cuda - reference|| / ||reference|| stays below 1e-6 (2.2e-7 seen); Adam's
# lr * g / sqrt(v) can turn a rounding-sized gradient into an lr-sized step,
# so 1e-4 is allowed, far below what a layout or indexing bug moves (order 1).
# Test errors (of 200) must agree within 1: a row whose two largest logits are
# within rounding of each other may fall either way. Resume and
# --deterministic reruns on one engine must be bit-identical (tolerance 0).
set -euo pipefail
kd=$1 diff=$2 work=$3
rm -rf "$work" && mkdir -p "$work/data" && cd "$work"

fail() { echo "kdtrain_sim_test: $*" >&2; exit 1; }
same_model() { "$diff" "$1" "$2" "${3:-1e-4}" || fail "$1 and $2 differ"; }
test_errors() { grep -o '"test_errors": [0-9]*' "$1" | sed 's/.*: //'; }
same_errors() {  # summary.json A, B: every model's test errors within 1
  paste <(test_errors "$1") <(test_errors "$2") | while read -r a b; do
    (( a - b <= 1 && b - a <= 1 )) || fail "test errors differ: $a ($1) vs $b ($2)"
  done
}

# IDX files of 14x14 images: label l is a bright 3x2 block at one of ten
# places on noise, so one epoch learns it well above chance (10%).
make_split() {  # prefix count seed
  LC_ALL=C awk -v n="$2" -v side=14 -v seed="$3" -v img="data/$1-images-idx3-ubyte" \
    -v lab="data/$1-labels-idx1-ubyte" '
    function be(v, f) { printf "%c%c%c%c", int(v / 16777216) % 256, int(v / 65536) % 256, int(v / 256) % 256, v % 256 > f }
    BEGIN {
      srand(seed)
      printf "%c%c%c%c", 0, 0, 8, 3 > img; be(n, img); be(side, img); be(side, img)
      printf "%c%c%c%c", 0, 0, 8, 1 > lab; be(n, lab)
      for (i = 0; i < n; i++) {
        l = int(rand() * 10); printf "%c", l > lab
        r0 = l < 5 ? 2 : 8; c0 = (l % 5) * 3 + 1
        for (y = 0; y < side; y++) for (x = 0; x < side; x++) {
          on = y >= r0 && y < r0 + 3 && x >= c0 && x < c0 + 2
          printf "%c", on ? 180 + int(rand() * 76) : int(rand() * 90) > img
        }
      }
    }'
}
make_split train 400 1
make_split t10k 200 2

# 200 training images in batches of 32 (the last one partial, 8), a conv
# teacher with stride 2 and padding 1 (14 -> 12 -> 6 -> 3), dense students.
flags=(--data data --train-limit 300 --val-size 100 --test-limit 200 --epochs-teacher 1 --epochs-student 1
       --latency-batches 1,8 --no-ort --quiet --seed 1 --lr 0.01 --batch-size 32
       --teacher-arch 'conv:4:3,relu,conv:6:3:2:1,relu,maxpool:2,dropout:0.25,flatten,dense:16,relu,dense:10'
       --student-arch 'flatten,dense:16,relu,dense:10')
both() {  # out command args...: runs on both engines, into cuda-<out> and ref-<out>; args override flags
  local out=$1 command=$2; shift 2
  "$kd" "$command" "${flags[@]}" "$@" --device cuda --out "cuda-$out" || fail "$command $* --device cuda failed"
  "$kd" "$command" "${flags[@]}" "$@" --device reference --out "ref-$out" || fail "$command $* --device reference failed"
}

echo "== run"
both run run
for m in teacher student student_scratch; do same_model "cuda-run/$m.safetensors" "ref-run/$m.safetensors"; done
same_errors cuda-run/summary.json ref-run/summary.json

echo "== train-teacher, distill --teacher"
both teacher train-teacher
same_model cuda-teacher/teacher.safetensors ref-teacher/teacher.safetensors
teacher=$PWD/ref-teacher/teacher.safetensors
both distill distill --teacher "$teacher"
same_model cuda-distill/student.safetensors ref-distill/student.safetensors
same_errors cuda-distill/summary.json ref-distill/summary.json

echo "== distill --hint mse (online targets; the map trains beside the student and is not exported)"
both hint distill --teacher "$teacher" --soft-targets online --hint mse --hint-weight 0.5 --no-baseline
same_model cuda-hint/student.safetensors ref-hint/student.safetensors
same_errors cuda-hint/summary.json ref-hint/summary.json
# Stopped 5 steps into the student's epoch, its checkpoint holding the map: resumes to the same bits.
hint_det=(distill "${flags[@]}" --teacher "$teacher" --soft-targets online --hint cosine --no-baseline --device cuda
          --deterministic)
"$kd" "${hint_det[@]}" --out hint-det || fail "distill --hint --deterministic failed"
status=0
KD_TEST_INTERRUPT_AFTER_STEPS=5 "$kd" "${hint_det[@]}" --out hint-resumed >/dev/null 2>&1 || status=$?
[[ $status != 0 && -f hint-resumed/checkpoint.safetensors ]] || fail "the interrupted --hint run left no checkpoint"
"$kd" "${hint_det[@]}" --resume hint-resumed >/dev/null || fail "--resume of the --hint run failed"
same_model hint-det/student.safetensors hint-resumed/student.safetensors 0

echo "== --recipe patient (augmentation, online targets, cosine, AdamW; short epochs)"
both patient run --recipe patient --epochs-teacher 1 --epochs-student 2
for m in teacher student student_scratch; do same_model "cuda-patient/$m.safetensors" "ref-patient/$m.safetensors"; done
same_errors cuda-patient/summary.json ref-patient/summary.json

echo "== --mixup on the students (augmentation, online targets on the mixed batches)"
both mixup distill --teacher "$teacher" --epochs-student 2 --augment --soft-targets online --mixup 0.4
for m in student student_scratch; do same_model "cuda-mixup/$m.safetensors" "ref-mixup/$m.safetensors"; done

echo "== --select best (3 student epochs)"
both best distill --teacher "$teacher" --epochs-student 3 --select best
same_model cuda-best/student.safetensors ref-best/student.safetensors
[[ $(grep -o '"selected_epoch": [0-9]*' cuda-best/summary.json) == $(grep -o '"selected_epoch": [0-9]*' ref-best/summary.json) ]] ||
  fail "--select best chose another epoch on the two engines"

echo "== eval, latency, export"
eval_line() { "$kd" eval --model "$teacher" "${flags[@]}" --device "$1" 2>&1 | grep -i accuracy || fail "eval --device $1 failed"; }
[[ $(eval_line cuda) == $(eval_line reference) ]] || fail "eval: $(eval_line cuda) vs $(eval_line reference)"
"$kd" latency --model "$teacher" "${flags[@]}" --device cuda --out latency >/dev/null || fail "latency --device cuda failed"
"$kd" export --model "$teacher" --onnx teacher.onnx --quiet || fail "export failed"
[[ -s teacher.onnx ]] || fail "export wrote no teacher.onnx"

echo "== sweep (two students, one T and alpha)"
both sweep sweep --teacher "$teacher" --student-arch 'flatten,dense:8,relu,dense:10;flatten,dense:10' \
  --temperature 4 --alpha 0.9 --no-baseline
same_model cuda-sweep/recommended.safetensors ref-sweep/recommended.safetensors

echo "== --deterministic reruns, --resume after an interrupt"
det=(run "${flags[@]}" --device cuda --deterministic)
"$kd" "${det[@]}" --out det1 && "$kd" "${det[@]}" --out det2 || fail "--deterministic run failed"
status=0
KD_TEST_INTERRUPT_AFTER_STEPS=9 "$kd" "${det[@]}" --out resumed >/dev/null 2>&1 || status=$?
[[ $status != 0 && -f resumed/checkpoint.safetensors ]] || fail "the interrupted run left no checkpoint (exit $status)"
"$kd" "${det[@]}" --resume resumed >/dev/null || fail "--resume failed"
for m in teacher student student_scratch; do
  same_model "det1/$m.safetensors" "det2/$m.safetensors" 0
  same_model "det1/$m.safetensors" "resumed/$m.safetensors" 0
done

echo "== memory preflight: a teacher too large for the simulated 80 GiB"
# 10^6 channels of 12x12: ~40 MB of parameters on the host, hundreds of GiB of
# activations on the device, refused before anything is allocated.
status=0
"$kd" train-teacher "${flags[@]}" --device cuda --out huge --teacher-arch 'conv:1000000:3,relu,conv:1:3,flatten,dense:10' \
  >/dev/null 2>huge.err || status=$?
[[ $status == 1 && $(grep -c '^kdtrain: ' huge.err) == 1 ]] && grep -q 'GiB available; lower' huge.err ||
  fail "memory preflight: exit $status, stderr: $(cat huge.err)"
grep '^kdtrain: ' huge.err
echo "kdtrain_sim_test: every command agrees with --device reference"
