// The fast engine's own dense-layer forward: y = x . w^T + bias (then ReLU), a
// register-blocked GEMM on 16-float vectors with runtime dispatch (cpu_path.h).
//
// Why not only oneDNN's SGEMM: the student's layers are small (64 x 784 x 256
// at batch 64) and oneDNN split them badly across threads (0.50x ONNX Runtime
// at batch 64 on 2 threads, bench/RESULTS.md), and its AVX2 SGEMM ran well
// below its AVX-512 one. This kernel reads w in the layer's own (out, in)
// layout, so there is no packing and nothing to cache between calls.
//
// Numerics: every y element is a dot product summed by one thread in a fixed
// order: 16 lane sums over k = l mod 16 (explicit FMAs, k ascending), a fixed
// tree over the lanes, then the k % 16 tail and the bias. So a result does not
// depend on the thread count, the blocking, or the path (avx512 and avx2 give
// the same bits: tests/dense_gemm_test.cpp).
#pragma once

#include <vector>

#include "cpu_path.h"

namespace kd::fast {

// The paths this kernel has (avx512, avx2); scalar stays on oneDNN.
bool dense_gemm_supports(CpuPath path);

// x: (b, in) row-major; w: (out, in) row-major; bias: (out); y: (b, out)
// row-major, = x . w^T + bias, then max(y, 0) when relu. Runs on `threads`
// OpenMP threads (1: on the calling thread); scratch: kept by the caller between
// calls (resized here). path: a supported one.
void dense_forward_gemm(const float* x, const float* w, const float* bias, float* y, int b, int in, int out,
                        bool relu, int threads, std::vector<float>& scratch, CpuPath path = cpu_path());

}  // namespace kd::fast
