// 2x2 max pooling, stride 2, floor mode: forward with the winner's position
// kept as a u8 index so the backward pass needs no comparison and no atomics
// (stride == window, so every input belongs to at most one window).
// Oracle: kd::ref::maxpool2x2_forward / maxpool2x2_backward.
#include <algorithm>
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

int blocks_for(int64_t items) { return grid_blocks(items, kBlockThreads, kMaxBlocks); }

// One thread per output. x: (planes, h, w) -> y, argmax: (planes, oh, ow), planes = n * c.
// argmax is the row-major position in the window (0 top-left, 1 top-right,
// 2 bottom-left, 3 bottom-right); a strictly greater value is needed to
// displace the current winner, so the first maximum wins on ties.
__global__ void maxpool2x2_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                          uint8_t* __restrict__ argmax, int64_t outputs, int h, int w, int oh, int ow) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < outputs; o += int64_t(gridDim.x) * blockDim.x) {
    const int ox = int(o % ow);
    const int64_t plane_row = o / ow;
    const int oy = int(plane_row % oh);
    const int64_t plane = plane_row / oh;
    const float* top_left = x + (plane * h + 2 * oy) * int64_t(w) + 2 * ox;
    const float window[4] = {top_left[0], top_left[1], top_left[w], top_left[w + 1]};
    float best = window[0];
    int best_position = 0;
#pragma unroll
    for (int k = 1; k < 4; ++k) {
      if (window[k] > best) {
        best = window[k];
        best_position = k;
      }
    }
    y[o] = best;
    argmax[o] = uint8_t(best_position);
  }
}

// One thread per input, so each dx element is written exactly once: the
// window's winner receives dy, every other input (including the last row or
// column that floor mode leaves outside every window) receives 0.
// dy, argmax: (planes, oh, ow) -> dx: (planes, h, w).
__global__ void maxpool2x2_backward_kernel(const float* __restrict__ dy, const uint8_t* __restrict__ argmax,
                                           float* __restrict__ dx, int64_t inputs, int h, int w, int oh, int ow) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inputs; i += int64_t(gridDim.x) * blockDim.x) {
    const int ix = int(i % w);
    const int64_t plane_row = i / w;
    const int iy = int(plane_row % h);
    const int64_t plane = plane_row / h;
    const int ox = ix >> 1, oy = iy >> 1;
    float grad = 0.0f;
    if (ox < ow && oy < oh) {
      const int64_t o = (plane * oh + oy) * int64_t(ow) + ox;
      const int position = ((iy & 1) << 1) | (ix & 1);
      if (argmax[o] == position) grad = dy[o];
    }
    dx[i] = grad;
  }
}

}  // namespace

void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w, cudaStream_t stream) {
  const int oh = h / 2, ow = w / 2;
  const int64_t outputs = int64_t(n) * c * oh * ow;
  if (outputs == 0) return;
  launch(maxpool2x2_forward_kernel, blocks_for(outputs), kBlockThreads, 0, stream, x, y, argmax, outputs, h, w, oh, ow);
  KD_CUDA_CHECK_LAUNCH(maxpool2x2_forward_kernel);
}

void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                         cudaStream_t stream) {
  const int64_t inputs = int64_t(n) * c * h * w;
  if (inputs == 0) return;
  launch(maxpool2x2_backward_kernel, blocks_for(inputs), kBlockThreads, 0, stream, dy, argmax, dx, inputs, h, w, h / 2,
         w / 2);
  KD_CUDA_CHECK_LAUNCH(maxpool2x2_backward_kernel);
}

}  // namespace kd::cuda
