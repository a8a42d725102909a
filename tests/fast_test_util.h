// Helpers of the fast CPU ops' tests: the relative error every comparison
// uses, moving tensors between activation layouts (kd::ActLayout), and the
// SIMD paths to compare.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../src/cpu/fast/cpu_path.h"
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

// FNV-1a over the bits of every float, continuing from `hash`. The tests that compare paths
// print it for their outputs, so that the paths of two builds can be compared too
// (scripts/cross-aarch64.sh: this machine's x86-64 paths against ARM64's under qemu).
inline uint64_t bits_hash(const std::vector<float>& v, uint64_t hash = 14695981039346656037ull) {
  for (const float f : v) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    for (int byte = 0; byte < 4; ++byte) hash = (hash ^ ((u >> (8 * byte)) & 0xff)) * 1099511628211ull;
  }
  return hash;
}

// The vector paths of this build that this CPU runs, widest first.
inline std::vector<fast::CpuPath> runnable_vector_paths() {
  std::vector<fast::CpuPath> paths;
  for (fast::CpuPath p : fast::vector_paths())
    if (fast::cpu_supports(p)) paths.push_back(p);
  return paths;
}

}  // namespace kd::fasttest
