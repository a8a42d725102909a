// Where a fast-CPU teacher training step spends its time: the default teacher
// at batch 64 (forward with dropout, backward, Adam) on the fast ops, each op
// call timed by a CpuOps wrapper in CPU time of the calling thread, so the
// profile holds on a machine other programs share (run it with --threads 1:
// with more threads the other threads' work is not counted).
//
// Usage: build/cpu_step_profile [threads (default 1)] [steps (default 20)]
// Prints ms per step for every op kind and the step's total CPU and wall time.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "kd/arch.h"
#include "kd/cpu_ops.h"
#include "kd/cpu_model.h"

namespace kd {
namespace {

double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Adds the CPU time of a fused conv -> ReLU -> max-pool's calls to totals.
class TimedConvReluPool final : public ConvReluPool {
 public:
  TimedConvReluPool(ConvReluPool& inner, std::map<std::string, double>& totals, std::string name)
      : inner_(inner), totals_(totals), name_(std::move(name)) {}
  void forward(const float* x, const float* w, const float* b, float* pooled, uint8_t* argmax) override {
    const double t0 = thread_cpu_ms();
    inner_.forward(x, w, b, pooled, argmax);
    totals_[name_ + " forward"] += thread_cpu_ms() - t0;
  }
  void backward(const float* x, const float* w, const float* dpooled, const float* pooled, const uint8_t* argmax,
                float* dx, float* dw, float* db) override {
    const double t0 = thread_cpu_ms();
    inner_.backward(x, w, dpooled, pooled, argmax, dx, dw, db);
    totals_[name_ + " backward"] += thread_cpu_ms() - t0;
  }

 private:
  ConvReluPool& inner_;
  std::map<std::string, double>& totals_;
  std::string name_;
};

// Forwards every call to `inner`, adding its CPU time to totals[name].
class TimedOps final : public CpuOps {
 public:
  TimedOps(std::unique_ptr<CpuOps> inner, std::map<std::string, double>& totals)
      : inner_(std::move(inner)), totals_(totals) {}
  std::string describe() const override { return inner_->describe(); }
  bool is_reference() const override { return inner_->is_reference(); }
  ActLayout conv_output_layout(const ref::ConvShape& s) const override { return inner_->conv_output_layout(s); }
  void conv_forward(const float* x, const float* w, const float* b, float* y, const ref::ConvShape& s, bool relu,
                    ActLayout xl, ActLayout yl) override {
    timed("conv forward " + std::to_string(s.in_c) + "->" + std::to_string(s.out_c),
          [&] { inner_->conv_forward(x, w, b, y, s, relu, xl, yl); });
  }
  void conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const ref::ConvShape& s, ActLayout xl, ActLayout yl) override {
    timed("conv backward " + std::to_string(s.in_c) + "->" + std::to_string(s.out_c),
          [&] { inner_->conv_backward(x, w, dy, dx, dw, db, s, xl, yl); });
  }
  ConvReluPool* conv_relu_pool(const ref::ConvShape& s, ActLayout xl) override {
    ConvReluPool* inner = inner_->conv_relu_pool(s, xl);
    if (!inner) return nullptr;
    auto& wrapped = fused_[inner];
    if (!wrapped)
      wrapped = std::make_unique<TimedConvReluPool>(
          *inner, totals_, "conv+relu+pool " + std::to_string(s.in_c) + "->" + std::to_string(s.out_c));
    return wrapped.get();
  }
  void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out,
                     bool relu) override {
    timed("dense forward", [&] { inner_->dense_forward(x, w, bias, y, b, in, out, relu); });
  }
  void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b, int in,
                      int out) override {
    timed("dense backward", [&] { inner_->dense_backward(x, w, dy, dx, dw, db, b, in, out); });
  }
  void relu_forward(const float* x, float* y, int64_t n) override {
    timed("relu forward", [&] { inner_->relu_forward(x, y, n); });
  }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t n) override {
    timed("relu backward", [&] { inner_->relu_backward(y, dy, dx, n); });
  }
  void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w,
                          ActLayout xl) override {
    timed("maxpool forward", [&] { inner_->maxpool2x2_forward(x, y, argmax, n, c, h, w, xl); });
  }
  void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                           ActLayout xl) override {
    timed("maxpool backward", [&] { inner_->maxpool2x2_backward(dy, argmax, dx, n, c, h, w, xl); });
  }
  void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t step,
                       uint64_t first) override {
    timed("dropout forward", [&] { inner_->dropout_forward(x, y, mask, n, p, seed, step, first); });
  }
  void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) override {
    timed("dropout backward", [&] { inner_->dropout_backward(dy, mask, dx, n, p); });
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
                 int64_t step) override {
    timed("adam", [&] { inner_->adam_step(p, g, m, v, n, a, step); });
  }
  void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                         int64_t step) override {
    timed("sgd", [&] { inner_->sgd_momentum_step(p, g, buf, n, a, step); });
  }

 private:
  template <class F>
  void timed(const std::string& name, F&& f) {
    const double t0 = thread_cpu_ms();
    f();
    totals_[name] += thread_cpu_ms() - t0;
  }
  std::unique_ptr<CpuOps> inner_;
  std::map<std::string, double>& totals_;
  std::map<ConvReluPool*, std::unique_ptr<TimedConvReluPool>> fused_;
};

int run(int threads, int steps) {
  constexpr int kBatch = 64, kWarmup = 3;
  const Arch arch = parse_arch(kDefaultTeacherArch, Shape{1, 28, 28, false}, 10, "teacher");
  std::map<std::string, double> totals;
  CpuModel model(arch, kBatch, std::make_unique<TimedOps>(make_fast_ops(threads), totals));
  init_params(arch, 1, model.params().data());
  std::vector<float> x(size_t(kBatch) * 784), dlogits(size_t(kBatch) * 10), m(size_t(arch.param_count)),
      v(size_t(arch.param_count));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& e : x) e = normal(rng);
  for (float& e : dlogits) e = 0.01f * normal(rng);
  double cpu = 0, wall = 0;
  for (int s = 0; s < kWarmup + steps; ++s) {
    if (s == kWarmup) totals.clear(), cpu = wall = 0;  // primitive creation and first touches excluded
    const double c0 = thread_cpu_ms();
    const auto w0 = std::chrono::steady_clock::now();
    model.forward(x.data(), kBatch, /*training=*/true, 1, uint64_t(s + 1));
    model.backward(dlogits.data(), kBatch);
    model.ops().adam_step(model.params().data(), model.grads().data(), m.data(), v.data(), arch.param_count,
                          ref::AdamParams{}, s + 1);
    cpu += thread_cpu_ms() - c0;
    wall += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
  }
  std::printf("teacher step, batch %d, %s, %d steps (CPU ms of the calling thread per step)\n", kBatch,
              model.ops().describe().c_str(), steps);
  for (const auto& [name, ms] : totals) std::printf("  %-22s %7.2f\n", name.c_str(), ms / steps);
  std::printf("  %-22s %7.2f  (wall %.2f ms: %.0f samples/s)\n", "whole step", cpu / steps, wall / steps,
              kBatch * 1000.0 * steps / wall);
  return 0;
}

}  // namespace
}  // namespace kd

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 20;
  if (threads < 1 || steps < 1) {
    std::fprintf(stderr, "usage: cpu_step_profile [threads >= 1] [steps >= 1]\n");
    return 1;
  }
  return kd::run(threads, steps);
}
