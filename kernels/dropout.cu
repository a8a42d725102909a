// Inverted dropout with a counter-based Philox mask (kd/philox.h): element i of
// step s keeps its value when dropout_keep(seed, s, i, p), the same function the
// CPU reference calls, so masks agree bit for bit and any step can be replayed
// from (seed, step) alone. The step is read from device memory so a captured
// CUDA graph draws a fresh mask on every replay.
// Oracle: kd::ref::dropout_forward / dropout_backward.
#include <algorithm>
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/philox.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

// Each thread owns groups of 4 consecutive elements: one Philox block draws the
// 4 lanes of a group, and the group moves as one 16-byte float access.
int blocks_for_groups(int64_t groups) { return grid_blocks(groups, kBlockThreads, kMaxBlocks); }

// float4 / uchar4 accesses need x, y (16 bytes) and mask (4 bytes) aligned;
// buffers carved out of a larger allocation may not be, and take the scalar path.
bool quads_aligned(const void* a, const void* b, const uint8_t* mask) {
  return reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(mask) % 4 == 0;
}

// Kept elements are scaled by 1 / (1 - p) so the expected activation is unchanged.
__device__ __forceinline__ float scale_if_kept(float value, bool keep, float scale) {
  return keep ? value * scale : 0.0f;
}

// x, y, mask: (n). mask[i] = 1 when element i is kept.
template <bool kVector>
__global__ void dropout_forward_kernel(const float* __restrict__ x, float* __restrict__ y, uint8_t* __restrict__ mask,
                                       int64_t n, float p, float scale, uint64_t seed, const uint64_t* step_counter) {
  const uint64_t step = *step_counter;
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const Philox4 draw = philox_draw_block(seed, step, uint64_t(g));
    bool keep[4];
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) keep[lane] = philox_lane_uniform(draw.v[lane]) >= p;
    const int64_t first = 4 * g;
    if (kVector && first + 4 <= n) {
      const float4 in = reinterpret_cast<const float4*>(x)[g];
      reinterpret_cast<float4*>(y)[g] =
          make_float4(scale_if_kept(in.x, keep[0], scale), scale_if_kept(in.y, keep[1], scale),
                      scale_if_kept(in.z, keep[2], scale), scale_if_kept(in.w, keep[3], scale));
      reinterpret_cast<uchar4*>(mask)[g] = make_uchar4(keep[0], keep[1], keep[2], keep[3]);
    } else {
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int64_t i = first + lane;
        if (i < n) {
          y[i] = scale_if_kept(x[i], keep[lane], scale);
          mask[i] = keep[lane];
        }
      }
    }
  }
}

// dy, mask -> dx: (n).
template <bool kVector>
__global__ void dropout_backward_kernel(const float* __restrict__ dy, const uint8_t* __restrict__ mask,
                                        float* __restrict__ dx, int64_t n, float scale) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t first = 4 * g;
    if (kVector && first + 4 <= n) {
      const float4 in = reinterpret_cast<const float4*>(dy)[g];
      const uchar4 keep = reinterpret_cast<const uchar4*>(mask)[g];
      reinterpret_cast<float4*>(dx)[g] =
          make_float4(scale_if_kept(in.x, keep.x, scale), scale_if_kept(in.y, keep.y, scale),
                      scale_if_kept(in.z, keep.z, scale), scale_if_kept(in.w, keep.w, scale));
    } else {
      for (int64_t i = first; i < first + 4 && i < n; ++i) dx[i] = scale_if_kept(dy[i], mask[i], scale);
    }
  }
}

// The factor kept elements are multiplied by: the same float expression as the reference,
// so kept outputs agree to the last bit.
float keep_scale(float p) { return 1.0f / (1.0f - p); }

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, const uint64_t* step,
                     cudaStream_t stream) {
  if (n == 0) return;
  const int blocks = blocks_for_groups((n + 3) / 4);
  if (quads_aligned(x, y, mask)) {
    launch(dropout_forward_kernel<true>, blocks, kBlockThreads, 0, stream, x, y, mask, n, p, keep_scale(p), seed, step);
  } else {
    launch(dropout_forward_kernel<false>, blocks, kBlockThreads, 0, stream, x, y, mask, n, p, keep_scale(p), seed,
           step);
  }
  KD_CUDA_CHECK_LAUNCH(dropout_forward_kernel);
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p, cudaStream_t stream) {
  if (n == 0) return;
  const int blocks = blocks_for_groups((n + 3) / 4);
  if (quads_aligned(dy, dx, mask)) {
    launch(dropout_backward_kernel<true>, blocks, kBlockThreads, 0, stream, dy, mask, dx, n, keep_scale(p));
  } else {
    launch(dropout_backward_kernel<false>, blocks, kBlockThreads, 0, stream, dy, mask, dx, n, keep_scale(p));
  }
  KD_CUDA_CHECK_LAUNCH(dropout_backward_kernel);
}

}  // namespace kd::cuda
