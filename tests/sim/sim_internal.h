// Internals of the CUDA simulator shared by its source files (see
// include/cuda_sim.h for the model and its limits). Nothing here is seen by
// kernel code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda_sim.h"

namespace kdsim {

constexpr int kWarp = 32;
constexpr unsigned kMaxClusterBlocks = 16;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // the simulated opt-in limit per block

// One simulated GPU thread: its built-in variables (ThreadState), its fiber and
// what it waits for.
enum class Wait { Running, Block, Cluster, Warp, Done };
enum class WarpOp { Sync, Shuffle, Vote };
struct Block;
struct Thread : ThreadState {
  Block* block = nullptr;
  unsigned tid = 0, lane = 0, warp = 0;
  void* sp = nullptr;     // saved stack pointer while switched out
  char* stack = nullptr;  // lowest usable byte of its stack
  size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  Wait wait = Wait::Running;
  Site site{};
  // The warp collective it waits in.
  WarpOp op = WarpOp::Sync;
  int kind = 0;  // Shfl or Vote
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int lane_arg = 0, width = 32;
};

struct Block {
  uint3 idx{};
  unsigned rank = 0;    // within its cluster
  uint64_t serial = 0;  // unique per block run: tells shadow entries of earlier blocks apart
  std::vector<Thread*> threads;
  unsigned done = 0, at_barrier = 0;
  uint32_t barrier_gen = 0;             // completed __syncthreads and cluster.sync
  std::vector<uint32_t> warp_gen;       // completed warp collectives per warp
  std::vector<unsigned> exited_lanes;   // per warp: lanes that returned
  std::vector<unsigned> waiting_lanes;  // per warp: lanes waiting in a warp collective
  std::vector<Thread*> ready;           // runnable, in schedule order
  size_t next_ready = 0;
  bool exited() const { return done == threads.size(); }
};

// The cluster (or lone block) being run and its launch.
struct Run {
  const Launch* launch = nullptr;
  std::vector<Block> blocks;  // by rank
  unsigned current = 0;       // rank whose shared memory is live in the TLS block
  unsigned at_cluster = 0;
  uint32_t cluster_gen = 0;
  bool failed = false;
  std::string kernel_name;
};
extern Run g_run;
extern Thread* g_thread;  // = g_current while a simulated thread runs

// The schedule: the order in which released threads and blocks resume.
enum class Schedule { InOrder, Reverse, Random };
struct Scheduler {
  Schedule schedule = Schedule::InOrder;
  uint64_t seed = 0;
  std::mt19937_64 rng;
  template <typename It>
  void order(It begin, It end) {  // in place, by the schedule
    switch (schedule) {
      case Schedule::InOrder: break;
      case Schedule::Reverse: std::reverse(begin, end); break;
      case Schedule::Random: std::shuffle(begin, end, rng); break;
    }
  }
  template <typename T>
  void order(std::vector<T>& items) {
    order(items.begin(), items.end());
  }
};
Scheduler& scheduler();

// One report line on stderr, counted; the running launch fails.
void report(const std::string& message);
std::string describe(const Thread& t);  // "thread (3,0,0) of block (1,0,0)"
std::string site_text(Site s);
std::string symbolize(uintptr_t pc);  // "kernels/x.cu:123" for a return address in kernel code

// Static shared memory (the executable's thread_local block) and its copies for the
// blocks of a cluster that are not running.
struct SharedWindow {
  uintptr_t lo = 0;
  size_t size = 0;
  uintptr_t dynamic_lo = 0;          // kd::cuda::dynamic_shared_memory() within it
  std::vector<unsigned char> saved;  // rank r's copy at r * size (clusters only)
  unsigned char* saved_copy(unsigned rank) { return saved.data() + size_t(rank) * size; }
};
SharedWindow& shared_window();
extern SharedWindow* g_window;  // = &shared_window() once anything was launched
// Rank whose shared memory holds `address`, and its offset; false when not shared memory.
inline bool locate_shared(uintptr_t address, unsigned* rank, size_t* offset) {
  const SharedWindow& w = *g_window;
  if (address - w.lo < w.size) {
    *rank = g_run.current;
    *offset = address - w.lo;
    return true;
  }
  const uintptr_t saved = reinterpret_cast<uintptr_t>(w.saved.data());
  if (address - saved < w.saved.size()) {
    *rank = unsigned((address - saved) / w.size);
    *offset = (address - saved) % w.size;
    return true;
  }
  return false;
}

// A launch is checked when it is queued (an invalid configuration fails the
// call, as on hardware) and run when its stream's work runs; run_launch
// returns cudaErrorLaunchFailure when the simulator reported a problem in it.
cudaError_t check_launch(const Launch& l);
cudaError_t run_launch(const Launch& l);

// Access checker state for a new block run (shadow entries are told apart by serial).
void checker_begin_launch();
void* device_malloc(size_t bytes);                                    // null when out of (simulated) memory
bool device_free(void* ptr);                                          // false: not a live allocation
bool device_range_ok(const void* p, size_t bytes, std::string* why);  // for cudaMemcpy/cudaMemset
size_t device_bytes_in_use();  // the sum of the live allocations' sizes, for cudaMemGetInfo

// Work that a library call (simulated cuBLAS, cuBLASLt, cuDNN) or a runtime call
// queues on `stream`, described by `what` for messages. The simulated libraries
// validate their arguments at the call, as the real ones do, and queue only the
// arithmetic through this hook: it runs when the stream's work runs (see
// cuda_sim.h), or is recorded into the graph while the stream captures, so it
// must read its arguments' pointed-to data when it runs, not when queued.
// Returns cudaErrorInvalidResourceHandle for a stream that does not exist, and
// the capture errors of cudaLaunchKernelEx (cudaErrorStreamCaptureImplicit on
// the legacy stream while a blocking stream captures, ...).
cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work);

}  // namespace kdsim
