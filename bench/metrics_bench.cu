// Evaluation metrics (kernels/metrics.cu): argmax per row and the on-device
// correct count over logits (b, 10), at an evaluation batch and the whole test set.
//
// Bytes that must move: read b*10 floats (+ b int32 labels for the count);
// argmax also writes b int32 indices.
#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

constexpr int kClasses = 10;

void BM_metrics(benchmark::State& state, bool count) {
  const int b = int(state.range(0));
  kd::cuda::DeviceBuffer<float> logits(size_t(b) * kClasses, "benchmark logits");
  kd::cuda::DeviceBuffer<int32_t> labels(b, "benchmark labels"), argmax(b, "benchmark argmax");
  kd::cuda::DeviceBuffer<unsigned long long> correct(1, "benchmark correct count");
  kd::bench::fill_uniform(logits.data(), logits.size(), -5.0f, 5.0f, 1);
  kd::bench::fill_uniform<int32_t>(labels.data(), labels.size(), 0, kClasses, 2);
  KD_CUDA_CHECK(cudaMemset(correct.data(), 0, correct.bytes()));
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t) {
    if (count) kd::cuda::accumulate_correct(logits.data(), labels.data(), b, kClasses, correct.data(), nullptr);
    else kd::cuda::argmax_rows(logits.data(), argmax.data(), b, kClasses, nullptr);
  });
  kd::bench::set_bandwidth_counters(state, double(b) * (kClasses * 4 + 4), timing);
}

BENCHMARK_CAPTURE(BM_metrics, argmax, false)->Arg(1000)->Arg(10000)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_metrics, correct_count, true)->Arg(1000)->Arg(10000)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
