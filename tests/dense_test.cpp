// CPU reference dense layer and ReLU: hand-computed forward values and the
// backward passes against central finite differences, with and without ReLU.
#include <gtest/gtest.h>

#include <algorithm>
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

TEST(Relu, ForwardAndBackwardHandValues) {
  const std::vector<float> x = {-2, -0.0f, 0, 0.5f, 3};
  std::vector<float> y = nan_filled(x.size());
  relu_forward(x.data(), y.data(), int64_t(x.size()));
  EXPECT_EQ(y, std::vector<float>({0, 0, 0, 0.5f, 3}));
  const std::vector<float> dy = {10, 20, 30, 40, 50};
  std::vector<float> dx = nan_filled(x.size());
  relu_backward(y.data(), dy.data(), dx.data(), int64_t(x.size()));
  EXPECT_EQ(dx, std::vector<float>({0, 0, 0, 40, 50}));  // the gradient at 0 is 0, as in PyTorch
}

TEST(Relu, InPlace) {
  std::vector<float> v = {-1, 2};
  relu_forward(v.data(), v.data(), 2);
  EXPECT_EQ(v, std::vector<float>({0, 2}));
  std::vector<float> g = {5, 7};
  relu_backward(v.data(), g.data(), g.data(), 2);
  EXPECT_EQ(g, std::vector<float>({0, 7}));
}

TEST(Relu, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng = reftest::make_rng(31);
  std::vector<float> x = reftest::uniform(64, -1, 1, rng);
  for (float& v : x) v += v >= 0 ? 0.1f : -0.1f;  // keep every input 0.1 away from the kink
  const std::vector<float> r = reftest::uniform(x.size(), -1, 1, rng);
  std::vector<float> y(x.size());
  auto loss = [&] {
    relu_forward(x.data(), y.data(), int64_t(x.size()));
    return reftest::weighted_sum(r, y);
  };
  loss();
  std::vector<float> dx = nan_filled(x.size());
  relu_backward(y.data(), r.data(), dx.data(), int64_t(x.size()));
  // A step of 0.05 never crosses 0 and relu returns x itself, so the quotient equals r or 0
  // up to double rounding (~1e-16); 1e-6 only absorbs that.
  expect_gradient_near(dx, central_difference(x, 0.05, loss), 1e-6, 0, "dx");
}

TEST(DenseForward, HandComputed) {
  // x: (2, 3), w: (2, 3), bias: (2)
  const std::vector<float> x = {1, 2, 3, -1, 0, 1};
  const std::vector<float> w = {1, 0, -1, 0.5f, 0.5f, 0.5f};
  const std::vector<float> bias = {0.25f, -4};
  std::vector<float> y = nan_filled(4);
  dense_forward(x.data(), w.data(), bias.data(), y.data(), 2, 3, 2, /*relu=*/false);
  // row 0: 1 - 3 + 0.25 = -1.75; 0.5 * 6 - 4 = -1.   row 1: -1 - 1 + 0.25 = -1.75; 0.5 * 0 - 4 = -4.
  EXPECT_EQ(y, std::vector<float>({-1.75f, -1, -1.75f, -4}));  // dyadic values: exact
  std::vector<float> y_relu = nan_filled(4);
  const std::vector<float> bias_up = {2, 0};
  dense_forward(x.data(), w.data(), bias_up.data(), y_relu.data(), 2, 3, 2, /*relu=*/true);
  // -2 + 2 = 0, 3 + 0 = 3, -2 + 2 = 0, 0 + 0 = 0
  EXPECT_EQ(y_relu, std::vector<float>({0, 3, 0, 0}));
}

// The gradients of L = sum(r * dense(x, w, bias)) from dense_backward (with dy = r, or r
// masked by relu_backward when the layer has a ReLU) against central differences.
void check_dense_gradients(int b, int in, int out, bool relu, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "b=" << b << " in=" << in << " out=" << out << " relu=" << relu);
  std::mt19937_64 rng = reftest::make_rng(seed);
  // Without ReLU L is linear and any step is exact, so take a large one; with ReLU, redraw
  // until every pre-activation is at least 2h from 0: a step of h in one input moves a
  // pre-activation by at most h * max(|x|, |w|, 1) = h, so no difference quotient
  // straddles the kink.
  const double h = relu ? 0.05 : 0.5;
  std::vector<float> x, w, bias, pre(size_t(b) * out);
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 100) << "could not draw pre-activations away from 0";
    x = reftest::uniform(size_t(b) * in, -1, 1, rng);
    w = reftest::uniform(size_t(out) * in, -1, 1, rng);
    bias = reftest::uniform(size_t(out), -1, 1, rng);
    dense_forward(x.data(), w.data(), bias.data(), pre.data(), b, in, out, /*relu=*/false);
    if (!relu || std::all_of(pre.begin(), pre.end(), [&](float z) { return std::fabs(z) >= 2 * h; })) break;
  }
  const std::vector<float> r = reftest::uniform(size_t(b) * out, -1, 1, rng);
  std::vector<float> y(size_t(b) * out);
  auto loss = [&] {
    dense_forward(x.data(), w.data(), bias.data(), y.data(), b, in, out, relu);
    return reftest::weighted_sum(r, y);
  };
  loss();
  std::vector<float> dy = r;
  if (relu) relu_backward(y.data(), r.data(), dy.data(), int64_t(dy.size()));
  std::vector<float> dx = nan_filled(x.size()), dw = nan_filled(w.size()), db = nan_filled(bias.size());
  dense_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), b, in, out);

  // Linear between kinks, so no truncation error; the error is the float rounding (6e-8
  // relative, both evaluations) of at most max(b, out) = 5 moved outputs with |y| < 8,
  // over a step of 2h >= 0.1: below 5e-5. A wrong index or a missed ReLU mask is off by
  // ~|r| ~ 0.5.
  const double abs_tol = 1e-4, rel_tol = 1e-5;
  expect_gradient_near(dx, central_difference(x, h, loss), abs_tol, rel_tol, "dx");
  expect_gradient_near(dw, central_difference(w, h, loss), abs_tol, rel_tol, "dw");
  expect_gradient_near(db, central_difference(bias, h, loss), abs_tol, rel_tol, "db");
}

TEST(DenseBackward, FiniteDifferencesLinear) { check_dense_gradients(3, 7, 5, false, 41); }
TEST(DenseBackward, FiniteDifferencesRelu) { check_dense_gradients(3, 7, 5, true, 42); }
TEST(DenseBackward, FiniteDifferencesSingleRowAndOutput) { check_dense_gradients(1, 4, 1, false, 43); }

TEST(DenseBackward, NullDxSkipsInputGradient) {
  std::mt19937_64 rng = reftest::make_rng(44);
  const int b = 4, in = 3, out = 2;
  const std::vector<float> x = reftest::uniform(size_t(b) * in, -1, 1, rng);
  const std::vector<float> w = reftest::uniform(size_t(out) * in, -1, 1, rng);
  const std::vector<float> dy = reftest::uniform(size_t(b) * out, -1, 1, rng);
  std::vector<float> dw_full(w.size()), db_full(out), dx(x.size());
  dense_backward(x.data(), w.data(), dy.data(), dx.data(), dw_full.data(), db_full.data(), b, in, out);
  std::vector<float> dw = nan_filled(w.size()), db = nan_filled(size_t(out));
  dense_backward(x.data(), w.data(), dy.data(), nullptr, dw.data(), db.data(), b, in, out);
  EXPECT_EQ(dw, dw_full);  // same arithmetic, so bit-identical
  EXPECT_EQ(db, db_full);
}

}  // namespace
}  // namespace kd::ref
