// Kernels of the device-side epoch cursor (see epoch_cursor.h). Each is tiny;
// what matters is that their arguments never change between graph replays.
#include "epoch_cursor.h"

#include "kd/launch.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void start_epoch_cursor_kernel(int64_t* cursor, int32_t* epoch_step, int64_t begin) {
  *cursor = begin;
  *epoch_step = 0;
}

__global__ void take_batch_indices_kernel(const int32_t* __restrict__ order, const int64_t* __restrict__ cursor,
                                          int32_t* __restrict__ sample_idx, int b) {
  const int64_t first = *cursor;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < b; i += gridDim.x * blockDim.x)
    sample_idx[i] = order[first + i];
}

__global__ void take_step_draw_kernel(const MixupDraw* __restrict__ epoch_draws, const int64_t* __restrict__ cursor,
                                      int batch_size, MixupDraw* __restrict__ draw) {
  *draw = epoch_draws[*cursor / batch_size];
}

__global__ void finish_step_kernel(const float* loss, const float* kl, const float* hint, float* epoch_loss,
                                   float* epoch_kl, float* epoch_hint, int32_t* epoch_step, int64_t* cursor, int b) {
  const int32_t step = *epoch_step;
  epoch_loss[step] = *loss;
  epoch_kl[step] = kl != nullptr ? *kl : 0.0f;
  if (hint != nullptr) epoch_hint[step] = *hint;
  *epoch_step = step + 1;
  *cursor += b;
}

}  // namespace

void start_epoch_cursor(int64_t* cursor, int32_t* epoch_step, int64_t begin, cudaStream_t stream) {
  launch(start_epoch_cursor_kernel, 1, 1, 0, stream, cursor, epoch_step, begin);
  KD_CUDA_CHECK_LAUNCH(start_epoch_cursor_kernel);
}

void take_batch_indices(const int32_t* order, const int64_t* cursor, int32_t* sample_idx, int b, cudaStream_t stream) {
  launch(take_batch_indices_kernel, (b + kThreads - 1) / kThreads, kThreads, 0, stream, order, cursor, sample_idx, b);
  KD_CUDA_CHECK_LAUNCH(take_batch_indices_kernel);
}

void take_step_draw(const MixupDraw* epoch_draws, const int64_t* cursor, int batch_size, MixupDraw* draw,
                    cudaStream_t stream) {
  launch(take_step_draw_kernel, 1, 1, 0, stream, epoch_draws, cursor, batch_size, draw);
  KD_CUDA_CHECK_LAUNCH(take_step_draw_kernel);
}

void finish_step(const float* loss, const float* kl, const float* hint, float* epoch_loss, float* epoch_kl,
                 float* epoch_hint, int32_t* epoch_step, int64_t* cursor, int b, cudaStream_t stream) {
  launch(finish_step_kernel, 1, 1, 0, stream, loss, kl, hint, epoch_loss, epoch_kl, epoch_hint, epoch_step, cursor, b);
  KD_CUDA_CHECK_LAUNCH(finish_step_kernel);
}

}  // namespace kd::cuda
