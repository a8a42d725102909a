// Batch assembly on the GPU: gather the rows of a batch by sample index from the
// u8 training set that lives on the device, normalise them to float, and widen
// their labels to int32, so no image crosses the PCIe bus during training.
// Oracle: kd::ref::gather_normalize.
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_buffer.h"
#include "kd/cuda_ops.h"
#include "kd/normalize.h"

namespace kd::cuda {
namespace {

// One block per batch row. images: (N, c, plane) u8, labels: (N) u8, idx: (b)
// -> out: (b, c, plane) = (px / 255 - mean[ch]) / std[ch], out_labels: (b)
// (skipped when null). normalize_pixel evaluates in double and rounds once, on both sides, so
// results agree to the last bit; the few double operations per pixel cost
// nothing next to the loads.
__global__ void gather_normalize_kernel(const uint8_t* __restrict__ images, const uint8_t* __restrict__ labels,
                                        const int32_t* __restrict__ idx, float* __restrict__ out,
                                        int32_t* __restrict__ out_labels, int64_t plane, Normalization norm) {
  const int row = blockIdx.x;
  const int64_t sample = idx[row], values = norm.c * plane;
  const uint8_t* src = images + sample * values;
  float* dst = out + int64_t(row) * values;
  for (int ch = 0; ch < norm.c; ++ch) {
    for (int64_t j = ch * plane + threadIdx.x; j < (ch + 1) * plane; j += blockDim.x) {
      dst[j] = normalize_pixel(src[j], norm.mean[ch], norm.std[ch]);
    }
  }
  if (out_labels != nullptr && threadIdx.x == 0) out_labels[row] = labels[sample];
}

__global__ void iota_kernel(int32_t* __restrict__ out, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = i;
}

}  // namespace

void gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out, int32_t* out_labels,
                      int b, int64_t plane, const Normalization& norm, cudaStream_t stream) {
  if (b == 0) return;
  launch(gather_normalize_kernel, b, kBlockThreads, 0, stream, images, labels, idx, out, out_labels, plane, norm);
  KD_CUDA_CHECK_LAUNCH(gather_normalize_kernel);
}

void iota(int32_t* out, int n, cudaStream_t stream) {
  if (n == 0) return;
  launch(iota_kernel, grid_blocks(n, kBlockThreads, INT32_MAX), kBlockThreads, 0, stream, out, n);
  KD_CUDA_CHECK_LAUNCH(iota_kernel);
}

}  // namespace kd::cuda
