// The hint distance (kernels/hint.cu) with its gradient, cosine and mse, at
// the default student's hint shape (b, 128) for the training batch and a
// large one, and with wide features (b, 1024); and the backward hook that
// adds the features' gradient (hint_add_gradient) with the ReLU mask.
//
// Bytes that must move, n = b*d: hint_loss reads m and t (8n) and writes the
// gradient (4n), the per-row distance (4b) and the row total (read and
// written, 8b); the hook reads dx, g and the mask and writes dx (16n). One
// warp per row: at b = 64 the launch is latency, not bandwidth (64 warps on a
// GPU of 100+ SMs); the large batch shows the bandwidth the kernel reaches.
// Inputs rotate so each launch finds them in device memory.
#include "bench_util.h"
#include "kd/cuda_ops.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;

void BM_hint_loss(benchmark::State& state, kd::HintKind kind) {
  const int b = int(state.range(0)), d = int(state.range(1));
  const int64_t n = int64_t(b) * d;
  SetLayout layout;
  const size_t m_at = layout.add<float>(n), t_at = layout.add<float>(n), grad_at = layout.add<float>(n),
               row_at = layout.add<float>(b), total_at = layout.add<float>(b);
  RotatingPool pool(layout.bytes(), "hint benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, m_at), n, -1.0f, 1.0f, 3 * set);
    kd::bench::fill_uniform(pool.get<float>(set, t_at), n, 0.0f, 2.0f, 3 * set + 1);
    kd::bench::fill_uniform(pool.get<float>(set, total_at), b, 0.0f, 1.0f, 3 * set + 2);
  }
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    kd::cuda::hint_loss(pool.get<float>(i, m_at), pool.get<float>(i, t_at), pool.get<float>(i, grad_at),
                        pool.get<float>(i, row_at), pool.get<float>(i, total_at), b, d, kind, 1.0f, nullptr);
  });
  kd::bench::set_bandwidth_counters(state, 12.0 * n + 12.0 * b, timing);
}

void BM_hint_add_gradient(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  SetLayout layout;
  const size_t dx_at = layout.add<float>(n), g_at = layout.add<float>(n), mask_at = layout.add<float>(n);
  RotatingPool pool(layout.bytes(), "hint hook benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, dx_at), n, -1.0f, 1.0f, 3 * set);
    kd::bench::fill_uniform(pool.get<float>(set, g_at), n, -1.0f, 1.0f, 3 * set + 1);
    kd::bench::fill_uniform(pool.get<float>(set, mask_at), n, -1.0f, 1.0f, 3 * set + 2);
  }
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    kd::cuda::hint_add_gradient(pool.get<float>(i, dx_at), pool.get<float>(i, g_at), pool.get<float>(i, mask_at), n,
                                nullptr);
  });
  kd::bench::set_bandwidth_counters(state, 16.0 * n, timing);
}

BENCHMARK_CAPTURE(BM_hint_loss, cosine, kd::HintKind::Cosine)
    ->Args({64, 128})
    ->Args({4096, 128})
    ->Args({4096, 1024})
    ->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_hint_loss, mse, kd::HintKind::Mse)
    ->Args({64, 128})
    ->Args({4096, 128})
    ->Args({4096, 1024})
    ->Apply(kd::bench::manual_time);
BENCHMARK(BM_hint_add_gradient)->Args({64, 128})->Args({4096, 1024})->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
