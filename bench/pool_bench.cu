// 2x2 max pooling (kernels/pool.cu) at the teacher's shape, (b, 64, 24, 24) ->
// (b, 64, 12, 12), forward and backward, at the training batch and a large one.
//
// Bytes that must move, n = b*64*24*24 inputs: forward reads x (4n) and writes
// y (n) and the u8 argmax (n/4); backward reads dy (n) and argmax (n/4) and
// writes dx (4n). Inputs rotate so each launch finds them in device memory.
#include "bench_util.h"
#include "kd/cuda_ops.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;

constexpr int kChannels = 64, kSide = 24;

void BM_maxpool(benchmark::State& state, bool backward) {
  const int b = int(state.range(0));
  const int64_t n = int64_t(b) * kChannels * kSide * kSide, pooled = n / 4;
  SetLayout layout;
  const size_t x_at = layout.add<float>(n), y_at = layout.add<float>(pooled), arg_at = layout.add<uint8_t>(pooled);
  RotatingPool pool(layout.bytes(), "maxpool benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, x_at), n, -1.0f, 1.0f, 2 * set);
    kd::bench::fill_uniform(pool.get<float>(set, y_at), pooled, -1.0f, 1.0f, 2 * set + 1);
    kd::bench::fill_uniform<uint8_t>(pool.get<uint8_t>(set, arg_at), pooled, 0, 4, 7 * set);
  }
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    float* x = pool.get<float>(i, x_at);
    float* y = pool.get<float>(i, y_at);
    uint8_t* argmax = pool.get<uint8_t>(i, arg_at);
    if (backward) kd::cuda::maxpool2x2_backward(y, argmax, x, b, kChannels, kSide, kSide, nullptr);
    else kd::cuda::maxpool2x2_forward(x, y, argmax, b, kChannels, kSide, kSide, nullptr);
  });
  kd::bench::set_bandwidth_counters(state, 4.0 * n + 4.0 * pooled + pooled, timing);
}

BENCHMARK_CAPTURE(BM_maxpool, forward, false)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_maxpool, backward, true)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
