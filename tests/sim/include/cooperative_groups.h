// cooperative_groups for the CUDA simulator (see cuda_sim.h): the thread
// block, tiles of a warp or less, and the thread-block cluster with its
// distributed shared memory.
#pragma once

#include "cuda_sim.h"

namespace cooperative_groups {

class thread_block {
 public:
  void sync() const { __syncthreads(); }
  unsigned thread_rank() const { return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x; }
  unsigned size() const { return num_threads(); }
  unsigned num_threads() const { return blockDim.x * blockDim.y * blockDim.z; }
  dim3 group_index() const { return blockIdx; }
  dim3 thread_index() const { return threadIdx; }
  dim3 group_dim() const { return blockDim; }
};
inline thread_block this_thread_block() { return thread_block(); }
inline void sync(const thread_block& g) { g.sync(); }

// A tile of N consecutive threads (N a power of two <= 32) of the block.
template <unsigned N>
class thread_block_tile {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tiles are powers of two of at most a warp");

 public:
  unsigned thread_rank() const { return thread_block().thread_rank() % N; }
  unsigned meta_group_rank() const { return thread_block().thread_rank() / N; }
  unsigned meta_group_size() const { return (thread_block().num_threads() + N - 1) / N; }
  static constexpr unsigned size() { return N; }
  static constexpr unsigned num_threads() { return N; }
  void sync() const { __syncwarp(mask()); }
  template <typename T>
  T shfl(T v, int src) const {
    return __shfl_sync(mask(), v, src, N);
  }
  template <typename T>
  T shfl_up(T v, unsigned delta) const {
    return __shfl_up_sync(mask(), v, delta, N);
  }
  template <typename T>
  T shfl_down(T v, unsigned delta) const {
    return __shfl_down_sync(mask(), v, delta, N);
  }
  template <typename T>
  T shfl_xor(T v, int lane_mask) const {
    return __shfl_xor_sync(mask(), v, lane_mask, N);
  }
  int any(int predicate) const { return __any_sync(mask(), predicate); }
  int all(int predicate) const { return __all_sync(mask(), predicate); }
  unsigned ballot(int predicate) const { return __ballot_sync(mask(), predicate) >> (lane_base()); }

 private:
  unsigned lane_base() const { return (thread_block().thread_rank() % 32) / N * N; }
  unsigned mask() const { return (N == 32 ? 0xffffffffu : ((1u << N) - 1u)) << lane_base(); }
};
template <unsigned N>
thread_block_tile<N> tiled_partition(const thread_block&) {
  return thread_block_tile<N>();
}
template <unsigned N>
inline void sync(const thread_block_tile<N>& g) {
  g.sync();
}

// The cluster of blocks this block belongs to (sm_90).
class cluster_group {
 public:
  // (The defaults name the caller's line in reports.)
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    ::kdsim::cluster_sync(::kdsim::Site{file, line});
  }
  unsigned block_rank() const { return ::kdsim::g_current->cluster_rank; }
  unsigned num_blocks() const { return ::kdsim::g_current->cluster_size; }
  dim3 dim_blocks() const { return ::kdsim::g_current->cluster_dim; }
  dim3 block_index() const {
    const uint3 d = ::kdsim::g_current->cluster_dim;
    const unsigned r = block_rank();
    return dim3(r % d.x, (r / d.x) % d.y, r / (d.x * d.y));
  }
  unsigned thread_rank() const { return block_rank() * thread_block().num_threads() + thread_block().thread_rank(); }
  unsigned num_threads() const { return num_blocks() * thread_block().num_threads(); }
  // The address of *addr (shared memory of this block) in block `rank`'s shared memory.
  template <typename T>
  T* map_shared_rank(T* addr, unsigned rank, const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    return static_cast<T*>(::kdsim::map_shared_rank(::kdsim::Site{file, line}, addr, rank));
  }
  template <typename T>
  T& map_shared_rank(T& ref, unsigned rank, const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    return *map_shared_rank(&ref, rank, file, line);
  }
  bool is_valid() const { return true; }
};
inline cluster_group this_cluster() { return cluster_group(); }

}  // namespace cooperative_groups
