// Helpers for the simulated libraries' own tests (sim_cudnn_test.cpp,
// sim_cublas_test.cpp): small device buffers filled from and read back to
// host vectors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda_sim.h"

namespace kdsim::test {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A cudaMalloc'ed float array holding `values`.
class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& values) : size_(values.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, size_ * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, values.data(), size_ * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  float* get() const { return ptr_; }
  // The contents after the work queued so far has finished.
  std::vector<float> read() const {
    std::vector<float> out(size_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, size_ * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_;
};

// Equality that also holds for NaN == NaN (padding that must stay untouched).
inline bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

}  // namespace kdsim::test
