#!/usr/bin/env bash
# Inference latency: kdtrain's CPU engine against ONNX Runtime, side by side in
# one process. Each round runs `kdtrain latency` on the teacher and on the
# student: kdtrain times the model, then ONNX Runtime (loaded in the same
# process through its C API) times the exported model on the same test images
# with the same threads and the same slicing, back to back. Prints every round,
# then per model and batch the median of each side over rounds and the median
# of the paired ratios ONNX Runtime / kdtrain (above 1: kdtrain is faster).
# The paired ratio is the number to quote on a shared machine: both sides of a
# pair ran within seconds of each other, under the same load.
#
# Models: $MODELS/teacher.safetensors and $MODELS/student.safetensors, or a
# pair trained here for one epoch on a subset (latency does not depend on how
# well a model is trained). Skips (exit 0, one line) without the binary, the
# data or ONNX Runtime (scripts/onnxruntime.sh).
#
# ONNX Runtime's instruction set: as shipped it takes the widest this CPU has.
# ORT_ISA=avx2 runs it on its AVX2 kernels instead, through a patched copy of its
# library (bench/ort_avx2_copy.py): the like-for-like partner of kdtrain's forced
# AVX2 path, so it is the default when KD_CPU_PATH=avx2 (ORT_ISA=native keeps the
# library as shipped).
#
# Usage: bench/ort_compare.sh [--quick] [KDTRAIN_BINARY] [DATA_DIR]
#   env: THREADS (default: nproc), ROUNDS (default 3), BATCHES (default 1,64,1024,10000), MODELS (see above),
#        ORT_ISA (native or avx2; see above)
#   --quick: batches 1,64, one round, models trained on 500 images (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
name=ort_compare
source bench/script_lib.sh
parse_quick "$@"
set -- ${rest[@]+"${rest[@]}"}
kdtrain="${1:-build/kdtrain}"
data="${2:-data/mnist}"
threads="${THREADS:-$(nproc)}"
rounds="${ROUNDS:-$([[ $quick == 1 ]] && echo 1 || echo 3)}"
batches="${BATCHES:-$([[ $quick == 1 ]] && echo 1,64 || echo 1,64,1024,10000)}"
require_kdtrain "$kdtrain"
require_data "$data"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ort_isa="${ORT_ISA:-$([[ "${KD_CPU_PATH:-}" == avx2 ]] && echo avx2 || echo native)}"
case "$ort_isa" in
  native) ;;
  avx2)
    ort_lib="${KD_ORT_LIB:-$(ls "${KD_ORT_DIR:-.ort}"/node_modules/onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime.so.1 2>/dev/null | tail -1)}"
    [[ -f "$ort_lib" ]] || skip "ONNX Runtime not installed (scripts/onnxruntime.sh)"
    python3 bench/ort_avx2_copy.py "$ort_lib" "$tmp/libonnxruntime.so.1"
    export KD_ORT_LIB="$tmp/libonnxruntime.so.1" ;;
  *) echo "ort_compare: ORT_ISA=$ort_isa: use native or avx2" >&2; exit 2 ;;
esac
models="${MODELS:-}"
if [[ -z "$models" ]]; then
  models="$tmp/models"
  "$kdtrain" run --device cpu --threads "$threads" --data "$data" --train-limit "$([[ $quick == 1 ]] && echo 500 || echo 5000)" \
    --val-size 200 --test-limit 1000 --epochs-teacher 1 --epochs-student 1 --no-baseline --no-ort --latency-batches 1 \
    --quiet --out "$models"
fi

echo "ort_compare: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) hardware threads;" \
     "$threads threads; batches $batches; kdtrain path ${KD_CPU_PATH:-widest}, ONNX Runtime $ort_isa;" \
     "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  for m in teacher student; do
    out="$tmp/$m.$r.txt"
    "$kdtrain" latency --device cpu --threads "$threads" --data "$data" --model "$models/$m.safetensors" \
      --latency-batches "$batches" >"$out"
    if grep -q "ONNX Runtime not installed" "$out"; then skip "$(grep -m1 'ONNX Runtime not installed' "$out")"; fi
    [[ $r == 1 ]] && grep -m1 "safetensors on " "$out" && tail -1 "$out"
    echo "round $r, $m (load $(cut -d' ' -f1 /proc/loadavg)):"
    # batch, kdtrain ms, ORT ms, ratio: the numeric rows of the side-by-side table
    awk -v m="$m" '$1 ~ /^[0-9]+$/ && NF == 6 {print m, $1, $2, $4, $4 / $2}' "$out" | tee -a "$tmp/rows"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median over $rounds rounds (model, batch, kdtrain ms, ONNX Runtime ms, median paired ratio ORT / kdtrain):"
for m in teacher student; do
  for b in ${batches//,/ }; do
    awk -v m="$m" -v b="$b" '$1 == m && $2 == b {k[++n] = $3; o[n] = $4; q[n] = $5}
      function median(a, n,   i, j, t) {
        for (i = 2; i <= n; ++i) for (j = i; j > 1 && a[j - 1] > a[j]; --j) {t = a[j]; a[j] = a[j - 1]; a[j - 1] = t}
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      END {if (n) printf "%-8s %6d %12.4f %12.4f %8.2fx\n", m, b, median(k, n), median(o, n), median(q, n)}' "$tmp/rows"
  done
done
