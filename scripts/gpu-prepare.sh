#!/usr/bin/env bash
# Run HERE (the build machine) before a GPU check: builds kdtrain with CUDA and
# packs what the GPU machine needs into gpu-bundle/ (git-ignored, < 64 MiB):
# stripped kdtrain, GPU test and benchmark binaries, libbenchmark (the GPU image
# has no Google Benchmark; GoogleTest is linked statically), gzipped MNIST, and
# the PyTorch reference script. Then: run `bash scripts/gpu-check.sh` on the GPU
# machine with gpu-bundle carried.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh -DKD_BUILD_BENCH=ON
rm -rf gpu-bundle
mkdir -p gpu-bundle/bin gpu-bundle/lib gpu-bundle/mnist
cp build/kdtrain build/*_gpu_test build/*_bench gpu-bundle/bin/
strip gpu-bundle/bin/*
cp -L /usr/lib/x86_64-linux-gnu/libbenchmark.so.1debian gpu-bundle/lib/
# oneDNN (the fast CPU engine, linked by every binary) and its OpenMP runtime and
# OpenCL loader, which the GPU image need not have; oneDNN gzipped (11 MiB, not 40),
# gpu-check.sh unpacks it.
for lib in $(ldd build/kdtrain | awk '/libdnnl|libgomp|libOpenCL/ {print $3}'); do
  case "$lib" in
    *libdnnl*) gzip -9 -c "$lib" > "gpu-bundle/lib/$(basename "$lib").gz" ;;
    *) cp -L "$lib" gpu-bundle/lib/ ;;
  esac
done
for f in data/mnist/*-ubyte; do gzip -9 -c "$f" > "gpu-bundle/mnist/$(basename "$f").gz"; done
du -sh gpu-bundle
