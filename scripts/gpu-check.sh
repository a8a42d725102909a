#!/usr/bin/env bash
# Every GPU check in one call, on the GPU machine, from gpu-bundle/ (made by
# scripts/gpu-prepare.sh): environment facts, the GPU tests, a short pass of
# the micro-benchmarks, the default kdtrain pipeline, and (with --torch) the
# PyTorch reference on the same GPU. Prints a short table last. Writes logs
# under ${OUT:-gpu-check-out}/.
#
# What the GPU image provides (to be confirmed by the "environment" section of
# the first real run): CUDA 13 with nvcc and cuBLAS, cuDNN 9 from PyTorch's pip
# wheel (nvidia-cudnn-cu13), no Google Benchmark and no oneDNN (both carried in
# gpu-bundle/lib), GoogleTest not needed (linked statically).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
bundle=gpu-bundle
with_torch=0
[[ "${1:-}" == "--torch" ]] && with_torch=1
declare -a rows

echo "== environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
command -v nvcc >/dev/null && nvcc --version | tail -1
libdirs=("$PWD/$bundle/lib")
for gz in "$bundle"/lib/*.so*.gz; do  # oneDNN travels gzipped (gpu-prepare.sh)
  [[ -f "$gz" && ! -f "${gz%.gz}" ]] && gunzip -k "$gz"
done
for lib in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13; do
  found=$(find / -xdev -name "$lib" -not -path "*/proc/*" 2>/dev/null | head -1)
  echo "$lib: ${found:-NOT FOUND}"
  [[ -n "$found" ]] && libdirs+=("$(dirname "$found")")
done
export LD_LIBRARY_PATH="$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

echo "== GPU tests"
for t in "$bundle"/bin/*_gpu_test; do
  name=$(basename "$t")
  if timeout 300 "$t" --gtest_brief=1 >"$out/$name.log" 2>&1; then status=PASS; else status=FAIL; fi
  summary=$(grep -E "^\[  (PASSED|FAILED|SKIPPED) \]" "$out/$name.log" | tr '\n' ' ')
  # A skipped GPU test on a GPU machine means the device was not seen: not a pass.
  [[ $status == PASS ]] && grep -q "^\[  SKIPPED \]" "$out/$name.log" && status=SKIPPED
  echo "$name: $status $summary"
  [[ $status == FAIL ]] && tail -30 "$out/$name.log"
  rows+=("$(printf '%-28s %s' "$name" "$status")")
done

echo "== micro-benchmarks (short pass)"
for b in "$bundle"/bin/*_bench; do
  name=$(basename "$b")
  if timeout 240 "$b" --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json >"$out/$name.txt" 2>&1; then
    status=ran
  else
    status=FAIL
  fi
  cat "$out/$name.txt"
  rows+=("$(printf '%-28s %s' "$name" "$status")")
done

echo "== default pipeline"
start=$(date +%s)
if timeout 420 "$bundle/bin/kdtrain" --data "$bundle/mnist" --device cuda --out "$out/run" 2>&1 | tee "$out/kdtrain.log"; then
  status="ok in $(( $(date +%s) - start ))s"
else
  status=FAIL
fi
rows+=("$(printf '%-28s %s' "kdtrain default pipeline" "$status")")

if (( with_torch )); then
  echo "== PyTorch reference (same GPU, same call)"
  if timeout 600 python3 bench/pytorch_reference.py --data "$bundle/mnist" --mode both --json "$out/pytorch.json" \
      2>&1 | tee "$out/pytorch.log"; then status=ran; else status=FAIL; fi
  rows+=("$(printf '%-28s %s' "pytorch_reference.py" "$status")")
fi

echo
echo "== summary ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null), $(date -u +%F))"
printf '%s\n' "${rows[@]}"
