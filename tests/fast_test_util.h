// Helpers of the fast CPU ops' tests: the relative error every comparison
// uses, and moving tensors between activation layouts (kd::ActLayout).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kd/cpu_ops.h"

namespace kd::fasttest {

// ||got - want|| / ||want|| (||got - want|| when want is 0); infinite when got holds
// a NaN (an output element nobody wrote: outputs start NaN-filled).
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * want[i];
  }
  if (!std::isfinite(num)) return INFINITY;  // a NaN left in an output (unwritten element)
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A (n, c, h, w) tensor moved from layout `from` to layout `to` (kd::act_index).
template <class T>
std::vector<T> relayout(const std::vector<T>& t, ActLayout from, ActLayout to, int n, int c, int h, int w) {
  std::vector<T> out(t.size());
  for (int ni = 0; ni < n; ++ni)
    for (int ci = 0; ci < c; ++ci)
      for (int hi = 0; hi < h; ++hi)
        for (int wi = 0; wi < w; ++wi)
          out[size_t(act_index(to, c, h, w, ni, ci, hi, wi))] = t[size_t(act_index(from, c, h, w, ni, ci, hi, wi))];
  return out;
}
inline std::vector<float> to_layout(const std::vector<float>& plain, ActLayout layout, int n, int c, int h, int w) {
  return relayout(plain, ActLayout::Nchw, layout, n, c, h, w);
}
inline std::vector<float> from_layout(const std::vector<float>& laid, ActLayout layout, int n, int c, int h, int w) {
  return relayout(laid, layout, ActLayout::Nchw, n, c, h, w);
}

}  // namespace kd::fasttest
