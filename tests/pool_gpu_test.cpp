// kernels/pool.cu against kd::ref::maxpool2x2_*. Max pooling only selects and
// copies values, so the GPU must match the reference exactly (no rounding is
// involved): outputs, winner indices and the scattered gradient.
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

struct PoolShape {
  int n, c, h, w;
};

// Teacher: conv2 output (B, 64, 24, 24) for B in {1, 63, 64, 65}; B = 1000 with
// fewer channels; odd heights/widths exercise floor mode (the last row/column
// belongs to no window and must get a zero gradient); 3x3 leaves 5 of 9 inputs uncovered.
// Simulated: fewer channels, still several 256-thread blocks per launch.
const std::vector<PoolShape> kShapes = kd::test::gpu_or_sim<PoolShape>(
    {{1, 64, 24, 24},
     {63, 64, 24, 24},
     {64, 64, 24, 24},
     {65, 64, 24, 24},
     {1000, 4, 24, 24},
     {3, 5, 7, 9},
     {2, 3, 5, 4},
     {1, 1, 2, 2},
     {2, 2, 3, 3}},
    {{1, 64, 24, 24}, {65, 3, 24, 24}, {3, 5, 7, 9}, {2, 3, 5, 4}, {1, 1, 2, 2}, {2, 2, 3, 3}});

// Random inputs: continuous values, or small integers so that most windows hold
// ties and the first-maximum rule is exercised.
std::vector<float> pool_input(size_t count, bool with_ties, std::mt19937_64& rng) {
  if (!with_ties) return kd::test::random_floats(count, -3.0f, 3.0f, rng);
  std::uniform_int_distribution<int> level(-2, 2);
  std::vector<float> v(count);
  for (auto& x : v) x = float(level(rng));
  return v;
}

void check_pool(const PoolShape& s, bool with_ties, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "x(" << s.n << "," << s.c << "," << s.h << "," << s.w << ")"
                                  << (with_ties ? " with ties" : ""));
  const size_t in_count = size_t(s.n) * s.c * s.h * s.w;
  const size_t out_count = size_t(s.n) * s.c * (s.h / 2) * (s.w / 2);
  const std::vector<float> x = pool_input(in_count, with_ties, rng);
  const std::vector<float> dy = kd::test::random_floats(out_count, -1.0f, 1.0f, rng);

  std::vector<float> y_ref(out_count), dx_ref(in_count);
  std::vector<uint8_t> argmax_ref(out_count);
  kd::ref::maxpool2x2_forward(x.data(), y_ref.data(), argmax_ref.data(), s.n, s.c, s.h, s.w);
  kd::ref::maxpool2x2_backward(dy.data(), argmax_ref.data(), dx_ref.data(), s.n, s.c, s.h, s.w);

  DeviceBuffer<float> d_x(in_count, "x"), d_y(out_count, "y"), d_dy(out_count, "dy"), d_dx(in_count, "dx");
  DeviceBuffer<uint8_t> d_argmax(out_count, "argmax");
  d_x.upload(x);
  d_dy.upload(dy);
  kd::test::poison(d_y);
  kd::test::poison(d_argmax);  // 0xFF is no valid window position
  kd::test::poison(d_dx);
  kd::cuda::maxpool2x2_forward(d_x.data(), d_y.data(), d_argmax.data(), s.n, s.c, s.h, s.w, nullptr);
  kd::cuda::maxpool2x2_backward(d_dy.data(), d_argmax.data(), d_dx.data(), s.n, s.c, s.h, s.w, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());

  // Exact equality: a max selects one of its inputs, and the backward copies dy or writes 0.
  EXPECT_EQ(kd::test::bitwise_difference(d_y.download(), y_ref), "");
  EXPECT_EQ(kd::test::bitwise_difference(d_argmax.download(), argmax_ref), "");
  EXPECT_EQ(kd::test::bitwise_difference(d_dx.download(), dx_ref), "");
}

TEST(PoolGpu, MatchesReferenceExactly) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 1);
  for (const PoolShape& s : kShapes) {
    check_pool(s, /*with_ties=*/false, rng);
    check_pool(s, /*with_ties=*/true, rng);
  }
}

// A window whose four values are equal must report position 0, and one with a
// repeated maximum the first of them, with the gradient going only there.
TEST(PoolGpu, FirstMaximumWinsTies) {
  KD_REQUIRE_GPU();
  // x: (1, 1, 2, 6): windows [5 5 / 5 5], [1 7 / 7 0], [-1 -2 / -1 -1]
  const std::vector<float> x = {5, 5, 1, 7, -1, -2, 5, 5, 7, 0, -1, -1};
  const std::vector<float> dy = {10, 20, 30};
  DeviceBuffer<float> d_x(x.size(), "x"), d_y(3, "y"), d_dy(3, "dy"), d_dx(x.size(), "dx");
  DeviceBuffer<uint8_t> d_argmax(3, "argmax");
  d_x.upload(x);
  d_dy.upload(dy);
  kd::test::poison(d_y);
  kd::test::poison(d_argmax);
  kd::test::poison(d_dx);
  kd::cuda::maxpool2x2_forward(d_x.data(), d_y.data(), d_argmax.data(), 1, 1, 2, 6, nullptr);
  kd::cuda::maxpool2x2_backward(d_dy.data(), d_argmax.data(), d_dx.data(), 1, 1, 2, 6, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_y.download(), (std::vector<float>{5, 7, -1}));
  EXPECT_EQ(d_argmax.download(), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(d_dx.download(), (std::vector<float>{10, 0, 0, 20, 30, 0, 0, 0, 0, 0, 0, 0}));
}

}  // namespace
