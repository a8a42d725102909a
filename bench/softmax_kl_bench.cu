// Fused softmax_kl (kernels/softmax_kl.cu) against the same loss computed the
// plain way, one kernel per step with every intermediate in device memory:
//   softmax(s/T), softmax(s), log_softmax(s/T), log_softmax(t/T)  (row kernels)
//   KL per row, CE per row (+ the row loss), gradient            (3 more kernels)
// over B x C from the trainer's 64 x 10 to large-vocabulary 1024 x 128256.
//
// Counters: GB/s against the bytes that must move (read s, read t, write the
// gradient: 3 * B * C * 4; labels and row outputs are O(B) and left out), and
// of_copy, that rate over the device-to-device copy bandwidth measured in
// this binary. Inputs rotate across buffers larger than 2x L2 (bench_util.h).
// softmax_kl_fused_mixup: the fused kernel with mixup's mixed hard targets.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;
using kd::cuda::DeviceBuffer;

constexpr float kTemperature = 4.0f;
constexpr float kAlpha = 0.9f;

struct Shape {
  int b, c;
};
const Shape kShapes[] = {{64, 10}, {4096, 10}, {262144, 10}, {8192, 1000}, {4096, 32000}, {1024, 128256}};

// ------------------------------------------------------------------ unfused baseline
// A row per warp for short rows, a row per 512-thread block for long ones:
// the layout a careful plain implementation would pick.
template <int kRowThreads>
struct RowGroup {
  static constexpr int kRowsPerBlock = kRowThreads >= 256 ? 1 : 256 / kRowThreads;
  static constexpr int kBlockThreads = kRowThreads * kRowsPerBlock;
  __device__ static int row() { return blockIdx.x * kRowsPerBlock + threadIdx.x / kRowThreads; }
  __device__ static int lane() { return threadIdx.x % kRowThreads; }
  // Sum or max over the row's threads; every thread of the row gets the result.
  template <typename Op>
  __device__ static float reduce(float v, Op op) {
    for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    if constexpr (kRowThreads > 32) {
      __shared__ float partial[kRowThreads / 32];
      __syncthreads();  // the previous reduce's readers are done
      if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
      __syncthreads();
      v = partial[0];
      for (int w = 1; w < kRowThreads / 32; ++w) v = op(v, partial[w]);
    }
    return v;
  }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// out = softmax(x * scale) or, when log_out, log_softmax(x * scale). x, out: (b, c).
template <int kRowThreads>
__global__ void softmax_rows_kernel(const float* x, float* out, int b, int c, float scale, bool log_out) {
  using G = RowGroup<kRowThreads>;
  const int row = G::row();
  if (row >= b) return;  // whole rows leave together (a row never straddles blocks when it is a block)
  const float* xr = x + int64_t(row) * c;
  float* outr = out + int64_t(row) * c;
  float m = -INFINITY;
  for (int j = G::lane(); j < c; j += kRowThreads) m = fmaxf(m, xr[j] * scale);
  m = G::reduce(m, Max{});
  float sum = 0.f;
  for (int j = G::lane(); j < c; j += kRowThreads) sum += expf(xr[j] * scale - m);
  sum = G::reduce(sum, Add{});
  const float log_sum = logf(sum);
  for (int j = G::lane(); j < c; j += kRowThreads) {
    const float z = xr[j] * scale - m;
    outr[j] = log_out ? z - log_sum : expf(z) / sum;
  }
}

// kl: (b) = sum_j exp(lp_t) * (lp_t - lp_s) from two (b, c) log-softmaxes.
template <int kRowThreads>
__global__ void kl_rows_kernel(const float* lp_t, const float* lp_s, float* kl, int b, int c) {
  using G = RowGroup<kRowThreads>;
  const int row = G::row();
  if (row >= b) return;
  const int64_t at = int64_t(row) * c;
  float sum = 0.f;
  for (int j = G::lane(); j < c; j += kRowThreads) sum += expf(lp_t[at + j]) * (lp_t[at + j] - lp_s[at + j]);
  sum = G::reduce(sum, Add{});
  if (G::lane() == 0) kl[row] = sum;
}

// ce: log-sum-exp(s) - s_label per row, and row_loss = alpha T^2 kl + (1 - alpha) ce.
template <int kRowThreads>
__global__ void ce_rows_kernel(const float* s, const int32_t* labels, const float* kl, float* row_loss, int b, int c,
                               float temperature, float alpha) {
  using G = RowGroup<kRowThreads>;
  const int row = G::row();
  if (row >= b) return;
  const float* sr = s + int64_t(row) * c;
  float m = -INFINITY;
  for (int j = G::lane(); j < c; j += kRowThreads) m = fmaxf(m, sr[j]);
  m = G::reduce(m, Max{});
  float sum = 0.f;
  for (int j = G::lane(); j < c; j += kRowThreads) sum += expf(sr[j] - m);
  sum = G::reduce(sum, Add{});
  if (G::lane() == 0) {
    const float ce = m + logf(sum) - sr[labels[row]];
    row_loss[row] = alpha * temperature * temperature * kl[row] + (1.0f - alpha) * ce;
  }
}

// grad: (b, c) = [alpha T (p_s_t - exp(lp_t)) + (1 - alpha)(p_s - onehot)] / b, elementwise.
__global__ void gradient_kernel(const float* p_s_t, const float* lp_t, const float* p_s, const int32_t* labels,
                                float* grad, int b, int c, float temperature, float alpha) {
  const int64_t n = int64_t(b) * c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int row = int(i / c), j = int(i % c);
    const float hard = p_s[i] - (j == labels[row] ? 1.0f : 0.0f);
    grad[i] = (alpha * temperature * (p_s_t[i] - expf(lp_t[i])) + (1.0f - alpha) * hard) / float(b);
  }
}

// Scratch of the unfused sequence: four (b, c) intermediates and the per-row KL.
struct UnfusedScratch {
  DeviceBuffer<float> p_s_t, p_s, lp_s_t, lp_t_t, kl;
  explicit UnfusedScratch(const Shape& s)
      : p_s_t(size_t(s.b) * s.c, "softmax(s/T)"),
        p_s(size_t(s.b) * s.c, "softmax(s)"),
        lp_s_t(size_t(s.b) * s.c, "log_softmax(s/T)"),
        lp_t_t(size_t(s.b) * s.c, "log_softmax(t/T)"),
        kl(size_t(s.b), "row KL") {}
};

template <int kRowThreads>
void unfused_loss(const Shape& s, const float* logits, const float* teacher, const int32_t* labels, float* grad,
                  float* row_loss, UnfusedScratch& tmp, cudaStream_t stream) {
  using G = RowGroup<kRowThreads>;
  const int blocks = (s.b + G::kRowsPerBlock - 1) / G::kRowsPerBlock;
  const float inv_t = 1.0f / kTemperature;
  softmax_rows_kernel<kRowThreads>
      <<<blocks, G::kBlockThreads, 0, stream>>>(logits, tmp.p_s_t.data(), s.b, s.c, inv_t, false);
  softmax_rows_kernel<kRowThreads>
      <<<blocks, G::kBlockThreads, 0, stream>>>(logits, tmp.p_s.data(), s.b, s.c, 1.0f, false);
  softmax_rows_kernel<kRowThreads>
      <<<blocks, G::kBlockThreads, 0, stream>>>(logits, tmp.lp_s_t.data(), s.b, s.c, inv_t, true);
  softmax_rows_kernel<kRowThreads>
      <<<blocks, G::kBlockThreads, 0, stream>>>(teacher, tmp.lp_t_t.data(), s.b, s.c, inv_t, true);
  kl_rows_kernel<kRowThreads>
      <<<blocks, G::kBlockThreads, 0, stream>>>(tmp.lp_t_t.data(), tmp.lp_s_t.data(), tmp.kl.data(), s.b, s.c);
  ce_rows_kernel<kRowThreads><<<blocks, G::kBlockThreads, 0, stream>>>(logits, labels, tmp.kl.data(), row_loss, s.b,
                                                                       s.c, kTemperature, kAlpha);
  const int64_t n = int64_t(s.b) * s.c;
  const int grad_blocks = int(std::min<int64_t>((n + 255) / 256, 65536));
  gradient_kernel<<<grad_blocks, 256, 0, stream>>>(tmp.p_s_t.data(), tmp.lp_t_t.data(), tmp.p_s.data(), labels, grad,
                                                   s.b, s.c, kTemperature, kAlpha);
  KD_CUDA_CHECK_LAUNCH(unfused_loss);
}

// ------------------------------------------------------------------ benchmarks
// One rotation set: s, t, labels, grad, row_loss, row_kl.
struct LossSet {
  SetLayout layout;
  size_t s, t, labels, grad, row_loss, row_kl;
  explicit LossSet(const Shape& shape) {
    const size_t n = size_t(shape.b) * shape.c;
    s = layout.add<float>(n);
    t = layout.add<float>(n);
    labels = layout.add<int32_t>(shape.b);
    grad = layout.add<float>(n);
    row_loss = layout.add<float>(shape.b);
    row_kl = layout.add<float>(shape.b);
  }
};

void fill_inputs(RotatingPool& pool, const LossSet& set, const Shape& shape) {
  const size_t n = size_t(shape.b) * shape.c;
  for (int i = 0; i < pool.sets(); ++i) {
    kd::bench::fill_uniform(pool.get<float>(i, set.s), n, -5.0f, 5.0f, 2 * i + 1);
    kd::bench::fill_uniform(pool.get<float>(i, set.t), n, -5.0f, 5.0f, 2 * i + 2);
    kd::bench::fill_uniform(pool.get<int32_t>(i, set.labels), size_t(shape.b), 0, shape.c, 7 * i + 3);
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
}

void set_counters(benchmark::State& state, const Shape& shape, const kd::bench::Timing& timing) {
  kd::bench::set_bandwidth_counters(state, 3.0 * double(shape.b) * shape.c * sizeof(float), timing);
}

// mixup: with mixed hard targets (the labels as their own partners: the same
// reads and arithmetic as distinct ones) and a draw read from device memory.
void bm_fused(benchmark::State& state, Shape shape, bool mixup) {
  const LossSet set(shape);
  RotatingPool pool(set.layout.bytes(), "softmax_kl bench inputs");
  fill_inputs(pool, set, shape);
  kd::cuda::DeviceBuffer<kd::MixupDraw> draw(1, "softmax_kl bench mixup draw");
  draw.upload(std::vector<kd::MixupDraw>{kd::MixupDraw{0.7f, 0.3f, 1}});
  const auto timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    kd::cuda::SoftmaxKlArgs args;
    args.s = pool.get<float>(i, set.s);
    args.t = pool.get<float>(i, set.t);
    args.labels = pool.get<int32_t>(i, set.labels);
    args.partner_labels = mixup ? args.labels : nullptr;
    args.mix = mixup ? draw.data() : nullptr;
    args.grad = pool.get<float>(i, set.grad);
    args.row_loss = pool.get<float>(i, set.row_loss);
    args.row_kl = pool.get<float>(i, set.row_kl);
    args.b = shape.b;
    args.c = shape.c;
    args.temperature = kTemperature;
    args.alpha = kAlpha;
    kd::cuda::softmax_kl(args, nullptr);
  });
  set_counters(state, shape, timing);
}

void bm_unfused(benchmark::State& state, Shape shape) {
  const LossSet set(shape);
  RotatingPool pool(set.layout.bytes(), "unfused bench inputs");
  fill_inputs(pool, set, shape);
  UnfusedScratch scratch(shape);
  const auto timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    const float* s = pool.get<float>(i, set.s);
    const float* t = pool.get<float>(i, set.t);
    const int32_t* labels = pool.get<int32_t>(i, set.labels);
    float* grad = pool.get<float>(i, set.grad);
    float* row_loss = pool.get<float>(i, set.row_loss);
    if (shape.c <= 1024) unfused_loss<32>(shape, s, t, labels, grad, row_loss, scratch, nullptr);
    else unfused_loss<512>(shape, s, t, labels, grad, row_loss, scratch, nullptr);
  });
  set_counters(state, shape, timing);
}

void register_benchmarks() {
  for (const Shape& s : kShapes) {
    const std::string suffix = "/" + std::to_string(s.b) + "x" + std::to_string(s.c);
    benchmark::RegisterBenchmark(("softmax_kl_fused" + suffix).c_str(), bm_fused, s, false)
        ->Apply(kd::bench::manual_time);
    benchmark::RegisterBenchmark(("softmax_kl_fused_mixup" + suffix).c_str(), bm_fused, s, true)
        ->Apply(kd::bench::manual_time);
    benchmark::RegisterBenchmark(("softmax_kl_unfused" + suffix).c_str(), bm_unfused, s)->Apply(kd::bench::manual_time);
  }
}

}  // namespace

int main(int argc, char** argv) { return kd::bench::bench_main(argc, argv, register_benchmarks); }
