// Augmented batch gathering (kernels/augment.cu) against the plain gather
// (kernels/batch.cu) at the trainer's batch sizes on MNIST shapes: what the
// random affine adds to the first kernel of every training step.
//
// Bytes that must move per batch of b are the same for both: read b*784 u8
// pixels (the augmented kernel's four bilinear taps re-read the row's 784 B
// from L1), b u8 labels and b int32 indices; write b*784 floats and b int32
// labels. The augmented kernel adds per pixel ~20 float operations and the
// double normalisation both share, and per row one Philox block and a double
// Taylor sin/cos in one thread while the others wait at a barrier. "GB/s"
// counts the bytes above, so the two rows compare directly. Mixup's kernel
// (mixup_gather_normalize) samples two images per row, so it reads 2 b*784 u8
// and 2 b labels and writes b more int32 labels; its "GB/s" counts those.
#include <vector>

#include "bench_util.h"
#include "kd/augment.h"
#include "kd/data.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace {

constexpr int64_t kImages = 55000, kPixels = 28 * 28;

enum class Gather { Plain, Augmented, Mixup };

// Plain: kd::cuda::gather_normalize; Augmented: augment_gather_normalize with
// the recipe's defaults (shift 2 px, rotation 12 degrees, scale 0.9-1.1);
// Mixup: mixup_gather_normalize with those and a draw of Beta(0.2, 0.2).
void BM_gather(benchmark::State& state, Gather kind) {
  const int b = int(state.range(0));
  kd::cuda::DeviceBuffer<uint8_t> images(kImages * kPixels, "benchmark images"), labels(kImages, "benchmark labels");
  kd::cuda::DeviceBuffer<int32_t> idx(b, "benchmark indices"), out_labels(b, "benchmark batch labels");
  kd::cuda::DeviceBuffer<float> out(size_t(b) * kPixels, "benchmark batch");
  kd::cuda::DeviceBuffer<int32_t> partner_labels(b, "benchmark partner labels");
  kd::cuda::DeviceBuffer<uint64_t> epoch(1, "benchmark epoch");
  kd::cuda::DeviceBuffer<kd::MixupDraw> draw(1, "benchmark mixup draw");
  draw.upload(std::vector<kd::MixupDraw>{kd::mixup_draw(0.2f, 7, 1, 0, b)});
  kd::bench::fill_uniform<uint8_t>(images.data(), images.size(), 0, 255, 1);
  kd::bench::fill_uniform<uint8_t>(labels.data(), labels.size(), 0, 10, 2);
  kd::bench::fill_uniform<int32_t>(idx.data(), idx.size(), 0, int32_t(kImages), 3);
  KD_CUDA_CHECK(cudaMemset(epoch.data(), 0, sizeof(uint64_t)));
  kd::AugmentParams params;
  params.enabled = true;
  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t) {
    switch (kind) {
      case Gather::Plain:
        kd::cuda::gather_normalize(images.data(), labels.data(), idx.data(), out.data(), out_labels.data(), b, kPixels,
                                   kd::Normalization{}, nullptr);
        break;
      case Gather::Augmented:
        kd::cuda::augment_gather_normalize(images.data(), labels.data(), idx.data(), out.data(), out_labels.data(), b,
                                           28, 28, kd::Normalization{}, params, /*seed=*/7, epoch.data(), nullptr);
        break;
      case Gather::Mixup:
        kd::cuda::mixup_gather_normalize(images.data(), labels.data(), idx.data(), out.data(), out_labels.data(),
                                         partner_labels.data(), b, 28, 28, kd::Normalization{}, params, /*seed=*/7,
                                         epoch.data(), draw.data(), nullptr);
        break;
    }
  });
  const double row_bytes = kind == Gather::Mixup ? kPixels * (2 + 4) + 2 + 4 + 8 : kPixels * (1 + 4) + 1 + 4 + 4;
  kd::bench::set_bandwidth_counters(state, double(b) * row_bytes, timing);
}

BENCHMARK_CAPTURE(BM_gather, plain, Gather::Plain)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_gather, augmented, Gather::Augmented)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_gather, mixup, Gather::Mixup)->Arg(64)->Arg(1024)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
