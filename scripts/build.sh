#!/usr/bin/env bash
# Configures and builds kdtrain into build/ (CUDA when the toolkit exists).
# Extra arguments go to cmake's configure step, e.g. -DCMAKE_CUDA_ARCHITECTURES=80.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda=ON
[[ -x /usr/local/cuda/bin/nvcc ]] || cuda=OFF
cmake -S . -B build -DKD_WITH_CUDA="$cuda" "$@" >/dev/null
cmake --build build -j"$(($(nproc) + 1))"  # one job more than cores: links and I/O leave a core idle otherwise
