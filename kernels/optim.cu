// Optimiser steps over the one flat parameter buffer (every tensor of a model
// back to back), so a step is one launch whatever the number of tensors.
// The step count is read from device memory: a captured CUDA graph replays the
// same launch every batch while increment_counter advances the count.
//
// Arithmetic follows kd::ref::adam_step / sgd_momentum_step operation by
// operation: double precision, m, v and the momentum buffer rounded to float
// when stored, and no fused multiply-add (the _rn intrinsics keep nvcc from
// contracting), so each element gets the reference's roundings. The only
// source of difference is pow() for Adam's bias corrections, whose last bit
// may differ between CUDA's and the host's math library.
#include <algorithm>
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

// Enough resident blocks to saturate memory bandwidth on current GPUs; each
// block computes the bias corrections once, so fewer, longer blocks are cheaper.
constexpr int64_t kMaxBlocks = 1024;

int blocks_for_quads(int64_t n) { return grid_blocks(n, 4 * kBlockThreads, kMaxBlocks); }

template <typename... T>
bool aligned16(const T*... buffers) {
  return ((reinterpret_cast<uintptr_t>(buffers) % 16 == 0) && ...);
}

// Visits every element of an n-element buffer set exactly once across the grid:
// quad(q) for elements 4q .. 4q+3 (moved as float4) when kVector, that is when
// every buffer is 16-byte aligned, then one(i) for each element of the n % 4 tail
// (or for all elements when not kVector).
template <bool kVector, typename Quad, typename One>
__device__ __forceinline__ void for_each_element(int64_t n, Quad quad, One one) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t scalar_begin = 0;
  if (kVector) {
    const int64_t quads = n / 4;
    for (int64_t q = first; q < quads; q += stride) quad(q);
    scalar_begin = quads * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) one(i);
}

struct AdamConstants {
  double beta1, beta2, one_minus_beta1, one_minus_beta2, lr, eps, weight_decay;
  double bias_correction1, bias_correction2;  // 1 - beta^step
  double decay;                               // 1 - lr * weight_decay (AdamW's shrink factor)
  bool decoupled;                             // AdamW: shrink p instead of adding wd * p to g
};

// One element of torch.optim.Adam (AdamW when decoupled) in the reference's order
// of operations. The branch is uniform across the grid, so it costs no divergence.
__device__ __forceinline__ void adam_element(float& p, float g, float& m, float& v, const AdamConstants& k) {
  double param = p, grad = g;
  if (k.decoupled) {
    param = __dmul_rn(param, k.decay);
  } else {
    grad = __dadd_rn(grad, __dmul_rn(k.weight_decay, param));
  }
  m = float(__dadd_rn(__dmul_rn(k.beta1, double(m)), __dmul_rn(k.one_minus_beta1, grad)));
  v = float(__dadd_rn(__dmul_rn(k.beta2, double(v)), __dmul_rn(__dmul_rn(k.one_minus_beta2, grad), grad)));
  const double m_hat = __ddiv_rn(double(m), k.bias_correction1);
  const double v_hat = __ddiv_rn(double(v), k.bias_correction2);
  p = float(__dsub_rn(param, __ddiv_rn(__dmul_rn(k.lr, m_hat), __dadd_rn(__dsqrt_rn(v_hat), k.eps))));
}

// p, g, m, v: (n). step: device (1), 1-based; the rate is scheduled_lr of it.
template <bool kVector>
__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, ref::AdamParams params, LrSchedule schedule,
                            const uint64_t* __restrict__ step) {
  __shared__ AdamConstants constants;
  if (threadIdx.x == 0) {
    params.lr = scheduled_lr(params.lr, int64_t(*step), schedule);
    const double beta1 = params.beta1, beta2 = params.beta2, t = double(*step);
    constants = AdamConstants{beta1,
                              beta2,
                              __dsub_rn(1.0, beta1),
                              __dsub_rn(1.0, beta2),
                              double(params.lr),
                              double(params.eps),
                              double(params.weight_decay),
                              __dsub_rn(1.0, pow(beta1, t)),
                              __dsub_rn(1.0, pow(beta2, t)),
                              __dsub_rn(1.0, __dmul_rn(double(params.lr), double(params.weight_decay))),
                              params.decoupled_weight_decay};
  }
  __syncthreads();
  const AdamConstants k = constants;
  for_each_element<kVector>(
      n,
      [&](int64_t q) {
        float4 pq = reinterpret_cast<float4*>(p)[q], mq = reinterpret_cast<float4*>(m)[q];
        float4 vq = reinterpret_cast<float4*>(v)[q];
        const float4 gq = reinterpret_cast<const float4*>(g)[q];
        adam_element(pq.x, gq.x, mq.x, vq.x, k);
        adam_element(pq.y, gq.y, mq.y, vq.y, k);
        adam_element(pq.z, gq.z, mq.z, vq.z, k);
        adam_element(pq.w, gq.w, mq.w, vq.w, k);
        reinterpret_cast<float4*>(p)[q] = pq;
        reinterpret_cast<float4*>(m)[q] = mq;
        reinterpret_cast<float4*>(v)[q] = vq;
      },
      [&](int64_t i) { adam_element(p[i], g[i], m[i], v[i], k); });
}

struct SgdConstants {
  double lr, momentum, weight_decay;
  bool first_step;
};

// One element of torch.optim.SGD with momentum (dampening 0) in the reference's order.
__device__ __forceinline__ void sgd_element(float& p, float g, float& buf, const SgdConstants& k) {
  const double grad = __dadd_rn(double(g), __dmul_rn(k.weight_decay, double(p)));
  buf = float(k.first_step ? grad : __dadd_rn(__dmul_rn(k.momentum, double(buf)), grad));
  p = float(__dsub_rn(double(p), __dmul_rn(k.lr, double(buf))));
}

// p, g, buf: (n). step: device (1), 1-based; on step 1 buf is overwritten with the gradient.
// Every thread derives the rate (a few hundred double operations for a cosine,
// against the element loop's memory traffic; SGD has no per-block constants
// to share it through).
template <bool kVector>
__global__ void sgd_momentum_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
                                    int64_t n, ref::SgdParams params, LrSchedule schedule,
                                    const uint64_t* __restrict__ step) {
  const float lr = scheduled_lr(params.lr, int64_t(*step), schedule);
  const SgdConstants k{double(lr), double(params.momentum), double(params.weight_decay), *step == 1};
  for_each_element<kVector>(
      n,
      [&](int64_t q) {
        float4 pq = reinterpret_cast<float4*>(p)[q], bq = reinterpret_cast<float4*>(buf)[q];
        const float4 gq = reinterpret_cast<const float4*>(g)[q];
        sgd_element(pq.x, gq.x, bq.x, k);
        sgd_element(pq.y, gq.y, bq.y, k);
        sgd_element(pq.z, gq.z, bq.z, k);
        sgd_element(pq.w, gq.w, bq.w, k);
        reinterpret_cast<float4*>(p)[q] = pq;
        reinterpret_cast<float4*>(buf)[q] = bq;
      },
      [&](int64_t i) { sgd_element(p[i], g[i], buf[i], k); });
}

__global__ void increment_counter_kernel(uint64_t* counter) { *counter += 1; }

}  // namespace

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
               const LrSchedule& schedule, const uint64_t* step, cudaStream_t stream) {
  if (n == 0) return;
  if (aligned16(p, g, m, v)) {
    launch(adam_kernel<true>, blocks_for_quads(n), kBlockThreads, 0, stream, p, g, m, v, n, a, schedule, step);
  } else {
    launch(adam_kernel<false>, blocks_for_quads(n), kBlockThreads, 0, stream, p, g, m, v, n, a, schedule, step);
  }
  KD_CUDA_CHECK_LAUNCH(adam_kernel);
}

void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                       const LrSchedule& schedule, const uint64_t* step, cudaStream_t stream) {
  if (n == 0) return;
  if (aligned16(p, g, buf)) {
    launch(sgd_momentum_kernel<true>, blocks_for_quads(n), kBlockThreads, 0, stream, p, g, buf, n, a, schedule, step);
  } else {
    launch(sgd_momentum_kernel<false>, blocks_for_quads(n), kBlockThreads, 0, stream, p, g, buf, n, a, schedule, step);
  }
  KD_CUDA_CHECK_LAUNCH(sgd_momentum_kernel);
}

void increment_counter(uint64_t* counter, cudaStream_t stream) {
  launch(increment_counter_kernel, 1, 1, 0, stream, counter);
  KD_CUDA_CHECK_LAUNCH(increment_counter_kernel);
}

}  // namespace kd::cuda
