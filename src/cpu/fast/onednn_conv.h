// OnednnConv: one convolution shape (batch size included) on oneDNN, with its
// primitives created once and reused every call (oneDNN JIT-compiles a kernel
// per primitive, which costs milliseconds: never per step).
//
// The caller says which layout its activations are in (kd::ActLayout: plain
// NCHW, or nChw16c between convolutions and max-pools); oneDNN picks its own
// layouts (format_tag::any) and a call reorders in or out only where the two
// differ. At the teacher's shapes on AVX-512, oneDNN computes in nChw16c, so
// a model that keeps conv outputs in Nchw16c moves no activation twice
// (bench/RESULTS.md: the reorders cost ~3-4 ms of a 40 ms step).
#pragma once

#include <dnnl.hpp>

#include <string>

#include "kd/cpu_ops.h"
#include "kd/reference.h"

namespace kd::fast {

// A tensor the caller passes in its layout (`outer`) while a primitive wants
// its own (`inner`): a memory object wrapping the caller's pointer, a scratch
// memory in the primitive's layout, and the reorder between them (absent when
// they agree).
class Staged {
 public:
  Staged() = default;
  Staged(const dnnl::engine& engine, const dnnl::memory::desc& outer, const dnnl::memory::desc& inner, bool to_inner);
  // For an input: wraps `ptr`, reorders it into the inner layout when needed, returns what the primitive reads.
  dnnl::memory& load(dnnl::stream& stream, const void* ptr);
  // What the last load() returned (the caller's data, or its copy in the inner layout).
  dnnl::memory& current();
  // For an output: the memory the primitive writes; store() then moves it to `ptr`.
  dnnl::memory& target(void* ptr);
  void store(dnnl::stream& stream);

 private:
  dnnl::memory outer_, inner_;
  dnnl::reorder reorder_;
  bool same_ = true;
};

class OnednnConv {
 public:
  // x and dx in layout xl, y and dy in layout yl (Nchw16c needs the channel count % 16 == 0).
  OnednnConv(const dnnl::engine& engine, const ref::ConvShape& shape, ActLayout xl, ActLayout yl);
  // x: (n, in_c, h, w), w: (out_c, in_c, k, k), b: (out_c) -> y: (n, out_c, out_h, out_w),
  // with ReLU applied in the primitive (a post-op) when relu.
  void forward(dnnl::stream& stream, const float* x, const float* w, const float* b, float* y, bool relu);
  // dy: (n, out_c, out_h, out_w) -> dw, db, and dx: (n, in_c, h, w) unless null. When x is
  // the pointer the last forward read, that forward's copy of x in oneDNN's layout (if it
  // made one) is reused.
  void backward(dnnl::stream& stream, const float* x, const float* w, const float* dy, float* dx, float* dw, float* db);
  // "jit_wino_4x3:avx512_core" etc. for the three primitives.
  std::string describe() const;
  // Winograd for layers with enough channels to amortise its transforms, direct otherwise.
  static dnnl::algorithm algorithm_for(const ref::ConvShape& shape);

 private:
  void prepare_backward();
  // The caller's layouts at the boundary: x and y as constructed, w OIHW.
  dnnl::memory::desc x_outer() const;
  dnnl::memory::desc w_outer() const;
  dnnl::memory::desc y_outer() const;

  ref::ConvShape shape_;
  ActLayout xl_, yl_;
  dnnl::engine engine_;
  bool backward_ready_ = false;
  dnnl::convolution_forward::primitive_desc fwd_pd_;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd_;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd_;
  dnnl::convolution_forward fwd_, fwd_relu_;  // the same layouts; the second with a ReLU post-op
  dnnl::convolution_backward_data bwd_data_;
  dnnl::convolution_backward_weights bwd_weights_;
  // Forward: x, w, y. Backward-weights: x, dy, dw. Backward-data: dy, w, dx. Biases are plain (x) everywhere.
  Staged fwd_x_, fwd_w_, fwd_y_, bww_x_, bww_dy_, bww_dw_, bwd_dy_, bwd_w_, bwd_dx_;
  dnnl::memory bias_, diff_bias_;
  const float* last_x_ = nullptr;  // what fwd_x_ holds, in oneDNN's layout
};

}  // namespace kd::fast
