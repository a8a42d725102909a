// Philox dropout (kernels/dropout.cu) at the teacher's two dropout layers:
// (b, 9216) after the pool (p = 0.25) and (b, 128) after fc1 (p = 0.5).
//
// Bytes that must move per element: forward reads x and writes y and the u8
// mask (9 bytes); backward reads dy and the mask and writes dx (9 bytes).
// The Philox draws are arithmetic, so the forward shows whether the kernel
// keeps up with memory or becomes compute-bound.
#include <vector>

#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;

void BM_dropout(benchmark::State& state, int features, float p, bool backward) {
  const int64_t n = state.range(0) * int64_t(features);
  SetLayout layout;
  const size_t x_at = layout.add<float>(n), y_at = layout.add<float>(n), mask_at = layout.add<uint8_t>(n);
  RotatingPool pool(layout.bytes(), "dropout benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, x_at), n, -1.0f, 1.0f, set);
    kd::bench::fill_uniform<uint8_t>(pool.get<uint8_t>(set, mask_at), n, 0, 2, 5 * set + 1);
  }
  kd::cuda::DeviceBuffer<uint64_t> step(1, "dropout benchmark step");
  step.upload(std::vector<uint64_t>{1});
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    float* x = pool.get<float>(i, x_at);
    float* y = pool.get<float>(i, y_at);
    uint8_t* mask = pool.get<uint8_t>(i, mask_at);
    if (backward) kd::cuda::dropout_backward(x, mask, y, n, p, nullptr);
    else kd::cuda::dropout_forward(x, y, mask, n, p, /*seed=*/42, step.data(), nullptr);
  });
  kd::bench::set_bandwidth_counters(state, 9.0 * n, timing);
}

BENCHMARK_CAPTURE(BM_dropout, pool_forward, 9216, 0.25f, false)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_dropout, pool_backward, 9216, 0.25f, true)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_dropout, fc1_forward, 128, 0.5f, false)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
