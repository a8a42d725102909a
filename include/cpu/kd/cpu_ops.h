// kd/cpu_ops.h: the arithmetic a CpuModel and the CPU engine run, chosen once
// at construction.
//
// Two implementations share this contract (shapes and layouts as in
// kd/reference.h; every tensor contiguous row-major, activations NCHW unless
// an ActLayout argument says otherwise):
//  - reference: the kd::ref ops, one thread, double accumulation. The oracle
//    for the CUDA kernels and for the fast ops; `kdtrain --device reference`.
//  - fast: fp32, multithreaded, convolutions on oneDNN (primitives created once
//    per shape and batch size) or, for 3x3 stride-1 layers with channels in
//    sixteens on AVX-512 or AVX2+FMA, the engine's own Winograd (fused with a following
//    ReLU and max-pool), dense layers on oneDNN's SGEMM, elementwise ops,
//    pooling, dropout and the optimisers as OpenMP loops. `--device cpu`.
// Both draw the same Philox dropout masks and follow the same optimiser
// formulas, so the engines differ only in rounding.
// The interface holds only the ops the fast engine computes its own way: a
// layer kind with no faster op has no place here, and the layer loop
// (src/cpu/cpu_model.cpp) calls its kd::ref op directly on both engines (in
// NCHW: a layer that is not a conv or max-pool always reads Nchw). Writing a
// faster op brings it here, with the reference version in reference_ops.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kd/reference.h"

namespace kd {

// How a (n, c, h, w) activation lies in memory between two layers.
//  Nchw:    plain row-major (n, c, h, w): what flatten, dense layers, dropout
//           (its Philox counters follow this order) and the files see.
//  Nchw16c: (n, c/16, h, w, 16), oneDNN's nChw16c: 16 channels innermost, the
//           layout oneDNN's AVX-512 convolutions compute in. A model keeps a
//           convolution's output in it only when c % 16 == 0 and only the next
//           convolution or max-pool reads it (a fused ReLU in between is
//           elementwise), so no op converts layouts on the way.
enum class ActLayout { Nchw, Nchw16c };

// Element (ni, ci, hi, wi) of a (n, c, h, w) tensor in `layout`: the layouts above, as an
// index (the fast ops compute with it implicitly; tests convert tensors with it).
int64_t act_index(ActLayout layout, int c, int h, int w, int ni, int ci, int hi, int wi);

// A convolution, the ReLU after it and a 2x2 max-pool after that, run as one op
// (CpuOps::conv_relu_pool), so the convolution's output is never stored. For one
// ref::ConvShape s, x and dx in the layout it was asked for:
//   forward:  x -> pooled (n, out_c, out_h/2, out_w/2) Nchw, and argmax in the op's
//             own order (read only by its backward); the values and winners of
//             maxpool2x2_forward(max(conv(x) + b, 0)).
//   backward: dpooled (like pooled) -> dw, db, and dx unless null; the gradient
//             reaches each window's winner where the pooled value is > 0.
class ConvReluPool {
 public:
  virtual ~ConvReluPool() = default;
  virtual void forward(const float* x, const float* w, const float* b, float* pooled, uint8_t* argmax) = 0;
  virtual void backward(const float* x, const float* w, const float* dpooled, const float* pooled,
                        const uint8_t* argmax, float* dx, float* dw, float* db) = 0;
};

class CpuOps {
 public:
  virtual ~CpuOps() = default;
  // "CPU reference ops (double accumulation, 1 thread)" / "oneDNN 2.6.3 fp32, 2 threads".
  virtual std::string describe() const = 0;
  virtual bool is_reference() const = 0;

  // The layout these ops compute a convolution of shape s in, for its output
  // (the model uses Nchw anyway when something other than a convolution or
  // max-pool reads it). Reference: Nchw; fast: Nchw16c when out_c % 16 == 0.
  virtual ActLayout conv_output_layout(const ref::ConvShape& s) const = 0;
  // x: (n, in_c, h, w) in layout xl, w: (out_c, in_c, k, k), b: (out_c) -> y: (n, out_c,
  // out_h, out_w) in layout yl, then max(y, 0) when relu (a following ReLU layer fused in).
  virtual void conv_forward(const float* x, const float* w, const float* b, float* y, const ref::ConvShape& s,
                            bool relu, ActLayout xl, ActLayout yl) = 0;
  // x (layout xl), w and dy: (n, out_c, out_h, out_w) in layout yl -> dw, db (overwritten), and
  // dx: (n, in_c, h, w) in layout xl unless dx is null (the first layer needs no input
  // gradient). x must be unchanged since the last conv_forward of this shape that read it
  // from the same pointer, if any (the fast ops reuse that forward's copy of x in their own layout).
  virtual void conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                             const ref::ConvShape& s, ActLayout xl, ActLayout yl) = 0;
  // The fused conv -> ReLU -> max-pool for shape s with x in layout xl, owned by these ops;
  // null when they have none for it (the reference never has: the model then runs the
  // three layers). Whether it is null does not depend on s.n.
  virtual ConvReluPool* conv_relu_pool(const ref::ConvShape& s, ActLayout xl) { return nullptr; }
  // x: (b, in), w: (out, in), bias: (out) -> y: (b, out) = x . w^T + bias, then max(y, 0) when relu
  virtual void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out,
                             bool relu) = 0;
  // dy: (b, out) -> dx: (b, in) (skipped when null), dw: (out, in), db: (out)
  virtual void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b,
                              int in, int out) = 0;
  // Same contracts as the kd::ref functions of the same names (ReLU is elementwise:
  // any layout, as long as y, dy and dx share it).
  virtual void relu_forward(const float* x, float* y, int64_t n) = 0;
  virtual void relu_backward(const float* y, const float* dy, float* dx, int64_t n) = 0;
  // ref::maxpool2x2_forward / backward with x and dx: (n, c, h, w) in layout xl; y, dy and
  // argmax: (n, c, h/2, w/2) always Nchw (what dropout and flatten read).
  virtual void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w,
                                  ActLayout xl) = 0;
  virtual void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                                   ActLayout xl) = 0;
  // first: ref::dropout_forward's (a data-parallel shard's offset in the step's tensor).
  virtual void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed,
                               uint64_t step, uint64_t first = 0) = 0;
  virtual void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) = 0;
  virtual void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
                         int64_t step) = 0;
  virtual void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                                 int64_t step) = 0;
};

// The kd::ref ops behind the CpuOps interface.
std::unique_ptr<CpuOps> make_reference_ops();
// The fast ops on `threads` threads (0 = every hardware thread). Sets the
// process's OpenMP thread count, which oneDNN and the fast loops share.
std::unique_ptr<CpuOps> make_fast_ops(int threads);
// Which convolution path the fast ops take on this CPU, for the report:
// "AVX-512: own fused Winograd for 3x3 convolutions, oneDNN for the rest" (or
// "AVX2: ..."; "(KD_CPU_PATH)" after the path when it was forced), or
// "scalar: oneDNN does every convolution (...)".
std::string fast_conv_path();
// How the fast ops' threads wait between ops, for the report (latencies differ
// with it, src/cpu/fast/omp_waits.h): "threads spin between ops" or "threads
// wait passively between ops".
std::string fast_thread_waits();
// The thread count `threads` resolves to (0 -> std::thread::hardware_concurrency()).
int resolve_cpu_threads(int threads);

}  // namespace kd
