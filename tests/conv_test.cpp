// CPU reference convolution: hand-computed outputs, agreement with the textbook
// formula (bounds test per tap) over many shapes, and both backward passes
// against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

using reftest::central_difference;
using reftest::expect_gradient_near;
using reftest::nan_filled;

size_t x_size(const ConvShape& s) { return size_t(s.n) * s.in_c * s.h * s.w; }
size_t w_size(const ConvShape& s) { return size_t(s.out_c) * s.in_c * s.k * s.k; }
size_t y_size(const ConvShape& s) { return size_t(s.n) * s.out_c * s.out_h() * s.out_w(); }

// y: (n, out_c, out_h, out_w) straight from the definition, testing every tap
// against the image bounds: independent of the span arithmetic in conv.cpp.
std::vector<double> conv_by_definition(const std::vector<float>& x, const std::vector<float>& w, const float* b,
                                       const ConvShape& s) {
  std::vector<double> y(y_size(s));
  for (int n = 0; n < s.n; ++n)
    for (int oc = 0; oc < s.out_c; ++oc)
      for (int oy = 0; oy < s.out_h(); ++oy)
        for (int ox = 0; ox < s.out_w(); ++ox) {
          double sum = b ? b[oc] : 0.0;
          for (int ic = 0; ic < s.in_c; ++ic)
            for (int ky = 0; ky < s.k; ++ky)
              for (int kx = 0; kx < s.k; ++kx) {
                const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                sum += double(x[((size_t(n) * s.in_c + ic) * s.h + iy) * s.w + ix]) *
                       w[((size_t(oc) * s.in_c + ic) * s.k + ky) * s.k + kx];
              }
          y[((size_t(n) * s.out_c + oc) * s.out_h() + oy) * s.out_w() + ox] = sum;
        }
  return y;
}

// x = 1..9 on a 3x3 image; the 2x2 kernel [[1, 0], [0, -1]] takes x[i][j] - x[i+1][j+1].
const std::vector<float> kImage3x3 = {1, 2, 3, 4, 5, 6, 7, 8, 9};
const std::vector<float> kDiagonalKernel = {1, 0, 0, -1};

TEST(ConvForward, HandComputedNoPadding) {
  const ConvShape s = kd::ref::conv_shape(1, 1, 3, 3, 1, 2, 1, 0);
  const float bias = 0.5f;
  std::vector<float> y = nan_filled(y_size(s));
  conv2d_forward(kImage3x3.data(), kDiagonalKernel.data(), &bias, y.data(), s);
  // Every window gives x[i][j] - x[i+1][j+1] = -4 (a step of one row and one column is 3 + 1), plus 0.5.
  // Sums of small integers and 0.5 are exact in float.
  EXPECT_EQ(y, std::vector<float>({-3.5f, -3.5f, -3.5f, -3.5f}));
}

TEST(ConvForward, HandComputedPaddingAndStride) {
  const ConvShape s = kd::ref::conv_shape(1, 1, 3, 3, 1, 2, /*stride=*/2, /*pad=*/1);
  ASSERT_EQ(s.out_h(), 2);  // (3 + 2 - 2) / 2 + 1
  const float bias = 0.5f;
  std::vector<float> y = nan_filled(y_size(s));
  conv2d_forward(kImage3x3.data(), kDiagonalKernel.data(), &bias, y.data(), s);
  // Window top-left corners at input (-1,-1), (-1,1), (1,-1), (1,1); the +1 tap hits
  // x[-1][-1], x[-1][1], x[1][-1] (padding, 0) or x[1][1] = 5; the -1 tap hits x[0][0] = 1,
  // x[0][2] = 3, x[2][0] = 7, x[2][2] = 9.
  //   (0,0): 0 - 1 + 0.5 = -0.5   (0,1): 0 - 3 + 0.5 = -2.5
  //   (1,0): 0 - 7 + 0.5 = -6.5   (1,1): 5 - 9 + 0.5 = -3.5
  EXPECT_EQ(y, std::vector<float>({-0.5f, -2.5f, -6.5f, -3.5f}));
}

TEST(ConvForward, HandComputedChannelMixing) {
  // 1x1 kernels: each output pixel is a weighted sum over input channels.
  const ConvShape s = kd::ref::conv_shape(1, 2, 1, 2, 2, 1, 1, 0);
  const std::vector<float> x = {1, 2, /*channel 1:*/ 10, 20};
  const std::vector<float> w = {1, 1, /*out 1:*/ 2, -1};
  std::vector<float> y = nan_filled(y_size(s));
  conv2d_forward(x.data(), w.data(), nullptr, y.data(), s);
  // out 0: 1 + 10 = 11, 2 + 20 = 22; out 1: 2 - 10 = -8, 4 - 20 = -16 (no bias).
  EXPECT_EQ(y, std::vector<float>({11, 22, -8, -16}));
}

struct Geometry {
  int h, w, k, stride, pad;
};

TEST(ConvForward, MatchesDefinitionOverShapes) {
  std::mt19937_64 rng = reftest::make_rng(11);
  // Square and non-square images; stride larger than the kernel (inputs skipped);
  // padding as large as the kernel minus one; a 1x1 image.
  const Geometry geometries[] = {{5, 6, 3, 1, 0}, {5, 6, 3, 1, 1}, {7, 5, 3, 2, 0}, {7, 5, 3, 2, 1}, {6, 6, 2, 3, 1},
                                 {8, 7, 5, 2, 2}, {4, 4, 1, 1, 0}, {1, 1, 1, 1, 0}, {1, 1, 3, 1, 1}, {9, 3, 3, 3, 2}};
  for (const Geometry& g : geometries) {
    for (bool with_bias : {true, false}) {
      const ConvShape s = kd::ref::conv_shape(2, 3, g.h, g.w, 4, g.k, g.stride, g.pad);
      SCOPED_TRACE(testing::Message() << "h=" << g.h << " w=" << g.w << " k=" << g.k << " stride=" << g.stride
                                      << " pad=" << g.pad << " bias=" << with_bias);
      const std::vector<float> x = reftest::uniform(x_size(s), -1, 1, rng);
      const std::vector<float> w = reftest::uniform(w_size(s), -1, 1, rng);
      const std::vector<float> b = reftest::uniform(size_t(s.out_c), -1, 1, rng);
      std::vector<float> y = nan_filled(y_size(s));
      conv2d_forward(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), s);
      const std::vector<double> expected = conv_by_definition(x, w, with_bias ? b.data() : nullptr, s);
      for (size_t i = 0; i < y.size(); ++i) {
        // Both sum exact float products in double (orders differ by ~1e-16 relative); the
        // float output is then within half an ulp (6e-8 relative) of the double sum.
        ASSERT_NEAR(y[i], expected[i], 1e-7 * (1.0 + std::fabs(expected[i]))) << "output " << i;
      }
    }
  }
}

// dx, dw, db from the backward passes against central differences of
// L = sum(r * conv(x, w, b)) with r a fixed random dy.
void check_conv_gradients(const ConvShape& s, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "k=" << s.k << " stride=" << s.stride << " pad=" << s.pad);
  std::mt19937_64 rng = reftest::make_rng(seed);
  std::vector<float> x = reftest::uniform(x_size(s), -1, 1, rng);
  std::vector<float> w = reftest::uniform(w_size(s), -1, 1, rng);
  std::vector<float> b = reftest::uniform(size_t(s.out_c), -1, 1, rng);
  const std::vector<float> r = reftest::uniform(y_size(s), -1, 1, rng);

  std::vector<float> y(y_size(s));
  auto loss = [&] {
    conv2d_forward(x.data(), w.data(), b.data(), y.data(), s);
    return reftest::weighted_sum(r, y);
  };
  std::vector<float> dx = nan_filled(x.size()), dw = nan_filled(w.size()), db = nan_filled(b.size());
  conv2d_backward_data(r.data(), w.data(), dx.data(), s);
  conv2d_backward_filter(x.data(), r.data(), dw.data(), db.data(), s);

  // L is linear in each of x, w, b, so a large step has no truncation error; the only
  // error is the float rounding of the outputs that move (at most n*out_h*out_w = 60 for
  // a weight, each within 6e-8 of |y|, |y| rarely above 5, two evaluations):
  // 60 * 2 * 5 * 6e-8 = 3.6e-5 over a step of 1.0, and far less as the errors are random.
  // A wrong or missing tap changes a gradient by |r * w| or |r * x|, typically ~0.3.
  const double h = 0.5, abs_tol = 1e-4, rel_tol = 1e-5;
  expect_gradient_near(dx, central_difference(x, h, loss), abs_tol, rel_tol, "dx");
  expect_gradient_near(dw, central_difference(w, h, loss), abs_tol, rel_tol, "dw");
  expect_gradient_near(db, central_difference(b, h, loss), abs_tol, rel_tol, "db");
}

TEST(ConvBackward, FiniteDifferencesPad0Stride1) {
  check_conv_gradients(kd::ref::conv_shape(2, 2, 5, 6, 3, 3, 1, 0), 21);
}
TEST(ConvBackward, FiniteDifferencesPad1Stride1) {
  check_conv_gradients(kd::ref::conv_shape(2, 2, 5, 6, 3, 3, 1, 1), 22);
}
TEST(ConvBackward, FiniteDifferencesPad0Stride2) {
  check_conv_gradients(kd::ref::conv_shape(2, 2, 7, 6, 3, 3, 2, 0), 23);
}
TEST(ConvBackward, FiniteDifferencesPad1Stride2) {
  check_conv_gradients(kd::ref::conv_shape(2, 2, 7, 6, 3, 3, 2, 1), 24);
}
// Stride 3 with a 2x2 kernel leaves every third input row and column uncovered: dx must be 0 there.
TEST(ConvBackward, FiniteDifferencesStrideBeyondKernel) {
  check_conv_gradients(kd::ref::conv_shape(1, 2, 8, 7, 2, 2, 3, 1), 25);
}

TEST(ConvBackward, FilterWithoutBiasGradient) {
  const ConvShape s = kd::ref::conv_shape(1, 1, 3, 3, 1, 2, 1, 0);
  const std::vector<float> dy = {1, 0, 0, 0};  // only output (0,0), whose window is x[0..1][0..1]
  std::vector<float> dw = nan_filled(4);
  conv2d_backward_filter(kImage3x3.data(), dy.data(), dw.data(), nullptr, s);
  EXPECT_EQ(dw, std::vector<float>({1, 2, 4, 5}));  // exactly the window, exact in float
}

}  // namespace
}  // namespace kd::ref
