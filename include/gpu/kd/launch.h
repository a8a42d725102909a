// kd/launch.h: the one way the CUDA sources (kernels/, src/gpu/) launch
// kernels and name dynamic shared memory, so that the same source runs under
// nvcc and, compiled as host C++, under the CUDA simulator of the tests
// (tests/sim, KD_SIM).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace kd::cuda {

// kernel<<<grid, block, shared_bytes, stream>>>(args...). Check it with
// KD_CUDA_CHECK_LAUNCH as any launch.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
#if defined(KD_SIM)
  kdsim::record_error(
      kdsim::launch_kernel(kernel, grid, block, dim3(1, 1, 1), shared_bytes, stream, std::forward<Args>(args)...));
#else
  // clang-format parses a .h as C++ and would split the launch's >>>.
  // clang-format off
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  // clang-format on
#endif
}

// The block's dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory() {
#if defined(KD_SIM)
  return static_cast<T*>(kdsim::dynamic_shared_memory());
#else
  extern __shared__ __align__(16) unsigned char kd_dynamic_shared[];
  return reinterpret_cast<T*>(kd_dynamic_shared);
#endif
}

}  // namespace kd::cuda
