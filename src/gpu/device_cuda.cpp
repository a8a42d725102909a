// Error reporting, device discovery and checked allocation for kd/tensor.h.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kd/tensor.h"

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
  throw Error(where(call, file, line) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
              ")." + hint);
}

void throw_library_error(const char* library, int status, const char* reason, const char* call, const char* file,
                         int line) {
  throw Error(where(call, file, line) + ": " + library + " status " + std::to_string(status) + " (" + reason + ")");
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later checks start clean
    return 0;
  }
  return count;
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
    std::string msg = "cudaMalloc of " + format_bytes(bytes) + " for " + what + " failed: " +
                      cudaGetErrorName(status) + " (" + format_bytes(free_bytes) + " free of " +
                      format_bytes(total_bytes) + ").";
    if (status == cudaErrorMemoryAllocation) msg += " Try a smaller --batch-size.";
    throw Error(msg);
  }
  return ptr;
}

}  // namespace kd::cuda
