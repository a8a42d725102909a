// CPU reference 2x2 max pooling: hand-computed windows (ties, floor mode) and
// the backward pass against central finite differences on tie-free inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

using reftest::nan_filled;

// One 5x5 plane: floor mode pools rows/cols 0..3 into a 2x2 output; row 4 and column 4 are
// outside every window (filled with 99 so a window that wrongly reached them would win).
const std::vector<float> kPlane = {
    1,  3,  0,  0,  99,  //
    3,  2,  0,  7,  99,  //
    5,  2,  4,  4,  99,  //
    5,  1,  4,  4,  99,  //
    99, 99, 99, 99, 99,
};

TEST(MaxPool, HandComputedWindowsAndTies) {
  std::vector<float> y = nan_filled(4);
  std::vector<uint8_t> argmax(4, 0xFF);
  maxpool2x2_forward(kPlane.data(), y.data(), argmax.data(), 1, 1, 5, 5);
  // Windows in row-major order [top-left, top-right, bottom-left, bottom-right]:
  //   (0,0): [1, 3, 3, 2] -> 3, first max at index 1     (0,1): [0, 0, 0, 7] -> 7 at index 3
  //   (1,0): [5, 2, 5, 1] -> 5, first max at index 0     (1,1): [4, 4, 4, 4] -> 4 at index 0
  EXPECT_EQ(y, std::vector<float>({3, 7, 5, 4}));
  EXPECT_EQ(argmax, std::vector<uint8_t>({1, 3, 0, 0}));

  const std::vector<float> dy = {10, 20, 30, 40};
  std::vector<float> dx = nan_filled(kPlane.size());
  maxpool2x2_backward(dy.data(), argmax.data(), dx.data(), 1, 1, 5, 5);
  const std::vector<float> expected_dx = {
      0,  10, 0,  0,  0,  //
      0,  0,  0,  20, 0,  //
      30, 0,  40, 0,  0,  //
      0,  0,  0,  0,  0,  //
      0,  0,  0,  0,  0,
  };
  EXPECT_EQ(dx, expected_dx);
}

TEST(MaxPool, BackwardMatchesFiniteDifferences) {
  const int n = 2, c = 3, h = 5, w = 6;  // odd height: the last row is dropped by floor mode
  const size_t in_size = size_t(n) * c * h * w, out_size = size_t(n) * c * (h / 2) * (w / 2);
  std::mt19937_64 rng = reftest::make_rng(51);
  // Distinct values 0.1 apart in random order: no ties, and a step of 0.02 cannot change a winner.
  std::vector<float> x(in_size);
  for (size_t i = 0; i < in_size; ++i) x[i] = 0.1f * float(i) - 9.0f;
  std::shuffle(x.begin(), x.end(), rng);
  const std::vector<float> r = reftest::uniform(out_size, -1, 1, rng);
  std::vector<float> y(out_size);
  std::vector<uint8_t> argmax(out_size);
  auto loss = [&] {
    maxpool2x2_forward(x.data(), y.data(), argmax.data(), n, c, h, w);
    return reftest::weighted_sum(r, y);
  };
  loss();
  std::vector<float> dx = nan_filled(in_size);
  maxpool2x2_backward(r.data(), argmax.data(), dx.data(), n, c, h, w);
  // Each output is an input copied exactly, so the quotient is r or 0 up to double rounding.
  reftest::expect_gradient_near(dx, reftest::central_difference(x, 0.02, loss), 1e-6, 0, "dx");
}

}  // namespace
}  // namespace kd::ref
