// Single-threaded loop kernels of the fast CPU ops, each over a contiguous
// range so FastOps can hand one range to each thread.
//
// Written branch-free (every operand loaded unconditionally, selects instead
// of ifs): ReLU, dropout and pooling decisions are data-dependent coin flips,
// and as branches they mispredicted about half the time, which cost ~9 ms per
// teacher step in ReLU backward alone. Compiled for AVX-512, AVX2 and baseline
// x86-64, chosen at load time (GCC/Clang target_clones), so one binary runs
// everywhere and uses the widest vectors the CPU has.
#pragma once

#include <cstdint>

#include "kd/reference.h"

namespace kd::fast {

// y[i] = max(x[i], 0). x, y: (n), may alias.
void relu_forward_kernel(const float* x, float* y, int64_t n);
// dx[i] = y[i] > 0 ? dy[i] : 0. (n) each; dx may alias dy.
void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n);

// ref::maxpool2x2_forward / backward over `planes` whole (h, w) planes.
void maxpool_forward_kernel(const float* x, float* y, uint8_t* argmax, int64_t planes, int h, int w);
void maxpool_backward_kernel(const float* dy, const uint8_t* argmax, float* dx, int64_t planes, int h, int w);
// The same over `blocks` blocks of 16 planes with x and dx in Nchw16c: x, dx: (blocks, h, w, 16);
// y, dy, argmax: (blocks * 16, h/2, w/2), plain. Same values and winners as the plain kernels.
void maxpool_forward_blocked_kernel(const float* x, float* y, uint8_t* argmax, int64_t blocks, int h, int w);
void maxpool_backward_blocked_kernel(const float* dy, const uint8_t* argmax, float* dx, int64_t blocks, int h, int w);

// Elements [begin, end) of ref::dropout_forward(x, y, mask, n, p, seed, step, first)
// (pointers are to the whole tensors), for 0 < p; the Philox blocks are drawn
// 16 at a time in vector lanes.
void dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t begin, int64_t end, float p, uint64_t seed,
                            uint64_t step, int64_t first);
// dx[i] = mask[i] ? dy[i] * scale : 0. (n) each.
void dropout_backward_kernel(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale);

// torch.optim.Adam (torch.optim.AdamW when a.decoupled_weight_decay) in fp32 for
// (n) elements; step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t).
void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a, float step_size,
                 float inv_sqrt_bc2);
// torch.optim.SGD with momentum (dampening 0): buf = g on the first step, else momentum * buf + g.
void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float weight_decay,
                bool first_step);

}  // namespace kd::fast
