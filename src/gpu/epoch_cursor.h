// The device-side position of a training epoch, so that one captured CUDA
// graph serves every batch of the epoch: the graph reads which samples to
// take from `cursor` and, once the step is done, records its loss at
// `epoch_step` and advances both. The host never patches the graph.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kd/augment.h"

namespace kd::cuda {

// *cursor = begin, *epoch_step = 0: the epoch's first step takes order[begin, ...).
void start_epoch_cursor(int64_t* cursor, int32_t* epoch_step, int64_t begin, cudaStream_t stream);

// order: (order length) sample indices of the epoch, cursor: (1)
// -> sample_idx: (b) = order[*cursor + i].
void take_batch_indices(const int32_t* order, const int64_t* cursor, int32_t* sample_idx, int b, cudaStream_t stream);

// epoch_draws: (steps of the epoch) the mixup draw of each batch, batch k
// starting at order position k * batch_size -> *draw = the draw of the batch
// at *cursor (a multiple of batch_size).
void take_step_draw(const MixupDraw* epoch_draws, const int64_t* cursor, int batch_size, MixupDraw* draw,
                    cudaStream_t stream);

// Records the step's mean loss, mean KL (kl null: records 0) and mean hint
// distance (hint null: records nothing) at epoch_loss[*epoch_step],
// epoch_kl[*epoch_step] and epoch_hint[*epoch_step], then ++*epoch_step and
// *cursor += b. loss, kl, hint: (1); epoch_*: (steps the epoch can have).
void finish_step(const float* loss, const float* kl, const float* hint, float* epoch_loss, float* epoch_kl,
                 float* epoch_hint, int32_t* epoch_step, int64_t* cursor, int b, cudaStream_t stream);

}  // namespace kd::cuda
