// The hint distance (kd/hint.h) and the hook that adds its gradient to the
// network's backward pass. One warp per row: the rows are the batch (64) and
// the features a few hundred at most, so a row's three dot products are one
// warp's strided loads and a shuffle reduction, accumulated in double as the
// reference does (its sums are what a tolerance of 1e-5 is measured against).
// Oracle: kd::ref::hint_loss.
#include <cmath>
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlockThreads / kWarp;
constexpr int kMaxBlocks = 4096;
constexpr int64_t kMaxElementwiseBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// m, t: (b, d) -> grad: (b, d) (null: skipped), row_hint: (b) the distance r_i,
// and row_total: (b) += weight * r_i when not null (the step's per-row loss).
// scale = weight / b. Every lane of a warp works on the same row, so the
// shuffles see the whole warp.
__global__ void hint_loss_kernel(const float* __restrict__ m, const float* __restrict__ t, float* __restrict__ grad,
                                 float* __restrict__ row_hint, float* __restrict__ row_total, int b, int d, bool mse,
                                 float weight, double scale) {
  const int lane = threadIdx.x % kWarp;
  for (int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp; row < b; row += gridDim.x * kWarpsPerBlock) {
    const float* mi = m + int64_t(row) * d;
    const float* ti = t + int64_t(row) * d;
    float* gi = grad != nullptr ? grad + int64_t(row) * d : nullptr;
    double r;
    if (mse) {
      double squares = 0;
      for (int j = lane; j < d; j += kWarp) squares += (double(mi[j]) - ti[j]) * (double(mi[j]) - ti[j]);
      r = warp_sum(squares) / d;
      if (gi != nullptr)
        for (int j = lane; j < d; j += kWarp) gi[j] = float(scale * 2.0 * (double(mi[j]) - ti[j]) / d);
    } else {
      double dot = 0, mm = 0, tt = 0;
      for (int j = lane; j < d; j += kWarp) {
        dot += double(mi[j]) * ti[j];
        mm += double(mi[j]) * mi[j];
        tt += double(ti[j]) * ti[j];
      }
      dot = warp_sum(dot);
      mm = warp_sum(mm);
      tt = warp_sum(tt);
      const double norm_m = sqrt(mm), clamped_m = fmax(norm_m, ref::kHintCosineEps);
      const double clamped_t = fmax(sqrt(tt), ref::kHintCosineEps);
      const double cos = dot / (clamped_m * clamped_t);
      r = 1.0 - cos;
      if (gi != nullptr) {
        const double along_m = norm_m > ref::kHintCosineEps ? cos / (norm_m * norm_m) : 0.0;
        for (int j = lane; j < d; j += kWarp)
          gi[j] = float(-scale * (ti[j] / (clamped_m * clamped_t) - along_m * mi[j]));
      }
    }
    if (lane == 0) {
      if (row_hint != nullptr) row_hint[row] = float(r);
      if (row_total != nullptr) row_total[row] += float(double(weight) * r);
    }
  }
}

// dx, g: (n); mask_by: (n) or null. dx += g where mask_by is null or > 0.
__global__ void hint_add_gradient_kernel(float* __restrict__ dx, const float* __restrict__ g,
                                         const float* __restrict__ mask_by, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (mask_by == nullptr || mask_by[i] > 0.0f) dx[i] += g[i];
}

}  // namespace

void hint_loss(const float* m, const float* t, float* grad, float* row_hint, float* row_total, int b, int d,
               HintKind kind, float weight, cudaStream_t stream) {
  if (kind == HintKind::Off) fail("hint_loss: no distance to compute (--hint off)");
  if (b == 0) return;
  launch(hint_loss_kernel, grid_blocks(b, kWarpsPerBlock, kMaxBlocks), kBlockThreads, 0, stream, m, t, grad, row_hint,
         row_total, b, d, kind == HintKind::Mse, weight, double(weight) / double(b));
  KD_CUDA_CHECK_LAUNCH(hint_loss_kernel);
}

void hint_add_gradient(float* dx, const float* g, const float* mask_by, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch(hint_add_gradient_kernel, grid_blocks(n, kBlockThreads, kMaxElementwiseBlocks), kBlockThreads, 0, stream, dx,
         g, mask_by, n);
  KD_CUDA_CHECK_LAUNCH(hint_add_gradient_kernel);
}

}  // namespace kd::cuda
