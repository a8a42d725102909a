// kernels/batch.cu against kd::ref::gather_normalize and hand-gathered labels.
// Each output is (px / 255 - mean) / std evaluated in double and rounded once
// to float on both sides, so the result should be exact; the 1e-6 relative
// bound (SPEC: 1e-5 for elementwise kernels) only leaves room for a last-bit
// difference in how a compiler evaluates the double expression.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

// MNIST's normalisation (SPEC section 2) for one channel; for three, one
// mean and std per channel, all different, so a channel mix-up shows.
const kd::Normalization kGrey{};
const kd::Normalization kColour{3, {0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f}};

std::vector<uint8_t> random_bytes(size_t n, int hi, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> dist(0, hi);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(dist(rng));
  return v;
}

TEST(BatchGpu, GatherNormalizeMatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 4);
  const int samples = 1200;
  for (const auto& [norm, plane] :
       {std::pair{kGrey, int64_t(784)}, {kGrey, int64_t(1)}, {kGrey, int64_t(33)}, {kColour, int64_t(33)}}) {
    const int64_t pixels = norm.c * plane;
    const std::vector<uint8_t> images = random_bytes(size_t(samples) * pixels, 255, rng);
    const std::vector<uint8_t> labels = random_bytes(size_t(samples), 9, rng);
    DeviceBuffer<uint8_t> d_images(images.size(), "images"), d_labels(labels.size(), "labels");
    d_images.upload(images);
    d_labels.upload(labels);
    for (const int b : {1, 63, 64, 65, 1000}) {
      SCOPED_TRACE(testing::Message() << "b " << b << " pixels " << pixels);
      // Indices with repeats and in no particular order, as a shuffled epoch has.
      std::uniform_int_distribution<int32_t> pick(0, samples - 1);
      std::vector<int32_t> idx(b);
      for (auto& i : idx) i = pick(rng);
      std::vector<float> out_ref(size_t(b) * pixels);
      kd::ref::gather_normalize(images.data(), idx.data(), out_ref.data(), b, plane, norm);
      std::vector<int32_t> labels_ref(b);
      for (int r = 0; r < b; ++r) labels_ref[r] = labels[idx[r]];

      DeviceBuffer<int32_t> d_idx(b, "idx"), d_out_labels(b, "out labels");
      DeviceBuffer<float> d_out(out_ref.size(), "out");
      d_idx.upload(idx);
      kd::test::poison(d_out);
      kd::test::poison(d_out_labels);
      kd::cuda::gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(), d_out_labels.data(), b,
                                 plane, norm, nullptr);
      KD_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(kd::test::rel_error(d_out.download(), out_ref), 1e-6);
      EXPECT_EQ(kd::test::bitwise_difference(d_out_labels.download(), labels_ref), "");

      // Without out_labels only the images are gathered.
      kd::test::poison(d_out);
      kd::cuda::gather_normalize(d_images.data(), d_labels.data(), d_idx.data(), d_out.data(), nullptr, b, plane, norm,
                                 nullptr);
      KD_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(kd::test::rel_error(d_out.download(), out_ref), 1e-6);
    }
  }
}

TEST(BatchGpu, IotaWritesIdentityOrder) {
  KD_REQUIRE_GPU();
  for (const int n : {1, 63, 64, 65, 1000, 100003}) {
    DeviceBuffer<int32_t> d_out(n, "iota");
    kd::test::poison(d_out);
    kd::cuda::iota(d_out.data(), n, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<int32_t> out = d_out.download();
    for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], i) << "n " << n;
  }
}

}  // namespace
