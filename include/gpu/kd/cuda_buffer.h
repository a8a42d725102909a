// kd/tensor.h: RAII device memory and the status checks for CUDA, cuBLAS and
// cuDNN calls. Only CUDA-side code (kd_cuda, *_gpu_test.cpp, bench/) includes it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kd/error.h"

namespace kd::cuda {

// Throws kd::Error("<call> failed at <file>:<line>: <reason>. <hint>").
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_library_error(const char* library, int status, const char* reason, const char* call,
                                      const char* file, int line);

// Number of usable CUDA devices; 0 when there is no device or no driver at
// all, so callers can fall back to the CPU. Throws kd::Error naming the CUDA
// error and what to do when a driver is present but the runtime cannot start
// (e.g. cudaErrorInsufficientDriver from a driver older than the runtime).
int device_count();
// device_count()'s reading of cudaGetDeviceCount's answer (status, count) given
// cudaDriverGetVersion (0: no driver) and cudaRuntimeGetVersion: the count, 0,
// or the kd::Error above. Separate so tests can give it a broken machine's answers.
int interpret_device_count(cudaError_t status, int count, int driver_version, int runtime_version);
// "NVIDIA H100 80GB HBM3 (sm_90, driver 13.0, runtime 13.0)" for device 0.
std::string device_description();

}  // namespace kd::cuda

#define KD_CUDA_CHECK(call)                                                                             \
  do {                                                                                                  \
    const cudaError_t kd_status_ = (call);                                                              \
    if (kd_status_ != cudaSuccess) ::kd::cuda::throw_cuda_error(kd_status_, #call, __FILE__, __LINE__); \
  } while (0)

// Checks the most recent kernel launch (configuration errors surface here;
// execution errors surface at the next synchronising call).
#define KD_CUDA_CHECK_LAUNCH(kernel_name) KD_CUDA_CHECK(cudaGetLastError())

namespace kd::cuda {

// An owning, typed, uninitialised device allocation. `what` names the buffer in
// the out-of-memory message ("teacher activations: cudaMalloc of 1.2 GiB failed ...
// try a smaller --batch-size").
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t count, const std::string& what) { allocate(count, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }

  void allocate(size_t count, const std::string& what);  // frees any previous allocation
  void release() noexcept;
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  // Synchronous whole-buffer copies (tests, set-up, checkpoints; never per step).
  void upload(const std::vector<T>& host);  // host.size() must equal size()
  std::vector<T> download() const;
  void upload(const T* host, size_t count);  // first `count` elements

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// Allocates `bytes` with cudaMalloc; on failure throws naming `what`, the size
// and suggesting a smaller batch.
void* checked_malloc(size_t bytes, const std::string& what);

template <typename T>
void DeviceBuffer<T>::allocate(size_t count, const std::string& what) {
  release();
  if (count == 0) return;
  ptr_ = static_cast<T*>(checked_malloc(count * sizeof(T), what));
  count_ = count;
}
template <typename T>
void DeviceBuffer<T>::release() noexcept {
  if (ptr_) cudaFree(ptr_);
  ptr_ = nullptr;
  count_ = 0;
}
template <typename T>
void DeviceBuffer<T>::upload(const std::vector<T>& host) {
  if (host.size() != count_)
    fail("DeviceBuffer::upload: host has " + std::to_string(host.size()) + " elements, device buffer " +
         std::to_string(count_));
  upload(host.data(), host.size());
}
template <typename T>
void DeviceBuffer<T>::upload(const T* host, size_t count) {
  if (count > count_)
    fail("DeviceBuffer::upload: " + std::to_string(count) + " elements into a buffer of " + std::to_string(count_));
  if (count) KD_CUDA_CHECK(cudaMemcpy(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T>
std::vector<T> DeviceBuffer<T>::download() const {
  std::vector<T> host(count_);
  if (count_) KD_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace kd::cuda
