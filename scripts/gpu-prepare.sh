#!/usr/bin/env bash
# Run HERE (the build machine) before a GPU check: builds kdtrain with CUDA and
# packs what the GPU machine needs into gpu-bundle/ (git-ignored; it must stay
# <= 48 MiB, and the whole carried tree <= 64 MiB): stripped kdtrain, GPU test
# and benchmark binaries, libbenchmark, libonnx, libprotobuf and oneDNN (the GPU image
# has none of them; GoogleTest is linked statically), gzipped MNIST, and build-info.txt (the
# toolkit and library versions it was compiled against). The scripts the check
# runs (scripts/gpu_check*.py, bench/*.py) travel with the working tree.
# Then, on the GPU machine with gpu-bundle carried: bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh -DKD_BUILD_BENCH=ON
rm -rf gpu-bundle
mkdir -p gpu-bundle/bin gpu-bundle/lib gpu-bundle/mnist
cp build/kdtrain build/*_gpu_test build/*_bench gpu-bundle/bin/
strip gpu-bundle/bin/*
cp -L /usr/lib/x86_64-linux-gnu/libbenchmark.so.1debian gpu-bundle/lib/
# kdtrain links ONNX (export) and protobuf, which the GPU image does not have either (6.7 MB).
cp -L /usr/lib/x86_64-linux-gnu/{libonnx.so.1,libonnx_proto.so.1,libprotobuf.so.32} gpu-bundle/lib/
# Every binary links oneDNN (the fast CPU engine) with its OpenMP runtime and OpenCL
# loader, which the GPU image need not have either.
for lib in $(ldd build/kdtrain | awk '/libdnnl|libgomp|libOpenCL/ {print $3}'); do cp -L "$lib" gpu-bundle/lib/; done
# Binaries and libraries travel xz-compressed (about 44 MiB -> 15 MiB: each binary
# carries every kernel's SASS and PTX); gpu-check.sh unpacks them on arrival.
xz -9 -T2 gpu-bundle/bin/* gpu-bundle/lib/*
for f in data/mnist/*-ubyte; do gzip -9 -c "$f" > "gpu-bundle/mnist/$(basename "$f").gz"; done
header_version() {  # header_version FILE MACRO...: "a.b.c" from #define lines
  local file=$1; shift
  local parts=()
  for macro in "$@"; do parts+=("$(awk -v m="$macro" '$1 == "#define" && $2 == m {print $3}' "$file")"); done
  (IFS=.; echo "${parts[*]}")
}
cuda_include=/usr/local/cuda/include
{
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)'), $(date -u +%F)"
  echo "nvcc $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_90"
  echo "cuDNN headers $(header_version "$cuda_include/cudnn_version.h" CUDNN_MAJOR CUDNN_MINOR CUDNN_PATCHLEVEL)"
  echo "cuBLAS headers $(header_version "$cuda_include/cublas_api.h" CUBLAS_VER_MAJOR CUBLAS_VER_MINOR CUBLAS_VER_PATCH)"
} > gpu-bundle/build-info.txt
cat gpu-bundle/build-info.txt
size_kib=$(du -sk gpu-bundle | cut -f1)
echo "gpu-bundle: $((size_kib / 1024)) MiB"
if (( size_kib > 48 * 1024 )); then
  echo "gpu-prepare: gpu-bundle is $((size_kib / 1024)) MiB, over the 48 MiB budget" >&2
  exit 1
fi
