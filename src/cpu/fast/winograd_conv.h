// WinogradConv: a 3x3, stride-1 convolution by Winograd's minimal filtering
// F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), forward and both backwards, on activations in Nchw16c,
// with an optional fused ReLU and 2x2 max-pool after it.
//
// Why the fast engine has its own and does not only call oneDNN's
// (jit_wino_4x3, the same algorithm): at the teacher's conv2 the GEMM part of
// either runs near the core's peak, and what is left is memory traffic. The
// conv output (9.4 MB at batch 64) is written by the convolution, read by the
// max-pool, and its gradient is written by the pool's backward and read twice
// by the convolution's backwards. Fused with the ReLU and the pool, the
// convolution writes only the pooled output and its argmax, and the backward
// rebuilds each gradient tile from them on the fly (bench/RESULTS.md has the
// step profile before and after).
//
// The algorithm: every 4x4 output tile is A^T [(G g G^T) . (B^T d B)] A for
// the 6x6 input tile d around it, so per tile and per transform point (36 of
// them) the channel sums become one small GEMM over channels: 36 GEMMs of
// (tiles x in_c) . (in_c x out_c) replace the direct sum with 4x fewer
// multiplies. Backward-data is the same forward on dy with the filters
// rotated 180 degrees and transposed; backward-filter is
// G^T [sum over tiles (A dy A^T) . (B^T d B)] G.
//
// Numerics: fp32 with the transforms' small integer and fractional factors;
// measured error against the double-precision reference ~1e-6 relative
// (tests/winograd_conv_test.cpp). Results do not depend on the thread count
// for the forward and backward-data (each output is computed by one thread in
// a fixed order); the filter gradient sums per-thread partials in thread
// order, so it is bit-identical for a fixed thread count and equal within
// rounding across counts, like oneDNN's.
//
// Layouts: x, dx: (n, in_c/16, h, w, 16); y, dy: (n, out_c/16, out_h, out_w,
// 16); w, dw: (out_c, in_c, 3, 3) plain; biases (out_c). The fused variant's
// pooled output is plain NCHW (n, out_c, out_h/2, out_w/2), what dropout and
// flatten read, and its argmax is (n, out_c/16, out_h/2, out_w/2, 16): it is
// read back only by this class's backward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu_path.h"
#include "kd/cpu_ops.h"
#include "kd/reference.h"

namespace kd::fast {

class WinogradConv final : public ConvReluPool {
 public:
  // 3x3 kernel, stride 1, padding 0..2, in_c and out_c multiples of 16, and
  // `path` a vector path this CPU runs (avx512, avx2 or neon: the kernels
  // are written for 16-float vectors, one Nchw16c position).
  static bool supports(const ref::ConvShape& s, CpuPath path = cpu_path());
  explicit WinogradConv(const ref::ConvShape& s, CpuPath path = cpu_path());
  ~WinogradConv() override;

  // The convolution alone: y = conv(x, w) + b, then max(y, 0) when relu.
  void conv_forward(const float* x, const float* w, const float* b, float* y, bool relu);
  // dy -> dw, db (overwritten), and dx unless null.
  void conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db);

  // The fused conv -> ReLU -> max-pool (kd::ConvReluPool): pooled, argmax =
  // maxpool2x2(max(conv(x, w) + b, 0)), the values and winners of
  // ref::maxpool2x2_forward on the ReLU'd convolution (first maximum wins).
  void forward(const float* x, const float* w, const float* b, float* pooled, uint8_t* argmax) override;
  // From dpooled (plain, like pooled): the gradient reaches each window's winner
  // where the pooled value is > 0.
  void backward(const float* x, const float* w, const float* dpooled, const float* pooled, const uint8_t* argmax,
                float* dx, float* dw, float* db) override;

 private:
  // u_ = the forward filters transformed, unless w holds the same bits as the last call's:
  // inference repeats its weights, and at batch 1 the transform (36 * in_c * out_c
  // scattered stores) cost more than the convolution itself.
  void transform_forward_filters(const float* w);
  // Sizes every thread's scratch for a pass over `channels` inputs to `out_c` outputs.
  void prepare_scratch(int channels, int out_c);
  // Both backwards from dy: blocked (n, out_c/16, out_h, out_w, 16) when argmax is null,
  // else the masked pooled gradient (n, out_c/16, out_h/2, out_w/2, 16) and its argmax.
  void backward_from(const float* x, const float* w, const float* dy, const uint8_t* argmax, float* dx, float* dw,
                     float* db);

  ref::ConvShape s_;
  std::vector<float> u_;          // forward filters transformed: (36, in_c, out_c)
  std::vector<float> w_seen_;     // the weights u_ was transformed from: (out_c, in_c, 3, 3)
  std::vector<float> u_back_;     // rotated, transposed filters transformed: (36, out_c, in_c)
  std::vector<float> dy_pooled_;  // the fused backward's masked gradient: (n, out_c/16, out_h/2, out_w/2, 16)
  // Per thread: transformed inputs, GEMM outputs, filter-gradient partials (36, out_c, in_c), bias partials.
  std::vector<std::vector<float>> v_, m_, s_part_, db_part_;
  std::vector<float*> v_ptrs_, m_ptrs_;  // v_[t].data(), m_[t].data() for the kernels
  CpuPath path_;                         // whose kernels run the passes
};

}  // namespace kd::fast
