#!/usr/bin/env bash
# Run HERE (the build machine) before a GPU check: builds kdtrain with CUDA and
# packs what the GPU machine needs into gpu-bundle/ (git-ignored, < 64 MiB):
# stripped kdtrain, GPU test and benchmark binaries, libbenchmark, libonnx and
# libprotobuf (the GPU image has none of them; GoogleTest is linked statically), gzipped MNIST, and
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
# kdtrain links ONNX (export) and protobuf, which the GPU image does not have either (6.7 MB).
cp -L /usr/lib/x86_64-linux-gnu/{libonnx.so.1,libonnx_proto.so.1,libprotobuf.so.32} gpu-bundle/lib/
for f in data/mnist/*-ubyte; do gzip -9 -c "$f" > "gpu-bundle/mnist/$(basename "$f").gz"; done
du -sh gpu-bundle
