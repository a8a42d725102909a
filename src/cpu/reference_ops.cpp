// The kd::ref ops behind the CpuOps interface: what `--device reference`
// runs, one thread, double accumulation, kept slow and obvious on purpose.
#include <memory>
#include <string>

#include "kd/cpu_ops.h"
#include "kd/error.h"

namespace kd {

int64_t act_index(ActLayout layout, int c, int h, int w, int ni, int ci, int hi, int wi) {
  if (layout == ActLayout::Nchw) return ((int64_t(ni) * c + ci) * h + hi) * w + wi;
  return (((int64_t(ni) * (c / 16) + ci / 16) * h + hi) * w + wi) * 16 + ci % 16;
}

namespace {

// The reference computes in plain NCHW only (it reports Nchw for every convolution).
void require_nchw(const char* op, ActLayout a, ActLayout b = ActLayout::Nchw) {
  if (a != ActLayout::Nchw || b != ActLayout::Nchw)
    fail(std::string("reference ") + op + ": activations must be Nchw (the reference asks for no other layout)");
}

class ReferenceOps final : public CpuOps {
 public:
  std::string describe() const override { return "CPU reference ops (double accumulation, 1 thread)"; }
  bool is_reference() const override { return true; }
  ActLayout conv_output_layout(const ref::ConvShape&) const override { return ActLayout::Nchw; }
  void conv_forward(const float* x, const float* w, const float* b, float* y, const ref::ConvShape& s, bool relu,
                    ActLayout xl, ActLayout yl) override {
    require_nchw("conv_forward", xl, yl);
    ref::conv2d_forward(x, w, b, y, s);
    if (relu) ref::relu_forward(y, y, int64_t(s.n) * s.out_c * s.out_h() * s.out_w());
  }
  void conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const ref::ConvShape& s, ActLayout xl, ActLayout yl) override {
    require_nchw("conv_backward", xl, yl);
    ref::conv2d_backward_filter(x, dy, dw, db, s);
    if (dx) ref::conv2d_backward_data(dy, w, dx, s);
  }
  void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out,
                     bool relu) override {
    ref::dense_forward(x, w, bias, y, b, in, out, relu);
  }
  void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b, int in,
                      int out) override {
    ref::dense_backward(x, w, dy, dx, dw, db, b, in, out);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { ref::relu_forward(x, y, n); }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t n) override {
    ref::relu_backward(y, dy, dx, n);
  }
  void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w,
                          ActLayout xl) override {
    require_nchw("maxpool2x2_forward", xl);
    ref::maxpool2x2_forward(x, y, argmax, n, c, h, w);
  }
  void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                           ActLayout xl) override {
    require_nchw("maxpool2x2_backward", xl);
    ref::maxpool2x2_backward(dy, argmax, dx, n, c, h, w);
  }
  void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t step,
                       uint64_t first) override {
    ref::dropout_forward(x, y, mask, n, p, seed, step, first);
  }
  void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) override {
    ref::dropout_backward(dy, mask, dx, n, p);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
                 int64_t step) override {
    ref::adam_step(p, g, m, v, n, a, step);
  }
  void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                         int64_t step) override {
    ref::sgd_momentum_step(p, g, buf, n, a, step);
  }
};

}  // namespace

std::unique_ptr<CpuOps> make_reference_ops() { return std::make_unique<ReferenceOps>(); }

}  // namespace kd
