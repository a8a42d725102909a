// Batch gathering (kernels/batch.cu): rows of the u8 MNIST training set picked
// by a shuffled index list, normalised into the float input buffer, labels
// widened to int32 — the first kernel of every training step.
//
// Bytes that must move per batch of b: read b*784 u8 pixels, b u8 labels and
// b int32 indices; write b*784 floats and b int32 labels. The 55,000-image set
// (43 MB) is larger than L2 on most GPUs, and random rows defeat the cache.
#include "bench_util.h"
#include "kd/data.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

constexpr int64_t kImages = 55000, kPixels = 28 * 28;

void BM_gather_normalize(benchmark::State& state) {
  const int b = int(state.range(0));
  kd::cuda::DeviceBuffer<uint8_t> images(kImages * kPixels, "benchmark images"), labels(kImages, "benchmark labels");
  kd::cuda::DeviceBuffer<int32_t> idx(b, "benchmark indices"), out_labels(b, "benchmark batch labels");
  kd::cuda::DeviceBuffer<float> out(size_t(b) * kPixels, "benchmark batch");
  kd::bench::fill_uniform<uint8_t>(images.data(), images.size(), 0, 255, 1);
  kd::bench::fill_uniform<uint8_t>(labels.data(), labels.size(), 0, 10, 2);
  kd::bench::fill_uniform<int32_t>(idx.data(), idx.size(), 0, int32_t(kImages), 3);
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t) {
    kd::cuda::gather_normalize(images.data(), labels.data(), idx.data(), out.data(), out_labels.data(), b, kPixels,
                               kd::Normalization{}, nullptr);
  });
  kd::bench::set_bandwidth_counters(state, double(b) * (kPixels * (1 + 4) + 1 + 4 + 4), timing);
}

BENCHMARK(BM_gather_normalize)->Arg(64)->Arg(1024)->Arg(10000)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
