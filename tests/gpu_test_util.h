// Shared helpers for tests/*_gpu_test.cpp: skip without a GPU, random inputs,
// NaN poisoning, the relative-error metric used against the CPU reference and
// a one-line report for exact comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kd/cuda_buffer.h"

// Skips the test (reported as SKIPPED by ctest) when no CUDA device exists.
#define KD_REQUIRE_GPU()                                                         \
  do {                                                                           \
    if (::kd::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device found"; \
  } while (0)

namespace kd::test {

// True when these tests run on the CUDA simulator (tests/sim) instead of a GPU.
#if defined(KD_SIM)
inline constexpr bool kSimulated = true;
#else
inline constexpr bool kSimulated = false;
#endif

// The shapes to test: `gpu` on a GPU; under the simulator, which runs every
// thread on the CPU, `sim`: smaller, but crossing the same kernel boundaries.
template <typename T>
std::vector<T> gpu_or_sim(std::initializer_list<T> gpu, std::initializer_list<T> sim) {
  return kSimulated ? std::vector<T>(sim) : std::vector<T>(gpu);
}

// A fresh seed per process, printed so a failure can be replayed with KD_TEST_SEED=<n>.
inline uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("KD_TEST_SEED");
    const uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("[ seed     ] KD_TEST_SEED=%llu\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

inline std::vector<float> random_floats(size_t n, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Fills a device buffer with NaN so any element a kernel forgets to write shows up.
template <typename T>
void poison(kd::cuda::DeviceBuffer<T>& buf) {
  KD_CUDA_CHECK(cudaMemset(buf.data(), 0xFF, buf.bytes()));  // all-ones bytes: NaN for float/double
}

// ||a - b|| / ||b|| in double; NaN anywhere in `a` makes it infinite. ||b|| == 0 -> ||a||.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// "" when `actual` and `expected` are bit-identical, else one line naming the
// first differing element, both values and how many differ. For exact checks
// on large outputs: EXPECT_EQ(bitwise_difference(a, b), "") fails with that line
// instead of printing both vectors.
template <typename T>
std::string bitwise_difference(const std::vector<T>& actual, const std::vector<T>& expected) {
  std::ostringstream out;
  if (actual.size() != expected.size()) {
    out << "size " << actual.size() << ", expected " << expected.size();
    return out.str();
  }
  size_t differing = 0, first = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::memcmp(&actual[i], &expected[i], sizeof(T)) != 0 && differing++ == 0) first = i;
  }
  if (differing == 0) return "";
  out << differing << " of " << actual.size() << " elements differ; first at " << first << ": " << +actual[first]
      << ", expected " << +expected[first];
  return out.str();
}

}  // namespace kd::test
