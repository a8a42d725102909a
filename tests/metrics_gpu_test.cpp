// kernels/metrics.cu against kd::ref::argmax_rows / count_correct. Argmax and
// counts involve no rounding, so they must match exactly, including the
// first-maximum rule on ties; counts must also be identical across reruns.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

const int kRows[] = {1, 63, 64, 65, 1000};
const int kClasses[] = {1, 2, 10, 33, 1000};

// Continuous logits, or small integers so that rows hold repeated maxima
// (split across warp lanes for c > 32) and the first-maximum rule decides.
std::vector<float> logits(size_t count, bool with_ties, std::mt19937_64& rng) {
  if (!with_ties) return kd::test::random_floats(count, -5.0f, 5.0f, rng);
  std::uniform_int_distribution<int> level(-1, 1);
  std::vector<float> v(count);
  for (auto& x : v) x = float(level(rng));
  return v;
}

TEST(MetricsGpu, ArgmaxMatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 5);
  for (const int b : kRows) {
    for (const int c : kClasses) {
      for (const bool with_ties : {false, true}) {
        SCOPED_TRACE(testing::Message() << "b " << b << " c " << c << (with_ties ? " with ties" : ""));
        const std::vector<float> x = logits(size_t(b) * c, with_ties, rng);
        std::vector<int32_t> ref(b);
        kd::ref::argmax_rows(x.data(), ref.data(), b, c);
        DeviceBuffer<float> d_x(x.size(), "x");
        DeviceBuffer<int32_t> d_out(b, "argmax");
        d_x.upload(x);
        kd::test::poison(d_out);
        kd::cuda::argmax_rows(d_x.data(), d_out.data(), b, c, nullptr);
        KD_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_EQ(kd::test::bitwise_difference(d_out.download(), ref), "");
      }
    }
  }
}

TEST(MetricsGpu, AllEqualRowPicksFirstColumn) {
  KD_REQUIRE_GPU();
  const int c = 100;
  const std::vector<float> x(c, -3.5f);
  DeviceBuffer<float> d_x(c, "x");
  DeviceBuffer<int32_t> d_out(1, "argmax");
  d_x.upload(x);
  kd::test::poison(d_out);
  kd::cuda::argmax_rows(d_x.data(), d_out.data(), 1, c, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_out.download()[0], 0);
}

// NaN follows the reference: ignored, except in column 0 where it wins. Rows of
// 100 put the NaN at column 5 so the true maximum at column 37 is in the same
// warp lane, after the NaN.
TEST(MetricsGpu, ArgmaxTreatsNanLikeReference) {
  KD_REQUIRE_GPU();
  const int c = 100;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(size_t(4) * c, 0.0f);
  for (int j = 0; j < c; ++j) x[j] = x[c + j] = x[3 * c + j] = -1.0f - 0.01f * j;
  x[5] = nan;  // row 0: NaN before the maximum, same lane
  x[37] = 2.0f;
  x[c + 0] = nan;  // row 1: NaN in column 0 wins
  x[c + 50] = 3.0f;
  for (int j = 0; j < c; ++j) x[2 * c + j] = nan;  // row 2: all NaN
  x[3 * c + 99] = 0.5f;                            // row 3: no NaN, maximum in the last column
  std::vector<int32_t> ref(4);
  kd::ref::argmax_rows(x.data(), ref.data(), 4, c);
  ASSERT_EQ(ref, (std::vector<int32_t>{37, 0, 0, 99}));  // the reference's own rule, spelled out
  DeviceBuffer<float> d_x(x.size(), "x");
  DeviceBuffer<int32_t> d_out(4, "argmax");
  d_x.upload(x);
  kd::test::poison(d_out);
  kd::cuda::argmax_rows(d_x.data(), d_out.data(), 4, c, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_out.download(), ref);
}

// The count is added to what the counter holds (a running total over batches),
// equals the reference count, and is the same on a rerun.
TEST(MetricsGpu, AccumulateCorrectMatchesReferenceAndReruns) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 6);
  const unsigned long long start = 7;
  for (const int b : kRows) {
    for (const int c : kClasses) {
      for (const bool with_ties : {false, true}) {
        SCOPED_TRACE(testing::Message() << "b " << b << " c " << c << (with_ties ? " with ties" : ""));
        const std::vector<float> x = logits(size_t(b) * c, with_ties, rng);
        // About half the labels are the reference prediction, the rest random,
        // so the count is neither 0 nor b.
        std::vector<int32_t> predicted(b), labels(b);
        kd::ref::argmax_rows(x.data(), predicted.data(), b, c);
        std::uniform_int_distribution<int32_t> label(0, c - 1);
        std::bernoulli_distribution take_prediction(0.5);
        for (int r = 0; r < b; ++r) labels[r] = take_prediction(rng) ? predicted[r] : label(rng);
        const int64_t expected = kd::ref::count_correct(x.data(), labels.data(), b, c);

        DeviceBuffer<float> d_x(x.size(), "x");
        DeviceBuffer<int32_t> d_labels(b, "labels");
        DeviceBuffer<unsigned long long> d_correct(1, "correct");
        d_x.upload(x);
        d_labels.upload(labels);
        for (int run = 0; run < 2; ++run) {
          d_correct.upload(std::vector<unsigned long long>{start});
          kd::cuda::accumulate_correct(d_x.data(), d_labels.data(), b, c, d_correct.data(), nullptr);
          KD_CUDA_CHECK(cudaDeviceSynchronize());
          EXPECT_EQ(d_correct.download()[0], start + static_cast<unsigned long long>(expected)) << "run " << run;
        }
      }
    }
  }
}

TEST(MetricsGpu, AccumulateScalarAddsWeightedValues) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 7);
  const std::vector<float> values = kd::test::random_floats(20, -10.0f, 10.0f, rng);
  DeviceBuffer<float> d_values(values.size(), "values");
  DeviceBuffer<double> d_total(1, "total");
  d_values.upload(values);
  d_total.upload(std::vector<double>{1.5});
  double expected = 1.5;
  for (size_t i = 0; i < values.size(); ++i) {
    const double weight = 1.0 + double(i) / 7.0;
    kd::cuda::accumulate_scalar(d_values.data() + i, weight, d_total.data(), nullptr);
    expected += weight * double(values[i]);
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  // 20 double additions: the device may fuse multiply and add (one rounding
  // fewer per term), so allow a few ulps of the running sum, not exactness.
  EXPECT_NEAR(d_total.download()[0], expected, 1e-12 * (1.0 + std::abs(expected)));
}

}  // namespace
