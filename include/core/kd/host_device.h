// kd/host_device.h: KD_HOST_DEVICE marks the small functions that the CPU
// reference and the CUDA kernels share (Philox draws, pixel normalisation, the
// augmentation's transform and sampling), so both compute them from one source.
#pragma once

#if defined(__CUDACC__)
#define KD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KD_HOST_DEVICE inline
#endif
