// kernels/dropout.cu against kd::ref::dropout_*. Both sides draw the mask from
// kd/philox.h with the same (seed, step, element) counters, so masks must agree
// bit for bit; outputs are x * (1 / (1 - p)) or 0 on both sides and agree to
// within 1e-6 relative (one float product each; the bound allows the last-bit
// difference a compiler may introduce by evaluating the scale differently).
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

struct Draw {
  uint64_t seed, step;
  float p;
};

// Seeds and steps with their high 32 bits set too (both halves enter the
// Philox key and counter); p = 0 (identity), the default rates, and a large one.
const Draw kDraws[] = {{0, 1, 0.25f},    {12345, 1, 0.5f},
                       {12345, 2, 0.5f}, {0x9E3779B97F4A7C15ull, 0x100000007ull, 0.25f},
                       {42, 77, 0.0f},   {7, 3, 0.9f}};

// n not a multiple of 4 leaves a partial Philox block at the end; 9216 * 64 + 3
// is the teacher's fc1 input at batch 64 plus a ragged tail.
const int64_t kSizes[] = {1, 3, 4, 5, 63, 64, 65, 1000, 9216 * 64 + 3};

// Runs forward and backward at element offset `offset` into the device buffers
// (offset 1 makes the float4 path ineligible, so the scalar path is tested too).
void check_dropout(const Draw& d, int64_t n, int offset, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "seed " << d.seed << " step " << d.step << " p " << d.p << " n " << n << " offset "
                                  << offset);
  const std::vector<float> x = kd::test::random_floats(size_t(n), -2.0f, 2.0f, rng);
  const std::vector<float> dy = kd::test::random_floats(size_t(n), -2.0f, 2.0f, rng);
  std::vector<float> y_ref(n), dx_ref(n);
  std::vector<uint8_t> mask_ref(n);
  kd::ref::dropout_forward(x.data(), y_ref.data(), mask_ref.data(), n, d.p, d.seed, d.step);
  kd::ref::dropout_backward(dy.data(), mask_ref.data(), dx_ref.data(), n, d.p);

  const size_t padded = size_t(n) + offset;
  DeviceBuffer<float> d_x(padded, "x"), d_y(padded, "y"), d_dy(padded, "dy"), d_dx(padded, "dx");
  DeviceBuffer<uint8_t> d_mask(padded, "mask");
  DeviceBuffer<uint64_t> d_step(1, "step");
  d_x.upload(std::vector<float>(padded, 0.5f));
  d_dy.upload(std::vector<float>(padded, 0.5f));
  KD_CUDA_CHECK(cudaMemcpy(d_x.data() + offset, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  KD_CUDA_CHECK(cudaMemcpy(d_dy.data() + offset, dy.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  d_step.upload(std::vector<uint64_t>{d.step});
  kd::test::poison(d_y);
  kd::test::poison(d_mask);
  kd::test::poison(d_dx);

  kd::cuda::dropout_forward(d_x.data() + offset, d_y.data() + offset, d_mask.data() + offset, n, d.p, d.seed,
                            d_step.data(), nullptr);
  kd::cuda::dropout_backward(d_dy.data() + offset, d_mask.data() + offset, d_dx.data() + offset, n, d.p, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<uint8_t> mask_all = d_mask.download();
  const std::vector<float> y_all = d_y.download(), dx_all = d_dx.download();
  const std::vector<uint8_t> mask(mask_all.begin() + offset, mask_all.end());
  const std::vector<float> y(y_all.begin() + offset, y_all.end()), dx(dx_all.begin() + offset, dx_all.end());
  EXPECT_EQ(kd::test::bitwise_difference(mask, mask_ref), "");  // bit for bit: same Philox counters on both sides
  EXPECT_LE(kd::test::rel_error(y, y_ref), 1e-6);
  EXPECT_LE(kd::test::rel_error(dx, dx_ref), 1e-6);
  // Elements before the offset are not the kernel's: they must still hold the poison.
  for (int i = 0; i < offset; ++i) {
    EXPECT_EQ(mask_all[i], 0xFF);
    EXPECT_TRUE(std::isnan(y_all[i]));
  }
  if (d.p == 0.0f) {
    EXPECT_EQ(kd::test::bitwise_difference(y, x), "");  // p = 0 keeps everything with scale exactly 1
  }
}

TEST(DropoutGpu, MaskAndOutputsMatchReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 2);
  for (const Draw& d : kDraws) {
    for (int64_t n : kSizes) {
      check_dropout(d, n, /*offset=*/0, rng);
      check_dropout(d, n, /*offset=*/1, rng);
    }
  }
}

// The step is read from device memory at run time: advancing it (as a replayed
// CUDA graph does with increment_counter) must change the mask to the
// reference's mask for the new step, with no relaunch parameters changed.
TEST(DropoutGpu, StepIsReadFromDeviceMemory) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 3);
  const int64_t n = 4099;
  const float p = 0.5f;
  const uint64_t seed = 99;
  const std::vector<float> x = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
  DeviceBuffer<float> d_x(n, "x"), d_y(n, "y");
  DeviceBuffer<uint8_t> d_mask(n, "mask");
  DeviceBuffer<uint64_t> d_step(1, "step");
  d_x.upload(x);
  d_step.upload(std::vector<uint64_t>{5});
  std::vector<float> y_ref(n);
  std::vector<uint8_t> mask_ref(n);
  std::vector<std::vector<uint8_t>> masks;
  for (uint64_t step = 5; step < 8; ++step) {
    kd::test::poison(d_mask);
    kd::cuda::dropout_forward(d_x.data(), d_y.data(), d_mask.data(), n, p, seed, d_step.data(), nullptr);
    kd::cuda::increment_counter(d_step.data(), nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    kd::ref::dropout_forward(x.data(), y_ref.data(), mask_ref.data(), n, p, seed, step);
    masks.push_back(d_mask.download());
    EXPECT_EQ(kd::test::bitwise_difference(masks.back(), mask_ref), "") << "step " << step;
  }
  EXPECT_EQ(d_step.download()[0], 8u);
  // With p = 0.5 two independent masks of 4099 elements agree by chance with
  // probability 2^-4099: equal masks would mean the step was not used.
  EXPECT_NE(masks[0], masks[1]);
  EXPECT_NE(masks[1], masks[2]);
}

}  // namespace
