// Fully connected layers (nn.Linear layout) and ReLU, in two implementations
// with one contract (oracle: kd::ref::dense_forward / dense_backward):
//
//  - Custom: a tiled SGEMM written here. Shared-memory tiles of BM x BN x 16
//    with register blocking (64x64 tiles with 4x4 per thread; 128x128 with 8x8
//    when the output alone fills the GPU), the next k-tile loaded into
//    registers while the current one is multiplied, any M, N, K (edges zero-
//    filled). The forward fuses bias + ReLU into the epilogue, dX fuses the
//    ReLU mask of the layer input. When the output has too few tiles to fill
//    the GPU (the trainer's batch-64 layers) K is split: each split writes its
//    partial tile to a workspace and a second kernel sums the splits in order
//    and applies the epilogue, so results stay deterministic (no atomics).
//  - cuBLAS: cublasLtMatmul with the BIAS / RELU_BIAS epilogue for the forward
//    (plain cublasSgemm + a bias/ReLU kernel when Lt offers no algorithm or the
//    bias is not 16-byte aligned), cublasSgemm for dX (+ a mask kernel) and dW.
//    Both run in full fp32: CUBLAS_DEFAULT_MATH never selects TF32 for Sgemm
//    and Lt is asked for CUBLAS_COMPUTE_32F, so results match the reference at
//    GEMM rounding (~1e-6 relative), not TF32's ~1e-3.
//
// db is the same kernel for both: column sums of dy in double, in a fixed order.
//
// Row-major to cuBLAS's column-major: a row-major (r x c) matrix is the
// column-major (c x r) matrix with leading dimension c, its transpose. So
// y = x w^T (row-major) is y^T = w x^T (column-major): A = w as stored,
// transposed; B = x as stored; m = out, n = b, k = in.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "kd/cuda_common.h"
#include "kd/error.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"
#include "kd/cuda_timer.h"

#define KD_CUBLAS_CHECK(call)                                                                             \
  do {                                                                                                    \
    const cublasStatus_t kd_blas_status_ = (call);                                                        \
    if (kd_blas_status_ != CUBLAS_STATUS_SUCCESS)                                                         \
      ::kd::cuda::throw_library_error("cuBLAS", static_cast<int>(kd_blas_status_),                        \
                                      cublasGetStatusString(kd_blas_status_), #call, __FILE__, __LINE__); \
  } while (0)

namespace kd::cuda {
namespace {

constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;  // set explicitly so graph capture never allocates
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
constexpr size_t kSplitKFloats = size_t(4) << 20;  // 16 MiB of split-K partial sums
constexpr int kBK = 16;                            // k-tile depth of the custom GEMM
constexpr int kMaxSplits = 32;
constexpr int kMinKTilesPerSplit = 4;  // a split below 64 k-steps costs more than it brings

// ------------------------------------------------------------------ custom GEMM
// What happens to each output element v = sum_k A(m, k) B(k, n) on its way out.
struct Epilogue {
  const float* bias = nullptr;  // (N) added per column, or null
  const float* mask = nullptr;  // (M, N) row-major: output zeroed where mask <= 0 (ReLU backward), or null
  bool relu = false;            // max(v, 0) after the bias
};

__device__ __forceinline__ float apply_epilogue(const Epilogue& ep, float v, int m, int n, int N) {
  if (ep.bias) v += ep.bias[n];
  if (ep.relu) v = v > 0.f ? v : 0.f;
  if (ep.mask) v = ep.mask[int64_t(m) * N + n] > 0.f ? v : 0.f;
  return v;
}

// Loads this thread's share of a ROWS x kBK operand tile (rows along M for A,
// along N for B) whose element (r, k) lives at src[r * ld + k] when kContigK,
// else at src[k * ld + r]. Consecutive threads take consecutive addresses
// either way (coalesced). Out-of-range elements read as 0, so edge tiles and
// K tails add nothing.
template <int ROWS, int kThreads, bool kContigK>
__device__ __forceinline__ void load_operand(const float* __restrict__ src, int ld, int r0, int rows, int k0, int k_end,
                                             float (&stage)[ROWS * kBK / kThreads]) {
#pragma unroll
  for (int i = 0; i < ROWS * kBK / kThreads; ++i) {
    const int e = i * kThreads + int(threadIdx.x);
    const int r = kContigK ? e / kBK : e % ROWS;
    const int kk = kContigK ? e % kBK : e / ROWS;
    const int gr = r0 + r, gk = k0 + kk;
    stage[i] = gr < rows && gk < k_end ? src[kContigK ? int64_t(gr) * ld + gk : int64_t(gk) * ld + gr] : 0.f;
  }
}

// Stores the staged share k-major (tile[k][r]), the layout the inner product reads.
template <int ROWS, int kThreads, bool kContigK>
__device__ __forceinline__ void store_operand(const float (&stage)[ROWS * kBK / kThreads], float (*tile)[ROWS + 4]) {
#pragma unroll
  for (int i = 0; i < ROWS * kBK / kThreads; ++i) {
    const int e = i * kThreads + int(threadIdx.x);
    const int r = kContigK ? e / kBK : e % ROWS;
    const int kk = kContigK ? e % kBK : e / ROWS;
    tile[kk][r] = stage[i];
  }
}

// C (M x N, row-major, ld N) = A (M x K) . B (K x N) over k in this block's
// split [z * k_per_split, min(K, (z + 1) * k_per_split)).
//   A(m, k) = kATrans ? a[k * lda + m] : a[m * lda + k]
//   B(k, n) = kBTrans ? b[n * ldb + k] : b[k * ldb + n]
// With one split the epilogue is applied and C is the output; with several,
// C is the partial buffer (splits, M, N) and split_k_reduce_kernel finishes.
// A thread owns a TM x TN micro-tile made of 4x4 blocks spaced 4 * threads
// apart along each axis, so a warp's float4 shared-memory reads of B are
// consecutive (no bank conflicts) and those of A are broadcasts.
template <int BM, int BN, int TM, int TN, bool kATrans, bool kBTrans>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    gemm_kernel(const float* __restrict__ a, int lda, const float* __restrict__ b, int ldb, float* __restrict__ c,
                int M, int N, int K, int k_per_split, Epilogue ep) {
  constexpr int kThreadsX = BN / TN, kThreadsY = BM / TM, kThreads = kThreadsX * kThreadsY;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of 4x4 blocks");
  static_assert((BM * kBK) % kThreads == 0 && (BN * kBK) % kThreads == 0, "tiles split evenly over the threads");
  __shared__ __align__(
      16) float a_tile[kBK][BM + 4];  // +4: rows stay 16-byte aligned, transposed stores spread over banks
  __shared__ __align__(16) float b_tile[kBK][BN + 4];

  const int tx = threadIdx.x % kThreadsX, ty = threadIdx.x / kThreadsX;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int k_begin = blockIdx.z * k_per_split;
  const int k_end = min(K, k_begin + k_per_split);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  float a_stage[BM * kBK / kThreads], b_stage[BN * kBK / kThreads];
  load_operand<BM, kThreads, !kATrans>(a, lda, m0, M, k_begin, k_end, a_stage);
  load_operand<BN, kThreads, kBTrans>(b, ldb, n0, N, k_begin, k_end, b_stage);
  for (int k0 = k_begin; k0 < k_end; k0 += kBK) {
    store_operand<BM, kThreads, !kATrans>(a_stage, a_tile);
    store_operand<BN, kThreads, kBTrans>(b_stage, b_tile);
    __syncthreads();
    if (k0 + kBK < k_end) {  // next tile's loads in flight during this tile's FMAs
      load_operand<BM, kThreads, !kATrans>(a, lda, m0, M, k0 + kBK, k_end, a_stage);
      load_operand<BN, kThreads, kBTrans>(b, ldb, n0, N, k0 + kBK, k_end, b_stage);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float av[TM], bv[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 q = *reinterpret_cast<const float4*>(&a_tile[kk][g * 4 * kThreadsY + ty * 4]);
        av[4 * g] = q.x, av[4 * g + 1] = q.y, av[4 * g + 2] = q.z, av[4 * g + 3] = q.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 q = *reinterpret_cast<const float4*>(&b_tile[kk][g * 4 * kThreadsX + tx * 4]);
        bv[4 * g] = q.x, bv[4 * g + 1] = q.y, bv[4 * g + 2] = q.z, bv[4 * g + 3] = q.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();  // the next iteration overwrites the tiles
  }

  const bool partial = gridDim.z > 1;
  float* out = partial ? c + int64_t(blockIdx.z) * M * N : c;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + (i / 4) * 4 * kThreadsY + ty * 4 + i % 4;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + (j / 4) * 4 * kThreadsX + tx * 4 + j % 4;
      if (n >= N) continue;
      out[int64_t(m) * N + n] = partial ? acc[i][j] : apply_epilogue(ep, acc[i][j], m, n, N);
    }
  }
}

// c: (M, N) = epilogue(sum over z in order of partials[z]: (M, N)).
__global__ void split_k_reduce_kernel(const float* __restrict__ partials, int splits, int M, int N,
                                      float* __restrict__ c, Epilogue ep) {
  const int64_t total = int64_t(M) * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < splits; ++z) v += partials[z * total + e];
    c[e] = apply_epilogue(ep, v, int(e / N), int(e % N), N);
  }
}

// ------------------------------------------------------------------ small kernels
int elementwise_blocks(int64_t n) { return grid_blocks(n, kBlockThreads, 65536); }

// db: (cols) = column sums of dy: (rows, cols). A block owns 32 columns; each
// of its 32 row slices sums rows slice, slice + 32, ... in double, then slice
// 0 adds the 32 partials in slice order: a fixed order, no atomics.
constexpr int kColumnSumCols = 32, kColumnSumSlices = 32;
__global__ void __launch_bounds__(kColumnSumCols* kColumnSumSlices)
    column_sum_kernel(const float* __restrict__ dy, int rows, int cols, float* __restrict__ out) {
  __shared__ double partial[kColumnSumSlices][kColumnSumCols];
  const int col = blockIdx.x * kColumnSumCols + threadIdx.x;
  const int slice = threadIdx.y;
  double acc = 0;
  if (col < cols) {
#pragma unroll 8
    for (int r = slice; r < rows; r += kColumnSumSlices) acc += dy[int64_t(r) * cols + col];
  }
  partial[slice][threadIdx.x] = acc;
  __syncthreads();
  if (slice == 0 && col < cols) {
    double sum = 0;
    for (int q = 0; q < kColumnSumSlices; ++q) sum += partial[q][threadIdx.x];
    out[col] = float(sum);
  }
}

// y: (rows, cols) = act(y + bias) in place, for the unfused cuBLAS forward.
__global__ void bias_act_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t n, int cols, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = y[i] + bias[i % cols];
    y[i] = relu && !(v > 0.f) ? 0.f : v;
  }
}

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.f ? x[i] : 0.f;
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

// Values in [-1, 1) from a hash of (seed, index): inputs for timing runs.
__global__ void fill_hash_kernel(float* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    p[i] = float(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

// ------------------------------------------------------------------ cuBLAS objects
struct BlasHandle {
  cublasHandle_t handle = nullptr;
  BlasHandle() { KD_CUBLAS_CHECK(cublasCreate(&handle)); }
  ~BlasHandle() { cublasDestroy(handle); }
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
};

struct LtHandle {
  cublasLtHandle_t handle = nullptr;
  LtHandle() { KD_CUBLAS_CHECK(cublasLtCreate(&handle)); }
  ~LtHandle() { cublasLtDestroy(handle); }
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
};

// Largest power of two (<= 256) dividing the address: what cuBLASLt may assume.
uint32_t alignment_of(const void* ptr) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  uint32_t alignment = 256;
  while (alignment > 4 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// A cuBLASLt forward y^T (out x b) = w^T-as-stored (in x out, op T) . x^T (in x b)
// with the bias (+ReLU) epilogue, and the algorithm its heuristic picked.
struct LtForwardPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t w_layout = nullptr, x_layout = nullptr, y_layout = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic = {};
  bool usable = false;  // false: Lt has no algorithm for this shape/alignment; use Sgemm + bias kernel

  LtForwardPlan(cublasLtHandle_t lt, int b, int in, int out, bool relu, uint32_t align_w, uint32_t align_x,
                uint32_t align_y) {
    KD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans_w = CUBLAS_OP_T, trans_x = CUBLAS_OP_N;
    KD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_w, sizeof trans_w));
    KD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_x, sizeof trans_x));
    const cublasLtEpilogue_t epilogue = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    KD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    KD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&w_layout, CUDA_R_32F, uint64_t(in), uint64_t(out), int64_t(in)));
    KD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&x_layout, CUDA_R_32F, uint64_t(in), uint64_t(b), int64_t(in)));
    KD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&y_layout, CUDA_R_32F, uint64_t(out), uint64_t(b), int64_t(out)));
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const uint64_t workspace = kLtWorkspaceBytes;
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace, sizeof workspace));
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &align_w, sizeof align_w));
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &align_x, sizeof align_x));
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &align_y, sizeof align_y));
    KD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &align_y, sizeof align_y));
    int found = 0;
    // NOT_SUPPORTED (no algorithm) is an answer here, not a failure.
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt, op, w_layout, x_layout, y_layout, y_layout,
                                                                 preference, 1, &heuristic, &found);
    usable = status == CUBLAS_STATUS_SUCCESS && found > 0;
  }
  ~LtForwardPlan() {
    cublasLtMatmulPreferenceDestroy(preference);
    cublasLtMatrixLayoutDestroy(y_layout);
    cublasLtMatrixLayoutDestroy(x_layout);
    cublasLtMatrixLayoutDestroy(w_layout);
    cublasLtMatmulDescDestroy(op);
  }
  LtForwardPlan(const LtForwardPlan&) = delete;
  LtForwardPlan& operator=(const LtForwardPlan&) = delete;
};

using LtPlanKey = std::tuple<int, int, int, bool, uint32_t, uint32_t, uint32_t>;  // b, in, out, relu, alignments
using ShapeKey = std::tuple<int, int, int, bool, bool>;                           // b, in, out, relu, training

}  // namespace

// ------------------------------------------------------------------ DenseContext
// The handles, workspaces and caches of one context. The workspaces are reused
// by every call, so a context serves one stream at a time (as the trainer uses
// it). Members are destroyed in reverse: plans, then handles, then the memory
// they used.
struct DenseContext::State {
  DeviceBuffer<unsigned char> blas_workspace{kBlasWorkspaceBytes, "cuBLAS workspace"};
  DeviceBuffer<unsigned char> lt_workspace{kLtWorkspaceBytes, "cuBLASLt workspace"};
  DeviceBuffer<float> split_k_partials{kSplitKFloats, "dense split-K partial sums"};
  BlasHandle blas;
  LtHandle lt;
  int sm_count = 0;
  std::map<LtPlanKey, std::unique_ptr<LtForwardPlan>> lt_plans;
  std::map<ShapeKey, DenseImpl> autoselected;

  State() {
    int device = 0;
    KD_CUDA_CHECK(cudaGetDevice(&device));
    KD_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    KD_CUBLAS_CHECK(cublasSetMathMode(blas.handle, CUBLAS_DEFAULT_MATH));  // fp32 throughout, no TF32
  }
};

DenseContext::DenseContext() : state_(std::make_unique<State>()) {}
DenseContext::~DenseContext() = default;

const char* dense_impl_name(DenseImpl impl) {
  switch (impl) {
    case DenseImpl::Custom: return "custom";
    case DenseImpl::Cublas: return "cublas";
  }
  return "unknown";
}

namespace {

// Points the cuBLAS handle at `stream` and at this context's workspace.
// cublasSetStream also resets the handle to cuBLAS's own workspace pool, which
// may allocate on first use of a stream (illegal inside graph capture), so the
// workspace is bound again after every stream change.
void bind_blas_stream(DenseContext::State& st, cudaStream_t stream) {
  KD_CUBLAS_CHECK(cublasSetStream(st.blas.handle, stream));
  KD_CUBLAS_CHECK(cublasSetWorkspace(st.blas.handle, st.blas_workspace.data(), st.blas_workspace.bytes()));
}

// C = A . B (+ epilogue) through the custom kernels; see gemm_kernel for the layouts.
template <bool kATrans, bool kBTrans>
void custom_gemm(DenseContext::State& st, const float* a, int lda, const float* b, int ldb, float* c, int M, int N,
                 int K, const Epilogue& ep, cudaStream_t stream) {
  const auto tiles = [&](int bm, int bn) { return int64_t((M + bm - 1) / bm) * ((N + bn - 1) / bn); };
  if (tiles(128, 128) >= st.sm_count) {
    const dim3 grid((M + 127) / 128, (N + 127) / 128, 1);
    launch(gemm_kernel<128, 128, 8, 8, kATrans, kBTrans>, grid, 256, 0, stream, a, lda, b, ldb, c, M, N, K, K, ep);
    KD_CUDA_CHECK_LAUNCH(gemm_kernel);
    return;
  }
  // Split K until about two blocks per SM, keeping >= kMinKTilesPerSplit k-tiles
  // per split and the partials within the workspace.
  const int64_t output_tiles = tiles(64, 64);
  const int k_tiles = (K + kBK - 1) / kBK;
  int64_t splits = (2 * int64_t(st.sm_count)) / output_tiles;
  splits = std::min<int64_t>(splits, k_tiles / kMinKTilesPerSplit);
  splits = std::min<int64_t>(splits, kMaxSplits);
  splits = std::min<int64_t>(splits, int64_t(st.split_k_partials.size() / (size_t(M) * size_t(N))));
  splits = std::max<int64_t>(splits, 1);
  const int k_per_split = int((k_tiles + splits - 1) / splits) * kBK;
  splits = (K + k_per_split - 1) / k_per_split;  // no empty split
  const dim3 grid((M + 63) / 64, (N + 63) / 64, unsigned(splits));
  float* target = splits > 1 ? st.split_k_partials.data() : c;
  launch(gemm_kernel<64, 64, 4, 4, kATrans, kBTrans>, grid, 256, 0, stream, a, lda, b, ldb, target, M, N, K,
         k_per_split, ep);
  KD_CUDA_CHECK_LAUNCH(gemm_kernel);
  if (splits > 1) {
    const int64_t n = int64_t(M) * N;
    launch(split_k_reduce_kernel, elementwise_blocks(n), kBlockThreads, 0, stream, target, int(splits), M, N, c, ep);
    KD_CUDA_CHECK_LAUNCH(split_k_reduce_kernel);
  }
}

void column_sums(const float* dy, int rows, int cols, float* out, cudaStream_t stream) {
  const dim3 block(kColumnSumCols, kColumnSumSlices);
  launch(column_sum_kernel, (cols + kColumnSumCols - 1) / kColumnSumCols, block, 0, stream, dy, rows, cols, out);
  KD_CUDA_CHECK_LAUNCH(column_sum_kernel);
}

LtForwardPlan& lt_forward_plan(DenseContext::State& st, const float* x, const float* w, float* y, int b, int in,
                               int out, bool relu) {
  const LtPlanKey key{b, in, out, relu, alignment_of(w), alignment_of(x), alignment_of(y)};
  auto it = st.lt_plans.find(key);
  if (it == st.lt_plans.end())
    it = st.lt_plans
             .emplace(key, std::make_unique<LtForwardPlan>(st.lt.handle, b, in, out, relu, std::get<4>(key),
                                                           std::get<5>(key), std::get<6>(key)))
             .first;
  return *it->second;
}

void cublas_forward(DenseContext::State& st, const float* x, const float* w, const float* bias, float* y, int b, int in,
                    int out, bool relu, cudaStream_t stream) {
  const float one = 1.0f, zero = 0.0f;
  // The Lt bias epilogue reads the bias with vector loads: it needs 16-byte alignment.
  if (alignment_of(bias) >= 16) {
    LtForwardPlan& plan = lt_forward_plan(st, x, w, y, b, in, out, relu);
    if (plan.usable) {
      KD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
      KD_CUBLAS_CHECK(cublasLtMatmul(st.lt.handle, plan.op, &one, w, plan.w_layout, x, plan.x_layout, &zero, y,
                                     plan.y_layout, y, plan.y_layout, &plan.heuristic.algo, st.lt_workspace.data(),
                                     st.lt_workspace.bytes(), stream));
      return;
    }
  }
  bind_blas_stream(st, stream);
  KD_CUBLAS_CHECK(cublasSgemm(st.blas.handle, CUBLAS_OP_T, CUBLAS_OP_N, out, b, in, &one, w, in, x, in, &zero, y, out));
  const int64_t n = int64_t(b) * out;
  launch(bias_act_kernel, elementwise_blocks(n), kBlockThreads, 0, stream, y, bias, n, out, relu);
  KD_CUDA_CHECK_LAUNCH(bias_act_kernel);
}

void cublas_backward(DenseContext::State& st, const float* x, const float* w, const float* dy, float* dx,
                     bool mask_dx_by_x, float* dw, int b, int in, int out, cudaStream_t stream) {
  const float one = 1.0f, zero = 0.0f;
  bind_blas_stream(st, stream);
  if (dx) {
    // dx^T (in x b) = w-as-stored (in x out) . dy^T (out x b)
    KD_CUBLAS_CHECK(
        cublasSgemm(st.blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, in, b, out, &one, w, in, dy, out, &zero, dx, in));
    if (mask_dx_by_x) relu_backward(x, dx, dx, int64_t(b) * in, stream);
  }
  // dw^T (in x out) = x^T (in x b) . dy (b x out), dy^T-as-stored transposed
  KD_CUBLAS_CHECK(
      cublasSgemm(st.blas.handle, CUBLAS_OP_N, CUBLAS_OP_T, in, out, b, &one, x, in, dy, out, &zero, dw, in));
}

void check_dense_shape(const char* where, int b, int in, int out) {
  if (b < 0 || in < 1 || out < 1)
    fail(std::string(where) + ": need b >= 0, in >= 1, out >= 1; got b = " + std::to_string(b) +
         ", in = " + std::to_string(in) + ", out = " + std::to_string(out));
}

}  // namespace

void dense_forward(DenseContext& ctx, DenseImpl impl, const float* x, const float* w, const float* bias, float* y,
                   int b, int in, int out, bool relu, cudaStream_t stream) {
  check_dense_shape("dense_forward", b, in, out);
  if (b == 0) return;
  if (!x || !w || !bias || !y) fail("dense_forward: x, w, bias and y must all be device pointers (one is null)");
  if (impl == DenseImpl::Cublas) return cublas_forward(ctx.state(), x, w, bias, y, b, in, out, relu, stream);
  Epilogue ep;
  ep.bias = bias;
  ep.relu = relu;
  // y (b x out) = x (b x in) . w^T, w^T(k, n) = w[n * in + k]
  custom_gemm<false, true>(ctx.state(), x, in, w, in, y, b, out, in, ep, stream);
}

void dense_backward(DenseContext& ctx, DenseImpl impl, const float* x, const float* w, const float* dy, float* dx,
                    bool mask_dx_by_x, float* dw, float* db, int b, int in, int out, cudaStream_t stream) {
  check_dense_shape("dense_backward", b, in, out);
  if (!x || !w || !dy || !dw || !db)
    fail("dense_backward: x, w, dy, dw and db must all be device pointers (one is null)");
  if (b == 0) {  // empty batch: the gradients are sums over nothing
    KD_CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(out) * in * sizeof(float), stream));
    KD_CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(out) * sizeof(float), stream));
    return;
  }
  if (impl == DenseImpl::Cublas) {
    cublas_backward(ctx.state(), x, w, dy, dx, mask_dx_by_x, dw, b, in, out, stream);
  } else {
    if (dx) {
      Epilogue ep;
      ep.mask = mask_dx_by_x ? x : nullptr;
      // dx (b x in) = dy (b x out) . w (out x in)
      custom_gemm<false, false>(ctx.state(), dy, out, w, in, dx, b, in, out, ep, stream);
    }
    // dw (out x in) = dy^T (out x b) . x (b x in), dy^T(m, k) = dy[k * out + m]
    custom_gemm<true, false>(ctx.state(), dy, out, x, in, dw, out, in, b, Epilogue{}, stream);
  }
  column_sums(dy, b, out, db, stream);
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  launch(relu_forward_kernel, elementwise_blocks(n), kBlockThreads, 0, stream, x, y, n);
  KD_CUDA_CHECK_LAUNCH(relu_forward_kernel);
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  launch(relu_backward_kernel, elementwise_blocks(n), kBlockThreads, 0, stream, y, dy, dx, n);
  KD_CUDA_CHECK_LAUNCH(relu_backward_kernel);
}

DenseImpl dense_autoselect(DenseContext& ctx, int b, int in, int out, bool relu, cudaStream_t stream, PlanUse use) {
  check_dense_shape("dense_autoselect", b, in, out);
  DenseContext::State& st = ctx.state();
  const bool training = use == PlanUse::Training;
  const ShapeKey key{b, in, out, relu, training};
  const auto known = st.autoselected.find(key);
  if (known != st.autoselected.end()) return known->second;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  KD_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail(
        "dense_autoselect: called while stream capture is active; choose the dense implementation before capturing "
        "the CUDA graph");
  if (b == 0) return st.autoselected[key] = DenseImpl::Cublas;

  // One training step's dense work (forward, then backward with dx), or the
  // forward alone, on random data of this shape, per implementation; after
  // the stream's queued work, which would otherwise run under the timing.
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  const size_t xs = size_t(b) * in, ws = size_t(out) * in, ys = size_t(b) * out;
  const size_t backward_sized = training ? 1 : 0;  // 0: an inference choice allocates no backward buffers
  DeviceBuffer<float> x(xs, "dense autoselect x"), w(ws, "dense autoselect w"), bias(out, "dense autoselect bias"),
      y(ys, "dense autoselect y"), dy(ys * backward_sized, "dense autoselect dy"),
      dx(xs * backward_sized, "dense autoselect dx"), dw(ws * backward_sized, "dense autoselect dw"),
      db(out * backward_sized, "dense autoselect db");
  uint32_t seed = 1;
  for (DeviceBuffer<float>* buf : {&x, &w, &bias, &dy}) {
    if (buf->size() == 0) continue;  // dy of an inference choice
    launch(fill_hash_kernel, elementwise_blocks(int64_t(buf->size())), kBlockThreads, 0, stream, buf->data(),
           int64_t(buf->size()), seed++);
    KD_CUDA_CHECK_LAUNCH(fill_hash_kernel);
  }
  EventTimer timer;
  constexpr int kWarmup = 2, kTimed = 7;
  const auto median_ms = [&](DenseImpl impl) {
    std::vector<float> times;
    for (int rep = 0; rep < kWarmup + kTimed; ++rep) {
      const float ms = float(timer.milliseconds(stream, [&] {
        dense_forward(ctx, impl, x.data(), w.data(), bias.data(), y.data(), b, in, out, relu, stream);
        if (training)
          dense_backward(ctx, impl, x.data(), w.data(), dy.data(), dx.data(), relu, dw.data(), db.data(), b, in, out,
                         stream);
      }));
      if (rep >= kWarmup) times.push_back(ms);
    }
    std::nth_element(times.begin(), times.begin() + kTimed / 2, times.end());
    return times[kTimed / 2];
  };
  const float custom_ms = median_ms(DenseImpl::Custom);
  const float cublas_ms = median_ms(DenseImpl::Cublas);
  return st.autoselected[key] = custom_ms < cublas_ms ? DenseImpl::Custom : DenseImpl::Cublas;
}

}  // namespace kd::cuda
