// cuda_sim.h: a CPU execution model of CUDA, used only by the tests, so that the
// kernels' own source (kernels/*.cu) and the whole CUDA engine around them
// (src/gpu: streams, graphs, plans, the memory check; the kdtrain-sim binary)
// compile as host C++ and run in CI against the CPU reference. The shim
// headers next to this one (cuda_runtime.h, cooperative_groups.h, cublas_v2.h,
// cublasLt.h, cudnn.h) include it; tests/sim/CMakeLists.txt puts this
// directory first on the include path.
//
// Model. Every GPU thread is a fiber with its own small stack. The blocks of a
// grid run one at a time, the blocks of a thread-block cluster together (one
// fiber at a time, switching only where a thread waits). __syncthreads,
// cluster.sync, __syncwarp and every warp shuffle or vote are real barriers: a
// thread that reaches one waits until every thread it names has arrived, then
// values are exchanged. The order in which waiting threads resume is the
// schedule: in order, reversed, or seeded-random (KDSIM_SCHEDULE=in-order |
// reverse | random[:SEED]); CTest runs each simulated test under two schedules.
// Static __shared__ variables are thread_local (the blocks of a cluster swap
// them in and out), dynamic shared memory is kd::cuda::dynamic_shared_memory().
// Memory from cudaMalloc is host memory.
//
// Streams (sim_api.cpp). Each stream, and the legacy default stream (nullptr),
// holds a FIFO of queued work: kernel launches (arguments copied at the launch,
// the configuration checked there), cudaMemcpyAsync, cudaMemsetAsync,
// cudaMemset (asynchronous for device memory, as documented), library work
// queued through kdsim::enqueue, event records and waits. Work runs only where
// CUDA guarantees it has completed: cudaStreamSynchronize and cudaStreamQuery
// (the stream's work), cudaEventSynchronize (the work before the record),
// cudaDeviceSynchronize and cudaFree (everything), a blocking cudaMemcpy (the
// legacy stream's work, up to the copy; device-to-device copies do not block,
// as documented), cudaStreamDestroy (that stream's work). Running an item
// first runs the work it waits for: cudaStreamWaitEvent's event and, for the
// legacy stream, the earlier work of every blocking stream (and the other way
// round); streams created with cudaStreamNonBlocking wait for neither. So a
// result read without the synchronisation CUDA requires is the old value, and
// host memory is treated as pinned: a device-to-host cudaMemcpyAsync fills its
// destination with 0xFF bytes (NaN as floats) when queued, so a read before
// the synchronisation sees poison; a host-to-device one reads its source when
// it runs. cudaMalloc does not synchronise; it fails beyond the simulated
// device's memory, and cudaMemGetInfo answers free = total - live allocations.
// Errors of work that has run (a kernel the simulator reported, a copy through
// freed memory) surface at the next synchronising call or cudaGetLastError.
//
// Graphs. cudaStreamBeginCapture makes a stream record its work, in order,
// instead of queueing it; cudaStreamEndCapture returns the chain as a graph,
// cudaGraphInstantiate copies it, and each cudaGraphLaunch queues the chain on
// a stream with the pointers and scalars captured: a buffer reallocated after
// the capture is still the old pointer (a freed one is an out-of-bounds access,
// reported). Calls the runtime forbids during a capture return its documented
// error and invalidate the capture (cudaStreamEndCapture then returns
// cudaErrorStreamCaptureInvalidated and no graph): cudaMalloc, cudaFree and a
// blocking cudaMemcpy in global and thread-local mode (cudaErrorStreamCapture-
// Unsupported; every host call is taken to come from the capturing thread);
// cudaDeviceSynchronize, or cudaStreamSynchronize / cudaStreamQuery of the
// capturing stream, in any mode (same error); work on the legacy stream while a
// blocking stream captures (cudaErrorStreamCaptureImplicit); a capturing stream
// waiting on an event recorded outside the capture (cudaErrorStreamCaptureIsolation);
// cudaEventSynchronize of an event recorded in a capture (cudaErrorCapturedEvent).
// An event recorded during a capture marks a point of it; a wait on it by the
// same capturing stream is accepted (the chain is already in order), a wait by
// any other stream, which the runtime would turn into a fork of the capture,
// is refused with cudaErrorStreamCaptureUnsupported: captures span one stream.
//
// Not modelled: timing (cudaEventElapsedTime measures the host), concurrency
// between streams or with the host (work runs one item at a time, in a valid
// order: each stream in FIFO order after what it waits for; where
// cudaDeviceSynchronize or cudaFree runs several streams, the schedule picks
// which goes next: queue order for in-order, the latest created stream first
// for reverse, seeded-random for random), the per-thread
// default stream, pageable-memory staging (Async copies never synchronise),
// cudaMemcpyDefault (not poisoned), graph nodes other than the captured chain.
//
// What it reports (one line each, and the launch fails with cudaErrorLaunchFailure):
//  - barrier divergence and deadlock: threads waiting at different barriers,
//    or for threads that exited, are reported with their sites; never a hang;
//  - warp shuffles and votes whose mask leaves out the calling lane, names an
//    exited lane, or reads a lane outside the mask; lanes of one mask arriving
//    at different operations;
//  - through the access checker (kernels compiled with -fsanitize=thread, which
//    here only routes every load and store of kernel code to this simulator;
//    no ThreadSanitizer runtime is linked): shared-memory races (two threads,
//    one address, at least one write, no barrier between them; both sites),
//    reads of shared memory no thread of the block wrote, dynamic
//    shared memory out of the launch's bounds, reads of another block's
//    shared memory after it exited, and global accesses outside any live
//    cudaMalloc allocation (exact-sized, with gaps between allocations).
//    ASan and this instrumentation exclude each other, so the sanitized build
//    has no simulator.
//
// Limits. It checks logic, indexing and races between barriers; not timing,
// coalescing, bank conflicts, occupancy, the hardware memory model (memory is
// sequentially consistent here, and races in global memory are not looked
// for), or the exact rounding of hardware intrinsics (exp2f, __expf, ... are
// the host's libm functions; fmaf is a true fused multiply-add).
//
// The simulated device ("kdsim sm_90"), which device and occupancy queries
// describe: compute capability 9.0 (KDSIM_CC=8.0 etc. simulates an older GPU,
// without clusters), 8 SMs, warp size 32, at most 1024 threads and 48 KiB of
// shared memory per block (227 KiB with cudaFuncAttributeMaxDynamicSharedMemorySize),
// up to 2048 threads and 32 blocks per SM, clusters of up to 8 blocks (16 with
// cudaFuncAttributeNonPortableClusterSizeAllowed).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ------------------------------------------------------------------ qualifiers
#ifndef KD_SIM
#define KD_SIM 1
#endif
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static

// ------------------------------------------------------------------ vector types
#define KDSIM_VECTOR_TYPES(T, name, a2, a4)                                  \
  struct __attribute__((aligned(a2))) name##2 {                              \
    T x, y;                                                                  \
  };                                                                         \
  struct name##3 {                                                           \
    T x, y, z;                                                               \
  };                                                                         \
  struct __attribute__((aligned(a4))) name##4 {                              \
    T x, y, z, w;                                                            \
  };                                                                         \
  inline name##2 make_##name##2(T x, T y) { return name##2 {x, y}; }         \
  inline name##3 make_##name##3(T x, T y, T z) { return name##3 {x, y, z}; } \
  inline name##4 make_##name##4(T x, T y, T z, T w) { return name##4 {x, y, z, w}; }
KDSIM_VECTOR_TYPES(float, float, 8, 16)
KDSIM_VECTOR_TYPES(double, double, 16, 16)
KDSIM_VECTOR_TYPES(int, int, 8, 16)
KDSIM_VECTOR_TYPES(unsigned, uint, 8, 16)
KDSIM_VECTOR_TYPES(unsigned char, uchar, 2, 4)
KDSIM_VECTOR_TYPES(signed char, char, 2, 4)
KDSIM_VECTOR_TYPES(unsigned short, ushort, 4, 8)
KDSIM_VECTOR_TYPES(long long, longlong, 16, 16)
#undef KDSIM_VECTOR_TYPES
static_assert(alignof(float4) == 16 && sizeof(float4) == 16 && alignof(uchar4) == 4 && alignof(double2) == 16,
              "vector types must have CUDA's alignment");
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ------------------------------------------------------------------ runtime types
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorNotSupported = 801,
  cudaErrorLaunchFailure = 719,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
};
using cudaError = cudaError_t;
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrClusterLaunch = 120,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
  cudaFuncAttributeNonPortableClusterSizeAllowed = 12,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int maxBlocksPerMultiProcessor;
  size_t l2CacheSize;
};
enum cudaLaunchAttributeID { cudaLaunchAttributeClusterDimension = 4 };
struct cudaLaunchAttributeValue {
  struct {
    unsigned x, y, z;
  } clusterDim;
};
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
  dim3 gridDim, blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  cudaLaunchAttribute* attrs;
  unsigned numAttrs;
};

// ------------------------------------------------------------------ simulator core
namespace kdsim {

// Where in the kernel source a barrier, shuffle or vote was reached.
struct Site {
  const char* file;
  int line;
};

// The simulated thread that is running (null outside kernels).
struct ThreadState {
  uint3 thread_idx, block_idx, block_dim, grid_dim;
  uint3 cluster_dim;      // blocks per cluster along each axis (1,1,1 without clusters)
  unsigned cluster_rank;  // this block's rank within its cluster
  unsigned cluster_size;
};
extern ThreadState* g_current;

// Launch of a type-erased kernel: `body(args)` runs once per thread.
struct Launch {
  dim3 grid, block, cluster;
  size_t dynamic_smem;
  const void* kernel;  // for messages and per-function attributes
  void (*body)(void* args);
  void* args;
};
// Checks the configuration now (an invalid one fails here, as a real launch
// does) and queues the launch on `stream`; the queued work owns `args`
// (l.args points into it) until it has run, or as long as a graph holds it.
cudaError_t launch(cudaStream_t stream, const Launch& l, std::shared_ptr<void> args);

// Barriers and warp collectives (called by the macros below with their site).
void syncthreads(Site site);
void syncwarp(Site site, unsigned mask);
void cluster_sync(Site site);
enum class Shfl { Idx, Up, Down, Xor };
// Exchanges 8 bytes; returns what lane `src` of the segment contributed.
uint64_t shuffle(Site site, Shfl kind, unsigned mask, uint64_t value, int lane_arg, int width);
enum class Vote { Ballot, Any, All };
unsigned vote(Site site, Vote kind, unsigned mask, bool predicate);
unsigned active_mask();
// The address of `ptr` (shared memory of this block) in the shared memory of cluster rank `rank`.
void* map_shared_rank(Site site, const void* ptr, unsigned rank);
void* dynamic_shared_memory();
[[noreturn]] void trap(Site site);

// Simulated device properties, also for cudaDeviceGetAttribute.
const cudaDeviceProp& device_properties();
int occupancy_clusters(const void* kernel, const cudaLaunchConfig_t& config);
cudaError_t set_function_attribute(const void* kernel, cudaFuncAttribute attribute, int value);
cudaError_t record_error(cudaError_t status);  // remembered for cudaGetLastError
cudaError_t take_last_error(bool clear);
uint64_t report_count();  // problems reported so far (the test main fails the process if any)

// Queues the kernel on `stream`, to be called once per thread with its
// arguments converted to its parameter types. The arguments are copied now,
// as a real launch copies them into the kernel's parameter space: changing
// the variables they came from afterwards changes nothing.
template <typename... P, typename... A>
cudaError_t launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, dim3 cluster, size_t smem, cudaStream_t stream,
                          A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  using Params = std::tuple<std::decay_t<P>...>;
  struct Call {
    void (*kernel)(P...);
    Params params;
  };
  auto call = std::make_shared<Call>(Call{kernel, Params(std::forward<A>(args)...)});
  Launch l{grid,
           block,
           cluster,
           smem,
           reinterpret_cast<const void*>(kernel),
           [](void* c) {
             Call& call = *static_cast<Call*>(c);
             std::apply(call.kernel, call.params);  // each thread gets its own copies of by-value parameters
           },
           call.get()};
  return launch(stream, l, std::move(call));
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

// The intrinsics that need their call site, reached through KDSIM_AT below.
struct At {
  Site site;
  void syncthreads() const { kdsim::syncthreads(site); }
  void syncwarp(unsigned mask = 0xffffffffu) const { kdsim::syncwarp(site, mask); }
  template <typename T>
  T shfl_sync(unsigned mask, T v, int src, int width = 32) const {
    return from_bits<T>(shuffle(site, Shfl::Idx, mask, to_bits(v), src, width));
  }
  template <typename T>
  T shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) const {
    return from_bits<T>(shuffle(site, Shfl::Up, mask, to_bits(v), int(delta), width));
  }
  template <typename T>
  T shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) const {
    return from_bits<T>(shuffle(site, Shfl::Down, mask, to_bits(v), int(delta), width));
  }
  template <typename T>
  T shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) const {
    return from_bits<T>(shuffle(site, Shfl::Xor, mask, to_bits(v), lane_mask, width));
  }
  unsigned ballot_sync(unsigned mask, int predicate) const { return vote(site, Vote::Ballot, mask, predicate != 0); }
  int any_sync(unsigned mask, int predicate) const { return vote(site, Vote::Any, mask, predicate != 0) != 0; }
  int all_sync(unsigned mask, int predicate) const { return vote(site, Vote::All, mask, predicate != 0) != 0; }
  [[noreturn]] void trap() const { kdsim::trap(site); }
};

}  // namespace kdsim

#define KDSIM_AT (::kdsim::At{::kdsim::Site{__FILE__, __LINE__}})
#define __syncthreads KDSIM_AT.syncthreads
#define __syncwarp KDSIM_AT.syncwarp
#define __shfl_sync KDSIM_AT.shfl_sync
#define __shfl_up_sync KDSIM_AT.shfl_up_sync
#define __shfl_down_sync KDSIM_AT.shfl_down_sync
#define __shfl_xor_sync KDSIM_AT.shfl_xor_sync
#define __ballot_sync KDSIM_AT.ballot_sync
#define __any_sync KDSIM_AT.any_sync
#define __all_sync KDSIM_AT.all_sync
#define __trap KDSIM_AT.trap
inline unsigned __activemask() { return kdsim::active_mask(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// The built-in variables of the running thread; the simulator sets them
// before it switches to a thread (only calls into it switch threads).
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ------------------------------------------------------------------ atomics
// Through the compiler's atomic builtins, so the access checker sees them as
// atomic (never a race) rather than as a load and a store.
template <typename T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    T expected, next;
    __atomic_load(p, &expected, __ATOMIC_SEQ_CST);
    do next = expected + v;
    while (!__atomic_compare_exchange(p, &expected, &next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return expected;
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  }
}
template <typename T>
T atomicSub(T* p, T v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicMax(T* p, T v) {
  T expected = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (expected < v && !__atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return expected;
}
template <typename T>
T atomicMin(T* p, T v) {
  T expected = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < expected && !__atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return expected;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}

// ------------------------------------------------------------------ math
// CUDA's overloaded min/max for integers and floats, and the intrinsics the
// kernels use, as host arithmetic (the _rn ones are IEEE round-to-nearest on
// both sides; the fast approximate ones are exact here).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
using std::isfinite;
using std::isinf;
using std::isnan;
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float a) { return std::exp(a); }
inline float __exp2f(float a) { return std::exp2(a); }
inline float __logf(float a) { return std::log(a); }
inline float __saturatef(float a) { return a < 0.f ? 0.f : (a > 1.f ? 1.f : a); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(int(v)); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }

// ------------------------------------------------------------------ runtime API
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t status);
const char* cudaGetErrorString(cudaError_t status);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);

template <typename... P, typename... A>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(P...), A&&... args) {
  dim3 cluster(1, 1, 1);
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    if (config->attrs[i].id == cudaLaunchAttributeClusterDimension) {
      const auto& c = config->attrs[i].val.clusterDim;
      cluster = dim3(c.x, c.y, c.z);
    }
  }
  return kdsim::record_error(kdsim::launch_kernel(kernel, config->gridDim, config->blockDim, cluster,
                                                  config->dynamicSmemBytes, config->stream, std::forward<A>(args)...));
}
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveClusters(int* clusters, Kernel* kernel, const cudaLaunchConfig_t* config) {
  *clusters = kdsim::occupancy_clusters(reinterpret_cast<const void*>(kernel), *config);
  return cudaSuccess;
}
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attribute, int value) {
  return kdsim::record_error(kdsim::set_function_attribute(reinterpret_cast<const void*>(kernel), attribute, value));
}
