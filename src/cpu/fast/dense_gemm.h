// The fast engine's own dense-layer forward: y = x . w^T + bias (then ReLU), on
// the register-blocked GEMM of its Winograd convolution (simd_gemm.inc), with
// runtime dispatch (cpu_path.h).
//
// Why not only oneDNN's SGEMM: on 2 threads it split the student's layers badly
// (0.50x ONNX Runtime at batch 64, bench/RESULTS.md), and its results depend on
// the thread count. Here the smaller operand is packed per call (nothing is
// cached): below out rows, x in panels of 64 rows, w read in its own (out, in)
// layout; from out rows on (out a multiple of 16), w as w^T, x read in place.
//
// Numerics: every y element is one fp32 FMA chain over k in ascending order,
// then + bias (one rounding), then ReLU. So a result does not depend on the
// thread count, the panel a row falls in, or the path: avx512, avx2 and neon
// give the same bits (tests/dense_gemm_test.cpp).
#pragma once

#include <vector>

#include "cpu_path.h"

namespace kd::fast {

// The paths this kernel has (avx512, avx2, neon) where this CPU runs them;
// scalar stays on oneDNN.
bool dense_gemm_supports(CpuPath path);

// x: (b, in) row-major; w: (out, in) row-major; bias: (out); y: (b, out)
// row-major, = x . w^T + bias, then max(y, 0) when relu. Runs on `threads`
// OpenMP threads (1: on the calling thread); scratch: kept by the caller between
// calls (resized here). path: a supported one.
void dense_forward_gemm(const float* x, const float* w, const float* bias, float* y, int b, int in, int out, bool relu,
                        int threads, std::vector<float>& scratch, CpuPath path = cpu_path());

}  // namespace kd::fast
