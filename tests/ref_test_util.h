// Shared helpers for the CPU reference tests (tests/<family>_test.cpp): fixed-seed
// random inputs, NaN-poisoned outputs, and a central finite-difference gradient
// evaluated in double against which every backward pass is checked.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace kd::reftest {

// Fixed seeds: these tests check exact mathematical properties, so a failure must
// replay identically.
inline std::mt19937_64 make_rng(uint64_t seed) { return std::mt19937_64(seed); }

inline std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// An output buffer filled with NaN, so an element the op forgets to write fails the test.
inline std::vector<float> nan_filled(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// sum_i r[i] * y[i] in double: the scalar whose gradient with respect to y is r,
// used to turn an op with many outputs into one loss for finite differences.
inline double weighted_sum(const std::vector<float>& r, const std::vector<float>& y) {
  double sum = 0;
  for (size_t i = 0; i < y.size(); ++i) sum += double(r[i]) * y[i];
  return sum;
}

// Central difference dL/dx[i] for every i: x[i] is moved to float(x[i] +- h) in
// place, loss() re-evaluated, x[i] restored. The divisor is the step actually
// taken after rounding to float, so the quotient is a true difference quotient.
template <typename LossFn>
std::vector<double> central_difference(std::vector<float>& x, double h, LossFn loss) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float original = x[i];
    const float plus = float(original + h), minus = float(original - h);
    x[i] = plus;
    const double loss_plus = loss();
    x[i] = minus;
    const double loss_minus = loss();
    x[i] = original;
    grad[i] = (loss_plus - loss_minus) / (double(plus) - double(minus));
  }
  return grad;
}

// Per element |analytic - numeric| <= abs_tol + rel_tol * |numeric|; names the
// first few offending indices.
inline void expect_gradient_near(const std::vector<float>& analytic, const std::vector<double>& numeric, double abs_tol,
                                 double rel_tol, const char* what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < numeric.size() && reported < 5; ++i) {
    const double bound = abs_tol + rel_tol * std::fabs(numeric[i]);
    if (!(std::fabs(analytic[i] - numeric[i]) <= bound)) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs finite difference " << numeric[i]
                    << " (bound " << bound << ")";
      ++reported;
    }
  }
}

}  // namespace kd::reftest
