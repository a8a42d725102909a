// kd/cuda_common.h: the launch arithmetic the kernel families share, so that
// no kernel file carries its own copy of the block size or the grid rule.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kd::cuda {

// Threads per block of the elementwise, row and reduction kernels: 8 warps,
// enough to hide memory latency at the occupancy these simple kernels reach.
constexpr int kBlockThreads = 256;

// Blocks for `units` units of work at `units_per_block` each, capped at
// `max_blocks` (the kernels' grid-stride loops cover the rest) and at least 1.
inline int grid_blocks(int64_t units, int64_t units_per_block, int64_t max_blocks) {
  return int(std::clamp<int64_t>((units + units_per_block - 1) / units_per_block, 1, max_blocks));
}

}  // namespace kd::cuda
