// Philox4x32-10 known answers, and the CPU reference dropout: mask statistics,
// reproducibility from (seed, step), the documented element->counter layout,
// inverted scaling and the backward pass against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "kd/philox.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

using reftest::nan_filled;

void expect_philox(Philox4 counter, uint32_t k0, uint32_t k1, Philox4 expected) {
  const Philox4 got = philox4x32_10(counter, k0, k1);
  for (int lane = 0; lane < 4; ++lane)
    EXPECT_EQ(got.v[lane], expected.v[lane])
        << "lane " << lane << std::hex << ": got 0x" << got.v[lane] << ", expected 0x" << expected.v[lane];
}

// The philox4x32_10 known-answer vectors published with Random123 (kat_vectors).
TEST(Philox, KnownAnswerZero) {
  expect_philox({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
}
TEST(Philox, KnownAnswerAllOnes) {
  expect_philox({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
                {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
}
TEST(Philox, KnownAnswerPiDigits) {
  expect_philox({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
                {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST(Dropout, ZeroProbabilityCopiesAndKeepsAll) {
  const std::vector<float> x = {1.5f, -2, 0, 3e-7f};
  std::vector<float> y = nan_filled(x.size());
  std::vector<uint8_t> mask(x.size(), 7);
  dropout_forward(x.data(), y.data(), mask.data(), int64_t(x.size()), 0.0f, 1, 1);
  EXPECT_EQ(y, x);
  EXPECT_EQ(mask, std::vector<uint8_t>(x.size(), 1));
  std::vector<float> dx = nan_filled(x.size());
  dropout_backward(x.data(), mask.data(), dx.data(), int64_t(x.size()), 0.0f);
  EXPECT_EQ(dx, x);
}

// The mask bit of element i is lane i % 4 of the Philox block with counter
// (i/4 lo, i/4 hi, step lo, step hi) and key (seed lo, seed hi), its top 24 bits as a
// uniform in [0, 1), kept when >= p: the contract the CUDA kernel must reproduce.
TEST(Dropout, MaskFollowsThePhiloxLayoutAndScales) {
  const uint64_t seed = 0x0123456789abcdefull, step = 0x1'0000'0005ull;  // both halves non-zero
  const float p = 0.25f;
  const int64_t n = 1003;  // not a multiple of 4
  std::mt19937_64 rng = reftest::make_rng(61);
  const std::vector<float> x = reftest::uniform(size_t(n), -2, 2, rng);
  std::vector<float> y = nan_filled(size_t(n));
  std::vector<uint8_t> mask(size_t(n), 7);
  dropout_forward(x.data(), y.data(), mask.data(), n, p, seed, step);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t block = uint64_t(i) / 4;
    const Philox4 r = philox4x32_10({{uint32_t(block), uint32_t(block >> 32), uint32_t(step), uint32_t(step >> 32)}},
                                    uint32_t(seed), uint32_t(seed >> 32));
    const bool keep = double(r.v[i % 4] >> 8) / 16777216.0 >= p;
    ASSERT_EQ(mask[size_t(i)], keep ? 1 : 0) << "element " << i;
    // x / 0.75 in float: one rounding of x * (1 / 0.75f), within 2 ulp of the exact quotient.
    if (keep) ASSERT_NEAR(y[size_t(i)], x[size_t(i)] / 0.75, 2.4e-7 * std::fabs(x[size_t(i)])) << "element " << i;
    else ASSERT_EQ(y[size_t(i)], 0.0f) << "element " << i;
  }
}

TEST(Dropout, KeepFractionIsOneMinusP) {
  const int64_t n = 1'000'000;
  const std::vector<float> x(size_t(n), 1.0f);
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<uint8_t> mask(static_cast<size_t>(n));
  for (float p : {0.1f, 0.5f, 0.9f}) {
    dropout_forward(x.data(), y.data(), mask.data(), n, p, 42, 3);
    int64_t kept = 0;
    for (uint8_t k : mask) kept += k;
    // Binomial(n, 1-p): sigma = sqrt(p(1-p)/n) <= 5e-4 in fraction. The seed is fixed, so
    // this is deterministic; a fair generator would pass 5 sigma for all but ~1 in 1.7
    // million seeds, while a biased keep rule (e.g. < p, or a 16-bit uniform) misses by far.
    const double sigma = std::sqrt(double(p) * (1 - p) / double(n));
    EXPECT_NEAR(double(kept) / double(n), 1.0 - p, 5 * sigma) << "p = " << p;
  }
}

TEST(Dropout, ReproducibleFromSeedAndStep) {
  const int64_t n = 4096;
  const float p = 0.5f;
  const std::vector<float> x(size_t(n), 1.0f);
  std::vector<float> y(static_cast<size_t>(n));
  auto mask_of = [&](uint64_t seed, uint64_t step) {
    std::vector<uint8_t> mask(static_cast<size_t>(n));
    dropout_forward(x.data(), y.data(), mask.data(), n, p, seed, step);
    return mask;
  };
  auto differing = [&](const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    int64_t count = 0;
    for (size_t i = 0; i < a.size(); ++i) count += a[i] != b[i];
    return count;
  };
  const std::vector<uint8_t> base = mask_of(7, 100);
  EXPECT_EQ(mask_of(7, 100), base);
  // Independent masks at p = 0.5 differ in half the elements (2048, sigma 32); the bound
  // 1500 is 17 sigma below that and fails any reuse of counters between steps or seeds.
  EXPECT_GT(differing(base, mask_of(7, 101)), 1500);
  EXPECT_GT(differing(base, mask_of(8, 100)), 1500);
  EXPECT_GT(differing(base, mask_of(7, 100 + (uint64_t(1) << 32))), 1500);  // the step's high word counts too
}

// A data-parallel shard (kd/engine.h) draws the rows of the whole batch it
// holds: elements [first, first + m) of the tensor, given `first`.
TEST(Dropout, ShardFromFirstDrawsTheWholeTensorsMask) {
  const int64_t n = 1000, first = 333;
  std::vector<float> x(n, 1.0f), y(n), shard_y(n - first);
  std::vector<uint8_t> mask(n), shard_mask(n - first);
  dropout_forward(x.data(), y.data(), mask.data(), n, 0.5f, 77, 3);
  dropout_forward(x.data() + first, shard_y.data(), shard_mask.data(), n - first, 0.5f, 77, 3, first);
  EXPECT_EQ(shard_mask, std::vector<uint8_t>(mask.begin() + first, mask.end()));
  EXPECT_EQ(shard_y, std::vector<float>(y.begin() + first, y.end()));
  // Without `first` the shard would draw the tensor's first elements instead.
  dropout_forward(x.data() + first, shard_y.data(), shard_mask.data(), n - first, 0.5f, 77, 3);
  EXPECT_NE(shard_mask, std::vector<uint8_t>(mask.begin() + first, mask.end()));
}

TEST(Dropout, BackwardMatchesFiniteDifferences) {
  const int64_t n = 257;
  const float p = 0.3f;
  std::mt19937_64 rng = reftest::make_rng(62);
  std::vector<float> x = reftest::uniform(size_t(n), -1, 1, rng);
  const std::vector<float> r = reftest::uniform(size_t(n), -1, 1, rng);
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<uint8_t> mask(static_cast<size_t>(n));
  auto loss = [&] {
    dropout_forward(x.data(), y.data(), mask.data(), n, p, 5, 9);  // same (seed, step): same mask
    return reftest::weighted_sum(r, y);
  };
  loss();
  std::vector<float> dx = nan_filled(size_t(n));
  dropout_backward(r.data(), mask.data(), dx.data(), n, p);
  // Linear in x (fixed mask), one output moves per step; that output's float rounding
  // (6e-8 relative, |y| < 1.5, both evaluations) over a step of 1.0 is below 2e-7.
  // A wrong scale (1 - p instead of 1 / (1 - p)) is off by ~0.5.
  reftest::expect_gradient_near(dx, reftest::central_difference(x, 0.5, loss), 1e-6, 1e-6, "dx");
}

}  // namespace
}  // namespace kd::ref
