// kernels/augment.cu against kd::ref::augment_gather_normalize and
// kd::ref::mixup_gather_normalize, on random u8 sets, outputs poisoned with NaN first.
//
// Tolerance 1e-6 relative (SPEC: 1e-5 for elementwise kernels). Both sides run
// the same functions of kd/augment.h: the transform is drawn with explicit,
// individually rounded operations (fma, the Taylor sin/cos instead of the
// math libraries' sin/cos, whose last bits differ), so it is bit-identical; the
// kernel's per-pixel float arithmetic uses the _rn intrinsics, which nvcc may
// not fuse, and floor is exact, so each pixel should agree to the last bit
// too. What the bound leaves room for is a host compiler that fuses a*b+c
// into an FMA (GCC targeting an FMA-capable -march): a source coordinate then
// moves by ~1 ulp (2e-6 px at 28 px); the bilinear sample is continuous with
// slope <= 255 per pixel, so that pixel moves by <= ~1e-3 raw, 1.3e-5
// normalised, ~1e-7 of a 784-pixel batch row's norm. A wrong tap, weight,
// centre or transform moves whole pixels by 1e-1 and more.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/augment.h"
#include "kd/error.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

constexpr float kMean = 0.1307f, kStd = 0.3081f;  // MNIST normalisation (SPEC section 2)
constexpr double kTolerance = 1e-6;

std::vector<uint8_t> random_bytes(size_t n, int hi, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> dist(0, hi);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(dist(rng));
  return v;
}

struct Shape {
  int c, h, w;
};

kd::AugmentParams enabled(float shift, float rotate, float min_scale, float max_scale) {
  kd::AugmentParams p;
  p.enabled = true;
  p.max_shift = shift;
  p.max_rotate_deg = rotate;
  p.min_scale = min_scale;
  p.max_scale = max_scale;
  return p;
}

TEST(AugmentGpu, MatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 21);
  const int samples = 300;
  // MNIST; 3 odd-sized channels (planes that are not a multiple of anything,
  // c > 1 sharing one transform); a single pixel (every tap but one is
  // background); more pixels per row than threads per block (2 x 33 x 17 = 1122 > 256).
  const Shape shapes[] = {{1, 28, 28}, {3, 7, 5}, {1, 1, 1}, {2, 33, 17}};
  // One block per row: 1 row, one short of and one past a multiple of 64, and (on a GPU,
  // where it costs nothing) a large batch.
  const std::vector<int> batches = kd::test::gpu_or_sim<int>({1, 63, 64, 65, 1000}, {1, 63, 65});
  // The recipe's defaults; everything large (half the image out of view,
  // rotations to +-180 degrees, scales 0.5-2); the identity through the real draw.
  const kd::AugmentParams recipes[] = {enabled(2, 12, 0.9f, 1.1f), enabled(7, 180, 0.5f, 2), enabled(0, 0, 1, 1)};
  for (const Shape& s : shapes) {
    const int64_t pixels = int64_t(s.c) * s.h * s.w;
    const std::vector<uint8_t> images = random_bytes(size_t(samples) * pixels, 255, rng);
    const std::vector<uint8_t> labels = random_bytes(size_t(samples), 9, rng);
    DeviceBuffer<uint8_t> d_images(images.size(), "images"), d_labels(labels.size(), "labels");
    d_images.upload(images);
    d_labels.upload(labels);
    for (const int b : batches) {
      // Indices with repeats and in no particular order, as a shuffled epoch has.
      std::uniform_int_distribution<int32_t> pick(0, samples - 1);
      std::vector<int32_t> idx(b);
      for (auto& i : idx) i = pick(rng);
      std::vector<int32_t> labels_ref(b);
      for (int r = 0; r < b; ++r) labels_ref[r] = labels[idx[r]];
      DeviceBuffer<int32_t> d_idx(b, "idx"), d_out_labels(b, "out labels");
      DeviceBuffer<float> d_out(size_t(b) * pixels, "out");
      DeviceBuffer<uint64_t> d_epoch(1, "epoch");
      d_idx.upload(idx);
      for (const kd::AugmentParams& p : recipes) {
        const uint64_t seed = rng(), epoch = rng() % 100;
        SCOPED_TRACE(testing::Message() << "b " << b << " shape " << s.c << "x" << s.h << "x" << s.w << " shift "
                                        << p.max_shift << " rotate " << p.max_rotate_deg << " seed " << seed
                                        << " epoch " << epoch);
        std::vector<float> out_ref(size_t(b) * pixels);
        const kd::Normalization norm = kd::uniform_normalization(s.c, kMean, kStd);
        kd::ref::augment_gather_normalize(images.data(), idx.data(), out_ref.data(), b, s.h, s.w, norm, p, seed, epoch);
        d_epoch.upload(std::vector<uint64_t>{epoch});
        kd::test::poison(d_out);
        kd::test::poison(d_out_labels);
        kd::cuda::augment_gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(),
                                           d_out_labels.data(), b, s.h, s.w, norm, p, seed, d_epoch.data(), nullptr);
        KD_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_LE(kd::test::rel_error(d_out.download(), out_ref), kTolerance);
        EXPECT_EQ(kd::test::bitwise_difference(d_out_labels.download(), labels_ref), "");
      }
    }
  }
}

TEST(AugmentGpu, EpochIsReadFromTheDeviceAtRunTime) {
  // The trainer replays one captured launch every epoch and advances the epoch
  // in device memory: the same arguments must give the next epoch's view.
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 22);
  const int samples = 50, b = 33, h = 28, w = 28;
  const std::vector<uint8_t> images = random_bytes(size_t(samples) * h * w, 255, rng);
  std::vector<int32_t> idx(b);
  for (int r = 0; r < b; ++r) idx[r] = (r * 7) % samples;
  DeviceBuffer<uint8_t> d_images(images.size(), "images"), d_labels(samples, "labels");
  DeviceBuffer<int32_t> d_idx(b, "idx");
  DeviceBuffer<float> d_out(size_t(b) * h * w, "out");
  DeviceBuffer<uint64_t> d_epoch(1, "epoch");
  d_images.upload(images);
  d_idx.upload(idx);
  const kd::AugmentParams p = enabled(2, 12, 0.9f, 1.1f);
  std::vector<float> previous;
  for (uint64_t epoch = 0; epoch < 3; ++epoch) {
    d_epoch.upload(std::vector<uint64_t>{epoch});
    kd::test::poison(d_out);
    kd::cuda::augment_gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(), nullptr, b, h, w,
                                       kd::Normalization{}, p, /*seed=*/17, d_epoch.data(), nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> out_ref(size_t(b) * h * w);
    kd::ref::augment_gather_normalize(images.data(), idx.data(), out_ref.data(), b, h, w, kd::Normalization{}, p, 17,
                                      epoch);
    const std::vector<float> out = d_out.download();
    EXPECT_LE(kd::test::rel_error(out, out_ref), kTolerance) << "epoch " << epoch;
    EXPECT_NE(out, previous) << "epoch " << epoch << " repeated the previous epoch's view";
    previous = out;
  }
}

TEST(AugmentGpu, DisabledIsTheBatchKernelBitForBit) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 23);
  const int samples = 40, b = 65, c = 2, h = 9, w = 11;
  const int64_t pixels = int64_t(c) * h * w;
  const std::vector<uint8_t> images = random_bytes(size_t(samples) * pixels, 255, rng);
  std::vector<int32_t> idx(b);
  for (auto& i : idx) i = int32_t(rng() % samples);
  DeviceBuffer<uint8_t> d_images(images.size(), "images"), d_labels(samples, "labels");
  DeviceBuffer<int32_t> d_idx(b, "idx");
  DeviceBuffer<float> d_plain(size_t(b) * pixels, "plain"), d_out(size_t(b) * pixels, "out");
  DeviceBuffer<uint64_t> d_epoch(1, "epoch");
  d_images.upload(images);
  d_idx.upload(idx);
  d_epoch.upload(std::vector<uint64_t>{5});
  kd::test::poison(d_out);
  kd::cuda::gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_plain.data(), nullptr, b, int64_t(h) * w,
                             kd::uniform_normalization(c, kMean, kStd), nullptr);
  kd::cuda::augment_gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(), nullptr, b, h, w,
                                     kd::uniform_normalization(c, kMean, kStd), kd::AugmentParams{}, 3, d_epoch.data(),
                                     nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(kd::test::bitwise_difference(d_out.download(), d_plain.download()), "");
}

// Mixup's batch (kernels/augment.cu mixup_gather_normalize) against
// ref::mixup_gather_normalize: each row and its partner's under their own
// transforms, mixed by the draw read from device memory (a new draw per
// launch, as a replayed step graph sees), and both label columns. Augmented
// and not (the mixed identity views must still be the plain pixels' mix).
TEST(AugmentGpu, MixupMatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 24);
  const int samples = 120;
  const Shape shapes[] = {{1, 28, 28}, {3, 7, 5}};
  // b = 1 mixes a row with itself; 2 swaps the pair; 65 spans a block boundary of nothing but rows.
  const std::vector<int> batches = kd::test::gpu_or_sim<int>({1, 2, 65, 1000}, {1, 2, 65});
  const kd::AugmentParams recipes[] = {enabled(2, 12, 0.9f, 1.1f), kd::AugmentParams{}};
  for (const Shape& s : shapes) {
    const int64_t pixels = int64_t(s.c) * s.h * s.w;
    const std::vector<uint8_t> images = random_bytes(size_t(samples) * pixels, 255, rng);
    const std::vector<uint8_t> labels = random_bytes(size_t(samples), 9, rng);
    DeviceBuffer<uint8_t> d_images(images.size(), "images"), d_labels(labels.size(), "labels");
    d_images.upload(images);
    d_labels.upload(labels);
    const kd::Normalization norm = kd::uniform_normalization(s.c, kMean, kStd);
    for (const int b : batches) {
      std::vector<int32_t> idx(b);
      for (auto& i : idx) i = int32_t(rng() % samples);
      DeviceBuffer<int32_t> d_idx(b, "idx"), d_out_labels(b, "labels"), d_partner_labels(b, "partner labels");
      DeviceBuffer<float> d_out(size_t(b) * pixels, "out");
      DeviceBuffer<uint64_t> d_epoch(1, "epoch");
      DeviceBuffer<kd::MixupDraw> d_draw(1, "draw");
      d_idx.upload(idx);
      for (const kd::AugmentParams& p : recipes) {
        const uint64_t seed = rng(), epoch = 1 + rng() % 100;
        const kd::MixupDraw draw = kd::mixup_draw(0.4f, seed, epoch, int64_t(rng() % 1000) * b, b);
        SCOPED_TRACE(testing::Message() << "b " << b << " shape " << s.c << "x" << s.h << "x" << s.w << " augment "
                                        << p.enabled << " lambda " << draw.lambda << " offset " << draw.offset);
        std::vector<float> out_ref(size_t(b) * pixels);
        kd::ref::mixup_gather_normalize(images.data(), idx.data(), out_ref.data(), b, 0, b, s.h, s.w, norm, p, seed,
                                        epoch, draw);
        std::vector<int32_t> labels_ref(b), partners_ref(b);
        for (int r = 0; r < b; ++r) {
          labels_ref[r] = labels[idx[r]];
          partners_ref[r] = labels[idx[kd::mixup_partner(r, draw, b)]];
        }
        d_epoch.upload(std::vector<uint64_t>{epoch});
        d_draw.upload(std::vector<kd::MixupDraw>{draw});
        kd::test::poison(d_out);
        kd::test::poison(d_out_labels);
        kd::test::poison(d_partner_labels);
        kd::cuda::mixup_gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(),
                                         d_out_labels.data(), d_partner_labels.data(), b, s.h, s.w, norm, p, seed,
                                         d_epoch.data(), d_draw.data(), nullptr);
        KD_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_LE(kd::test::rel_error(d_out.download(), out_ref), kTolerance);
        EXPECT_EQ(kd::test::bitwise_difference(d_out_labels.download(), labels_ref), "");
        EXPECT_EQ(kd::test::bitwise_difference(d_partner_labels.download(), partners_ref), "");
      }
    }
  }
}

TEST(AugmentGpu, RejectsBadParametersBeforeLaunching) {
  KD_REQUIRE_GPU();
  kd::AugmentParams p = enabled(2, 12, 0.9f, 1.1f);
  p.max_rotate_deg = 360;  // out of range: the error names the field, and nothing is enqueued
  EXPECT_THROW(kd::cuda::augment_gather_normalize(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 28, 28,
                                                  kd::Normalization{}, p, 0, nullptr, nullptr),
               kd::Error);
}

}  // namespace
