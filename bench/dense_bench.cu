// Dense layers (kernels/dense.cu): the custom tiled SGEMM against cuBLAS, at
// the trainer's layer shapes (student 784-256-128-10, teacher head 9216-128-10,
// batch 64 and 1024) and one large square product (4096^3).
//
// Forward, three ways: custom (bias + ReLU in the GEMM epilogue), cublasLt
// (the BIAS / RELU_BIAS epilogue: what DenseImpl::Cublas runs), and plain
// cublasSgemm followed by a separate bias + ReLU kernel (written here: the
// unfused baseline). Backward, two ways: custom and cuBLAS (dX with the ReLU
// mask of x, dW, db). ReLU follows every layer except the 10-class output; the
// first student layer (in = 784) computes no dX, as in training.
//
// Counter: TFLOP/s, 2*b*in*out per GEMM (forward one GEMM, backward two).
// All in fp32 (no TF32). Inputs rotate across buffers larger than 2x L2.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;
using kd::cuda::DenseImpl;

struct Shape {
  int b, in, out;
  bool relu() const { return out != 10; }
  bool needs_dx() const { return in != 784; }
};
const Shape kShapes[] = {{64, 784, 256},   {64, 256, 128},  {64, 128, 10},     {64, 9216, 128},   {1024, 784, 256},
                         {1024, 256, 128}, {1024, 128, 10}, {1024, 9216, 128}, {4096, 4096, 4096}};

// One rotation set of a layer's tensors.
struct LayerSet {
  SetLayout layout;
  size_t x, w, bias, y, dy, dx, dw, db;
  explicit LayerSet(const Shape& s) {
    x = layout.add<float>(size_t(s.b) * s.in);
    w = layout.add<float>(size_t(s.out) * s.in);
    bias = layout.add<float>(s.out);
    y = layout.add<float>(size_t(s.b) * s.out);
    dy = layout.add<float>(size_t(s.b) * s.out);
    dx = layout.add<float>(size_t(s.b) * s.in);
    dw = layout.add<float>(size_t(s.out) * s.in);
    db = layout.add<float>(s.out);
  }
};

// Random inputs in every set: x, dy ~ U(-1, 1); w, bias ~ U(-1/sqrt(in), 1/sqrt(in)).
std::unique_ptr<RotatingPool> make_pool(const Shape& s, const LayerSet& set) {
  auto pool = std::make_unique<RotatingPool>(set.layout.bytes(), "dense bench tensors");
  const float bound = 1.0f / std::sqrt(float(s.in));
  for (int i = 0; i < pool->sets(); ++i) {
    kd::bench::fill_uniform(pool->get<float>(i, set.x), size_t(s.b) * s.in, -1.0f, 1.0f, 4 * i + 1);
    kd::bench::fill_uniform(pool->get<float>(i, set.w), size_t(s.out) * s.in, -bound, bound, 4 * i + 2);
    kd::bench::fill_uniform(pool->get<float>(i, set.bias), size_t(s.out), -bound, bound, 4 * i + 3);
    kd::bench::fill_uniform(pool->get<float>(i, set.dy), size_t(s.b) * s.out, -1.0f, 1.0f, 4 * i + 4);
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  return pool;
}

// Shared by every benchmark so handle creation and heuristics stay out of the
// timings. Never destroyed: library handles must not outlive the CUDA runtime
// in static destruction at exit.
kd::cuda::DenseContext& context() {
  static auto* ctx = new kd::cuda::DenseContext;
  return *ctx;
}

#define KD_BENCH_CUBLAS_CHECK(call)                                                                            \
  do {                                                                                                         \
    const cublasStatus_t status_ = (call);                                                                     \
    if (status_ != CUBLAS_STATUS_SUCCESS)                                                                      \
      ::kd::cuda::throw_library_error("cuBLAS", int(status_), cublasGetStatusString(status_), #call, __FILE__, \
                                      __LINE__);                                                               \
  } while (0)

// The unfused baseline's own cuBLAS handle, fp32 math, workspace set once
// (both kept to the end of the process, like context()).
cublasHandle_t plain_cublas() {
  static const cublasHandle_t handle = [] {
    auto* workspace = new kd::cuda::DeviceBuffer<unsigned char>(size_t(32) << 20, "bench cuBLAS workspace");
    cublasHandle_t h = nullptr;
    KD_BENCH_CUBLAS_CHECK(cublasCreate(&h));
    KD_BENCH_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    KD_BENCH_CUBLAS_CHECK(cublasSetWorkspace(h, workspace->data(), workspace->bytes()));
    return h;
  }();
  return handle;
}

// y: (rows, cols) = act(y + bias), the epilogue as a separate pass.
__global__ void bias_act_kernel(float* y, const float* bias, int64_t n, int cols, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = y[i] + bias[i % cols];
    y[i] = relu && !(v > 0.f) ? 0.f : v;
  }
}

// y^T (out x b) = w^T (w as stored, in x out, transposed) . x^T (x as stored, in x b), column-major.
void plain_forward(const Shape& s, const float* x, const float* w, const float* bias, float* y) {
  const float one = 1.0f, zero = 0.0f;
  KD_BENCH_CUBLAS_CHECK(
      cublasSgemm(plain_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, s.out, s.b, s.in, &one, w, s.in, x, s.in, &zero, y, s.out));
  const int64_t n = int64_t(s.b) * s.out;
  bias_act_kernel<<<int(std::min<int64_t>((n + 255) / 256, 65536)), 256>>>(y, bias, n, s.out, s.relu());
  KD_CUDA_CHECK_LAUNCH(bias_act_kernel);
}

void set_tflops(benchmark::State& state, const Shape& s, int gemms, const kd::bench::Timing& timing) {
  state.counters["TFLOP/s"] = gemms * 2.0 * s.b * double(s.in) * s.out / timing.median_s / 1e12;
}

enum class Forward { Custom, CublasLt, CublasUnfused };

void bm_forward(benchmark::State& state, Shape s, Forward variant) {
  const LayerSet set(s);
  const auto pool = make_pool(s, set);
  const auto timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    const float* x = pool->get<float>(i, set.x);
    const float* w = pool->get<float>(i, set.w);
    const float* bias = pool->get<float>(i, set.bias);
    float* y = pool->get<float>(i, set.y);
    if (variant == Forward::CublasUnfused) return plain_forward(s, x, w, bias, y);
    const DenseImpl impl = variant == Forward::Custom ? DenseImpl::Custom : DenseImpl::Cublas;
    kd::cuda::dense_forward(context(), impl, x, w, bias, y, s.b, s.in, s.out, s.relu(), nullptr);
  });
  set_tflops(state, s, 1, timing);
}

void bm_backward(benchmark::State& state, Shape s, DenseImpl impl) {
  const LayerSet set(s);
  const auto pool = make_pool(s, set);
  const auto timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    kd::cuda::dense_backward(context(), impl, pool->get<float>(i, set.x), pool->get<float>(i, set.w),
                             pool->get<float>(i, set.dy), s.needs_dx() ? pool->get<float>(i, set.dx) : nullptr,
                             /*mask_dx_by_x=*/true, pool->get<float>(i, set.dw), pool->get<float>(i, set.db), s.b, s.in,
                             s.out, nullptr);
  });
  set_tflops(state, s, s.needs_dx() ? 2 : 1, timing);
}

void register_benchmarks() {
  for (const Shape& s : kShapes) {
    const std::string suffix = "/" + std::to_string(s.b) + "x" + std::to_string(s.in) + "x" + std::to_string(s.out) +
                               (s.relu() ? "_relu" : "");
    const auto add = [&](const std::string& name, auto fn, auto variant) {
      benchmark::RegisterBenchmark((name + suffix).c_str(), fn, s, variant)->Apply(kd::bench::manual_time);
    };
    add("dense_fwd_custom", bm_forward, Forward::Custom);
    add("dense_fwd_cublaslt_epilogue", bm_forward, Forward::CublasLt);
    add("dense_fwd_cublas_unfused", bm_forward, Forward::CublasUnfused);
    add("dense_bwd_custom", bm_backward, DenseImpl::Custom);
    add("dense_bwd_cublas", bm_backward, DenseImpl::Cublas);
  }
}

}  // namespace

int main(int argc, char** argv) { return kd::bench::bench_main(argc, argv, register_benchmarks); }
