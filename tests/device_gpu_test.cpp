// src/gpu/device_cuda.cpp: how device_count() reads the CUDA runtime's answer.
// "No GPU here" (no device, or no driver at all) is 0 and GPU tests skip;
// a driver that is present but cannot serve this runtime is a loud error, so
// that a broken GPU machine fails its GPU tests instead of skipping them all.
// These tests feed it such answers and need no GPU.
#include <gtest/gtest.h>

#include <string>

#include "kd/error.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::interpret_device_count;

std::string error_of(cudaError_t status, int driver, int runtime) {
  try {
    interpret_device_count(status, 0, driver, runtime);
  } catch (const kd::Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceCount, NoDeviceOrNoDriverIsZero) {
  EXPECT_EQ(interpret_device_count(cudaSuccess, 2, 13000, 13000), 2);
  EXPECT_EQ(interpret_device_count(cudaErrorNoDevice, 0, 13000, 13000), 0);
  // The build machine: toolkit, no driver (cudaDriverGetVersion reports 0).
  EXPECT_EQ(interpret_device_count(cudaErrorInsufficientDriver, 0, 0, 13000), 0);
}

TEST(DeviceCount, BrokenRuntimeIsALoudError) {
  const std::string old_driver = error_of(cudaErrorInsufficientDriver, 12080, 13000);
  EXPECT_NE(old_driver.find("cudaErrorInsufficientDriver"), std::string::npos) << old_driver;
  EXPECT_NE(old_driver.find("CUDA 12.8"), std::string::npos) << old_driver;
  EXPECT_NE(old_driver.find("runtime 13.0"), std::string::npos) << old_driver;
  EXPECT_NE(old_driver.find("--device cpu"), std::string::npos) << old_driver;
  const std::string busy = error_of(cudaErrorDevicesUnavailable, 13000, 13000);
  EXPECT_NE(busy.find("cudaErrorDevicesUnavailable"), std::string::npos) << busy;
  EXPECT_NE(busy.find("nvidia-smi"), std::string::npos) << busy;
  EXPECT_NE(error_of(cudaErrorInitializationError, 13000, 13000), "");
}

// Whatever this machine is, device_count() answers: a count, or 0 without a
// GPU; it throws only where a driver is present and broken.
TEST(DeviceCount, ThisMachineAnswers) { EXPECT_GE(kd::cuda::device_count(), 0); }

}  // namespace
