// src/gpu/epoch_cursor.cu: the device-side cursor that lets one captured CUDA
// graph take every batch of an epoch. Its kernels only copy and count, so
// every check is exact: indices, recorded losses, the step and the cursor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "../src/gpu/epoch_cursor.h"
#include "gpu_test_util.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

// A shuffled epoch of `samples` indices; batches of b (the last one partial, as
// the trainer takes it) walk it in order, each recording its loss and KL.
void run_epoch(int samples, int b, bool with_kl, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "samples " << samples << " b " << b << (with_kl ? " with KL" : ""));
  std::vector<int32_t> order(samples);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const int steps = (samples + b - 1) / b;
  const std::vector<float> losses = kd::test::random_floats(size_t(steps), 0.0f, 3.0f, rng);
  const std::vector<float> kls = kd::test::random_floats(size_t(steps), 0.0f, 1.0f, rng);
  const std::vector<float> hints = kd::test::random_floats(size_t(steps), 0.0f, 2.0f, rng);

  // `order` gets b - 1 elements of padding: the last batch reads a full b indices
  // (the trainer's graph always takes b), of which only the first are used.
  std::vector<int32_t> padded = order;
  padded.resize(size_t(samples) + b - 1, -1);
  DeviceBuffer<int32_t> d_order(padded.size(), "order"), d_idx(b, "sample_idx"), d_step(1, "epoch_step");
  DeviceBuffer<int64_t> d_cursor(1, "cursor");
  DeviceBuffer<float> d_loss(1, "loss"), d_kl(1, "kl"), d_epoch_loss(steps, "epoch_loss"),
      d_epoch_kl(steps, "epoch_kl");
  DeviceBuffer<float> d_hint(1, "hint"), d_epoch_hint(steps, "epoch_hint");
  d_order.upload(padded);
  kd::test::poison(d_epoch_loss);
  kd::test::poison(d_epoch_kl);
  kd::test::poison(d_epoch_hint);
  kd::test::poison(d_cursor);
  kd::test::poison(d_step);

  kd::cuda::start_epoch_cursor(d_cursor.data(), d_step.data(), 0, nullptr);
  for (int s = 0; s < steps; ++s) {
    kd::test::poison(d_idx);
    kd::cuda::take_batch_indices(d_order.data(), d_cursor.data(), d_idx.data(), b, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<int32_t> idx = d_idx.download();
    const std::vector<int32_t> expected(padded.begin() + int64_t(s) * b, padded.begin() + int64_t(s + 1) * b);
    ASSERT_EQ(kd::test::bitwise_difference(idx, expected), "") << "step " << s;
    d_loss.upload(std::vector<float>{losses[s]});
    d_kl.upload(std::vector<float>{kls[s]});
    d_hint.upload(std::vector<float>{hints[s]});
    // The hint's series goes with the KL's here: a step without a hint records nothing in it.
    kd::cuda::finish_step(d_loss.data(), with_kl ? d_kl.data() : nullptr, with_kl ? d_hint.data() : nullptr,
                          d_epoch_loss.data(), d_epoch_kl.data(), d_epoch_hint.data(), d_step.data(), d_cursor.data(),
                          b, nullptr);
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(kd::test::bitwise_difference(d_epoch_loss.download(), losses), "");
  EXPECT_EQ(kd::test::bitwise_difference(d_epoch_kl.download(), with_kl ? kls : std::vector<float>(steps, 0.0f)), "");
  if (with_kl) EXPECT_EQ(kd::test::bitwise_difference(d_epoch_hint.download(), hints), "");
  else EXPECT_TRUE(std::isnan(d_epoch_hint.download()[0])) << "a step without a hint wrote the hint series";
  EXPECT_EQ(d_step.download()[0], steps);
  EXPECT_EQ(d_cursor.download()[0], int64_t(steps) * b);
}

TEST(EpochCursorGpu, WalksAnEpochBatchByBatch) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 11);
  // b around the kernel's 256-thread blocks; epochs with and without a partial last batch.
  for (const int b : {1, 64, 255, 256, 257, 1000}) {
    run_epoch(3 * b + 5, b, /*with_kl=*/true, rng);
    run_epoch(2 * b, b, /*with_kl=*/false, rng);
  }
}

// A resumed epoch starts its cursor mid-order: the first batch is order[begin, begin + b).
TEST(EpochCursorGpu, StartsAtAGivenPosition) {
  KD_REQUIRE_GPU();
  const int samples = 700, b = 300;
  const int64_t begin = 128;
  std::vector<int32_t> order(samples);
  std::iota(order.begin(), order.end(), 1000);
  DeviceBuffer<int32_t> d_order(samples, "order"), d_idx(b, "sample_idx"), d_step(1, "epoch_step");
  DeviceBuffer<int64_t> d_cursor(1, "cursor");
  d_order.upload(order);
  kd::test::poison(d_step);
  kd::test::poison(d_idx);
  kd::cuda::start_epoch_cursor(d_cursor.data(), d_step.data(), begin, nullptr);
  kd::cuda::take_batch_indices(d_order.data(), d_cursor.data(), d_idx.data(), b, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_cursor.download()[0], begin);
  EXPECT_EQ(d_step.download()[0], 0);
  EXPECT_EQ(kd::test::bitwise_difference(d_idx.download(),
                                         std::vector<int32_t>(order.begin() + begin, order.begin() + begin + b)),
            "");
}

}  // namespace
