// Error reporting, device discovery and checked allocation for kd/tensor.h.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kd/cuda_buffer.h"

namespace kd::cuda {

namespace {
std::string where(const char* call, const char* file, int line) {
  return std::string(call) + " failed at " + file + ":" + std::to_string(line);
}
std::string format_bytes(size_t bytes) {
  char buf[64];
  if (bytes >= (size_t(1) << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(size_t(1) << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / double(size_t(1) << 20));
  return buf;
}
}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  std::string hint;
  switch (status) {
    case cudaErrorMemoryAllocation: hint = " Try a smaller --batch-size."; break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver: hint = " No usable GPU: run with --device cpu."; break;
    default: break;
  }
  throw Error(where(call, file, line) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")." +
              hint);
}

void throw_library_error(const char* library, int status, const char* reason, const char* call, const char* file,
                         int line) {
  throw Error(where(call, file, line) + ": " + library + " status " + std::to_string(status) + " (" + reason + ")");
}

// cudaGetDeviceCount fails in two different ways. "No GPU here" -- no device
// (cudaErrorNoDevice), or no driver installed at all (the runtime reports
// cudaErrorInsufficientDriver and cudaDriverGetVersion reports 0, as on a
// build machine with only the toolkit) -- is an answer: 0 devices, and GPU
// tests skip. Anything else (a driver older than the runtime, a device that is
// unavailable, a failed initialisation) means a GPU is meant to be used and
// cannot be: that must fail loudly, not turn every GPU test into a skip.
int interpret_device_count(cudaError_t status, int count, int driver_version, int runtime_version) {
  if (status == cudaSuccess) return count;
  if (status == cudaErrorNoDevice || (status == cudaErrorInsufficientDriver && driver_version == 0)) return 0;
  const auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  std::string what = std::string("CUDA runtime initialisation failed: cudaGetDeviceCount returned ") +
                     cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + "); the driver supports CUDA " +
                     version(driver_version) + ", this program was built with runtime " + version(runtime_version) +
                     ". ";
  if (status == cudaErrorInsufficientDriver)
    what += "Install an NVIDIA driver that supports CUDA " + version(runtime_version) +
            " (or rebuild against the driver's CUDA version), or run with --device cpu.";
  else what += "Check nvidia-smi and that no other process holds the GPU in exclusive mode, or run with --device cpu.";
  throw Error(what);
}

int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count;
  cudaGetLastError();  // clear the error so that later checks start clean
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  return interpret_device_count(status, count, driver, runtime);
}

std::string device_description() {
  cudaDeviceProp prop{};
  KD_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  KD_CUDA_CHECK(cudaDriverGetVersion(&driver));
  KD_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  char buf[512];  // prop.name is at most 256 bytes
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB, driver API %d.%d, runtime %d.%d)", prop.name,
                prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / double(size_t(1) << 30),
                driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
  return buf;
}

void* checked_malloc(size_t bytes, const std::string& what) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    std::string msg = "cudaMalloc of " + format_bytes(bytes) + " for " + what + " failed: " + cudaGetErrorName(status) +
                      " (" + format_bytes(free_bytes) + " free of " + format_bytes(total_bytes) + ").";
    if (status == cudaErrorMemoryAllocation) msg += " Try a smaller --batch-size.";
    throw Error(msg);
  }
  return ptr;
}

}  // namespace kd::cuda
