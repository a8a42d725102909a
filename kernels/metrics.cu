// Evaluation metrics that stay on the device: per-row argmax, a running count
// of correct predictions and running loss sums, so an epoch or an evaluation
// pass reads back one number at its end instead of one per batch.
// Oracle: kd::ref::argmax_rows / count_correct.
#include <climits>
#include <cmath>
#include <cstdint>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlockThreads / kWarp;
constexpr int kMaxBlocks = 4096;

int blocks_for_rows(int rows) { return grid_blocks(rows, kWarpsPerBlock, kMaxBlocks); }

// Index of the first maximum of row: (c) as kd::ref::argmax_rows defines it:
// the first column holding the largest value, NaN ignored, except that a NaN in
// column 0 wins (the reference compares each column with its current best,
// starting from column 0, and nothing compares greater than NaN). Computed by
// one warp; every lane returns it. Each lane scans its strided columns in
// increasing order, taking its first non-NaN value and after that only strictly
// greater ones; lanes merge preferring a lane that found a value, then the
// larger value, then the smaller index, which together give the first maximum.
__device__ int warp_row_argmax(const float* __restrict__ row, int c, int lane) {
  constexpr int kNone = INT_MAX;
  float best = 0.0f;
  int best_index = kNone;
  for (int j = lane; j < c; j += kWarp) {
    const float value = row[j];
    if (best_index == kNone ? !isnan(value) : value > best) {
      best = value;
      best_index = j;
    }
  }
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
    const bool take =
        other_index != kNone && (best_index == kNone || other > best || (other == best && other_index < best_index));
    if (take) {
      best = other;
      best_index = other_index;
    }
  }
  return best_index == kNone || isnan(row[0]) ? 0 : best_index;
}

// x: (b, c) -> out: (b).
__global__ void argmax_rows_kernel(const float* __restrict__ x, int32_t* __restrict__ out, int b, int c) {
  const int lane = threadIdx.x % kWarp;
  for (int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp; row < b; row += gridDim.x * kWarpsPerBlock) {
    const int index = warp_row_argmax(x + int64_t(row) * c, c, lane);
    if (lane == 0) out[row] = index;
  }
}

// x: (b, c), labels: (b); *correct += rows whose argmax equals the label. One
// integer atomic per block: integer addition is exact, so the total does not
// depend on the order blocks finish in.
__global__ void accumulate_correct_kernel(const float* __restrict__ x, const int32_t* __restrict__ labels, int b, int c,
                                          unsigned long long* __restrict__ correct) {
  __shared__ unsigned int warp_hits[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  unsigned int hits = 0;
  for (int row = blockIdx.x * kWarpsPerBlock + warp; row < b; row += gridDim.x * kWarpsPerBlock) {
    const int index = warp_row_argmax(x + int64_t(row) * c, c, lane);
    hits += index == labels[row];
  }
  if (lane == 0) warp_hits[warp] = hits;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long block_hits = 0;
    for (int w = 0; w < kWarpsPerBlock; ++w) block_hits += warp_hits[w];
    if (block_hits) atomicAdd(correct, block_hits);
  }
}

__global__ void accumulate_scalar_kernel(const float* __restrict__ value, double weight, double* __restrict__ total) {
  *total += weight * double(*value);
}

}  // namespace

void argmax_rows(const float* x, int32_t* out, int b, int c, cudaStream_t stream) {
  if (b == 0) return;
  launch(argmax_rows_kernel, blocks_for_rows(b), kBlockThreads, 0, stream, x, out, b, c);
  KD_CUDA_CHECK_LAUNCH(argmax_rows_kernel);
}

void accumulate_correct(const float* x, const int32_t* labels, int b, int c, unsigned long long* correct,
                        cudaStream_t stream) {
  if (b == 0) return;
  launch(accumulate_correct_kernel, blocks_for_rows(b), kBlockThreads, 0, stream, x, labels, b, c, correct);
  KD_CUDA_CHECK_LAUNCH(accumulate_correct_kernel);
}

void accumulate_scalar(const float* value, double weight, double* total, cudaStream_t stream) {
  launch(accumulate_scalar_kernel, 1, 1, 0, stream, value, weight, total);
  KD_CUDA_CHECK_LAUNCH(accumulate_scalar_kernel);
}

}  // namespace kd::cuda
