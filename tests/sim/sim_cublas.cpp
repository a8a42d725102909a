// cuBLAS and cuBLASLt under the CUDA simulator (see include/cublas_v2.h and
// include/cublasLt.h for what is modelled). Both compute through gemm()
// below; each call validates its arguments first and queues only the
// arithmetic on its stream (kdsim::enqueue).
#include <algorithm>
#include <cstring>
#include <string>

#include "cublasLt.h"
#include "sim_internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
struct cublasLtContext {};
struct cublasLtMatmulDescOpaque {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const float* bias = nullptr;
};
struct cublasLtMatrixLayoutOpaque {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque {
  uint64_t max_workspace = 0;
  uint32_t min_alignment[4] = {256, 256, 256, 256};  // A, B, C, D; the documented defaults
};

namespace {

// A column-major matrix as op() sees it: element (i, j) of op(X).
struct OpView {
  const float* p;
  int64_t ld;
  bool trans;
  float at(int64_t i, int64_t j) const { return trans ? p[j + i * ld] : p[i + j * ld]; }
};

bool transposes(cublasOperation_t op) { return op == CUBLAS_OP_T || op == CUBLAS_OP_C; }  // C == T for real data

// d (m x n, ld ldd) = epilogue(alpha op(a) op(b) + beta c) with c (ld ldc) not
// read when beta == 0 and a, b not read when alpha == 0. Each element sums
// its k products in double in k order; bias (m) is added after, then ReLU.
void gemm(int64_t m, int64_t n, int64_t k, float alpha, OpView a, OpView b, float beta, const float* c, int64_t ldc,
          float* d, int64_t ldd, const float* bias, bool relu) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      double sum = 0;
      if (alpha != 0.0f)
        for (int64_t p = 0; p < k; ++p) sum += double(a.at(i, p)) * b.at(p, j);
      double v = double(alpha) * sum;
      if (beta != 0.0f) v += double(beta) * c[i + j * ldc];
      if (bias) v += bias[i];
      if (relu) v = v > 0 ? v : 0;
      d[i + j * ldd] = float(v);
    }
}

// The bytes a column-major rows x cols matrix with leading dimension ld spans.
size_t span_bytes(int64_t rows, int64_t cols, int64_t ld) {
  return rows == 0 || cols == 0 ? 0 : size_t((cols - 1) * ld + rows) * sizeof(float);
}

// A device range the call reads or writes; a bad one is reported by the
// simulator and fails the call as the illegal access would.
bool range_ok(const char* call, const char* name, const void* p, size_t bytes) {
  std::string why;
  if (kdsim::device_range_ok(p, bytes, &why)) return true;
  kdsim::report(std::string(call) + ": " + name + ": " + why);
  return false;
}

cublasStatus_t enqueue(cudaStream_t stream, const char* call, std::function<void()> work) {
  return kdsim::enqueue(stream, call, std::move(work)) == cudaSuccess ? CUBLAS_STATUS_SUCCESS
                                                                      : CUBLAS_STATUS_EXECUTION_FAILED;
}

uint32_t alignment_of(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

}  // namespace

// ------------------------------------------------------------------ cuBLAS
cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  if (!value) return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
    case MAJOR_VERSION: *value = CUBLAS_VER_MAJOR; return CUBLAS_STATUS_SUCCESS;
    case MINOR_VERSION: *value = CUBLAS_VER_MINOR; return CUBLAS_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = CUBLAS_VER_PATCH; return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
#define KDSIM_NAME(s) \
  case s: return #s;
    KDSIM_NAME(CUBLAS_STATUS_SUCCESS)
    KDSIM_NAME(CUBLAS_STATUS_NOT_INITIALIZED)
    KDSIM_NAME(CUBLAS_STATUS_ALLOC_FAILED)
    KDSIM_NAME(CUBLAS_STATUS_INVALID_VALUE)
    KDSIM_NAME(CUBLAS_STATUS_ARCH_MISMATCH)
    KDSIM_NAME(CUBLAS_STATUS_MAPPING_ERROR)
    KDSIM_NAME(CUBLAS_STATUS_EXECUTION_FAILED)
    KDSIM_NAME(CUBLAS_STATUS_INTERNAL_ERROR)
    KDSIM_NAME(CUBLAS_STATUS_NOT_SUPPORTED)
    KDSIM_NAME(CUBLAS_STATUS_LICENSE_ERROR)
#undef KDSIM_NAME
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized (null handle)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an unsupported value or parameter was passed to the function";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "the function needs a feature absent from the device architecture";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal cuBLAS operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "the functionality requested requires some license";
  }
  return "unknown cuBLAS status";
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = int(mode) & ~int(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (base < CUBLAS_DEFAULT_MATH || base > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes > 0 && !workspace) return CUBLAS_STATUS_INVALID_VALUE;
  return range_ok("cublasSetWorkspace", "workspace", workspace, bytes) ? CUBLAS_STATUS_SUCCESS
                                                                       : CUBLAS_STATUS_EXECUTION_FAILED;
}

// C (m x n, ldc) = alpha op(A) op(B) + beta C; A is m x k (OP_N, stored m x k)
// or stored k x m (OP_T); B is k x n (OP_N) or stored n x k (OP_T).
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                           const float* beta, float* c, int ldc) {
  const char* call = "cublasSgemm";
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const auto known = [](cublasOperation_t op) { return op == CUBLAS_OP_N || transposes(op); };
  if (m < 0 || n < 0 || k < 0 || !known(transa) || !known(transb)) return CUBLAS_STATUS_INVALID_VALUE;
  const int a_rows = transposes(transa) ? k : m, a_cols = transposes(transa) ? m : k;
  const int b_rows = transposes(transb) ? n : k, b_cols = transposes(transb) ? k : n;
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float al = *alpha, be = *beta;
  const bool reads_ab = al != 0.0f && k > 0;
  if (!c || (reads_ab && (!a || !b))) return CUBLAS_STATUS_INVALID_VALUE;
  if ((reads_ab && (!range_ok(call, "A", a, span_bytes(a_rows, a_cols, lda)) ||
                    !range_ok(call, "B", b, span_bytes(b_rows, b_cols, ldb)))) ||
      !range_ok(call, "C", c, span_bytes(m, n, ldc)))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  const OpView av{a, lda, transposes(transa)}, bv{b, ldb, transposes(transb)};
  return enqueue(handle->stream, call, [=] { gemm(m, n, k, al, av, bv, be, c, ldc, c, ldc, nullptr, false); });
}

// ------------------------------------------------------------------ cuBLASLt
namespace {

// The simulated Lt algorithms, in heuristic order (see cublasLt.h).
enum LtAlgo : uint64_t { kVector = 0, kSplitK = 1, kScalar = 2, kLtAlgoCount = 3 };
constexpr uint64_t kAlgoMagic = 0x6b6473696d4c7441ull;  // marks a cublasLtMatmulAlgo_t the simulation filled in

// One validated matmul: D (m x n) = op(A) (m x k) op(B) (k x n) (+ C).
struct LtProblem {
  int64_t m, n, k;
};

cublasStatus_t check_problem(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                             cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, LtProblem* out) {
  if (!desc || !a || !b || !c || !d) return CUBLAS_STATUS_INVALID_VALUE;
  const bool fp32_compute = desc->compute == CUBLAS_COMPUTE_32F || desc->compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
                            desc->compute == CUBLAS_COMPUTE_32F_FAST_16F ||
                            desc->compute == CUBLAS_COMPUTE_32F_FAST_16BF ||
                            desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  if (!fp32_compute || desc->scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  for (const cublasLtMatrixLayoutOpaque* l : {a, b, c, d}) {
    if (l->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (l->ld < int64_t(std::max<uint64_t>(1, l->rows))) return CUBLAS_STATUS_INVALID_VALUE;
  }
  const cublasLtEpilogue_t e = desc->epilogue;
  if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_RELU && e != CUBLASLT_EPILOGUE_BIAS &&
      e != CUBLASLT_EPILOGUE_RELU_BIAS)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transposes(desc->transa), tb = transposes(desc->transb);
  const uint64_t a_rows = ta ? a->cols : a->rows, a_cols = ta ? a->rows : a->cols;
  const uint64_t b_rows = tb ? b->cols : b->rows, b_cols = tb ? b->rows : b->cols;
  if (a_rows != d->rows || b_cols != d->cols || a_cols != b_rows || c->rows != d->rows || c->cols != d->cols)
    return CUBLAS_STATUS_INVALID_VALUE;
  *out = LtProblem{int64_t(d->rows), int64_t(d->cols), int64_t(a_cols)};
  return CUBLAS_STATUS_SUCCESS;
}

// Workspace an algorithm needs for the problem; kVector and kScalar need none.
size_t lt_workspace(uint64_t algo, const LtProblem& p) {
  return algo == kSplitK ? size_t(p.m * p.n * std::min<int64_t>(8, p.k / 128)) * sizeof(float) : 0;
}
bool lt_applies(uint64_t algo, const LtProblem& p) { return algo != kSplitK || p.k >= 256; }
uint32_t lt_alignment(uint64_t algo) { return algo == kVector ? 16 : 4; }

// The first algorithm from `first` on that fits the alignments (A, B, C, D)
// and the workspace limit; kLtAlgoCount when none does.
uint64_t next_fitting(uint64_t first, const LtProblem& p, const uint32_t (&alignment)[4], uint64_t max_workspace) {
  for (uint64_t algo = first; algo < kLtAlgoCount; ++algo) {
    const bool aligned = std::all_of(alignment, alignment + 4, [&](uint32_t x) { return x >= lt_alignment(algo); });
    if (lt_applies(algo, p) && aligned && lt_workspace(algo, p) <= max_workspace) return algo;
  }
  return kLtAlgoCount;
}

// Copies an attribute value of exactly sizeof(T) bytes.
template <typename T>
cublasStatus_t read_attribute(const void* buf, size_t bytes, T* out) {
  if (!buf || bytes != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(out, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;  // unlike cublasDestroy's NOT_INITIALIZED (cuBLAS 13 answers so)
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t scale) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  *desc = new cublasLtMatmulDescOpaque{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return read_attribute(buf, bytes, &desc->compute);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return read_attribute(buf, bytes, &desc->scale);
    case CUBLASLT_MATMUL_DESC_TRANSA: return read_attribute(buf, bytes, &desc->transa);
    case CUBLASLT_MATMUL_DESC_TRANSB: return read_attribute(buf, bytes, &desc->transb);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return read_attribute(buf, bytes, &desc->epilogue);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return read_attribute(buf, bytes, &desc->bias);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
  *layout = new cublasLtMatrixLayoutOpaque{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  *pref = new cublasLtMatmulPreferenceOpaque;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t bytes) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  uint32_t search_mode = 0;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: return read_attribute(buf, bytes, &search_mode);  // one mode simulated
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return read_attribute(buf, bytes, &pref->max_workspace);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return read_attribute(buf, bytes, &pref->min_alignment[0]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return read_attribute(buf, bytes, &pref->min_alignment[1]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return read_attribute(buf, bytes, &pref->min_alignment[2]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return read_attribute(buf, bytes, &pref->min_alignment[3]);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* found) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!pref || !results || !found || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  *found = 0;
  LtProblem p{};
  if (cublasStatus_t s = check_problem(desc, a, b, c, d, &p)) return s;
  for (uint64_t algo = next_fitting(0, p, pref->min_alignment, pref->max_workspace);
       algo < kLtAlgoCount && *found < requested;
       algo = next_fitting(algo + 1, p, pref->min_alignment, pref->max_workspace)) {
    cublasLtMatmulHeuristicResult_t& r = results[(*found)++];
    r = {};
    r.algo.data[0] = algo;
    r.algo.data[1] = kAlgoMagic;
    r.workspaceSize = lt_workspace(algo, p);
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
  }
  return *found > 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

// D (m x n) = epilogue(alpha op(A) op(B) + beta C); see cublasLt.h.
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* a,
                              cublasLtMatrixLayout_t a_layout, const void* b, cublasLtMatrixLayout_t b_layout,
                              const void* beta, const void* c, cublasLtMatrixLayout_t c_layout, void* d,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  const char* call = "cublasLtMatmul";
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  LtProblem p{};
  if (cublasStatus_t s = check_problem(desc, a_layout, b_layout, c_layout, d_layout, &p)) return s;
  if (!alpha || !beta || !a || !b || !d) return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  if (be != 0.0f && !c) return CUBLAS_STATUS_INVALID_VALUE;
  if (c == d && c_layout->ld != d_layout->ld) return CUBLAS_STATUS_INVALID_VALUE;  // in place needs one layout
  const bool bias_epilogue = desc->epilogue == CUBLASLT_EPILOGUE_BIAS || desc->epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  if (bias_epilogue && (!desc->bias || alignment_of(desc->bias) < sizeof(float))) return CUBLAS_STATUS_INVALID_VALUE;
  const uint32_t actual[4] = {alignment_of(a), alignment_of(b), be != 0.0f ? alignment_of(c) : 256u, alignment_of(d)};
  uint64_t chosen = algo ? algo->data[0] : next_fitting(0, p, actual, workspace ? workspace_bytes : 0);
  if (algo && (algo->data[1] != kAlgoMagic || chosen >= kLtAlgoCount)) return CUBLAS_STATUS_INVALID_VALUE;
  if (chosen >= kLtAlgoCount || !lt_applies(chosen, p)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (std::any_of(actual, actual + 4, [&](uint32_t x) { return x < lt_alignment(chosen); }))
    return CUBLAS_STATUS_INVALID_VALUE;
  const size_t needed = lt_workspace(chosen, p);
  if (needed > 0 && (!workspace || workspace_bytes < needed)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = transposes(desc->transa), tb = transposes(desc->transb);
  const bool reads_ab = al != 0.0f && p.k > 0;
  if ((reads_ab && (!range_ok(call, "A", a, span_bytes(a_layout->rows, a_layout->cols, a_layout->ld)) ||
                    !range_ok(call, "B", b, span_bytes(b_layout->rows, b_layout->cols, b_layout->ld)))) ||
      (be != 0.0f && !range_ok(call, "C", c, span_bytes(p.m, p.n, c_layout->ld))) ||
      !range_ok(call, "D", d, span_bytes(p.m, p.n, d_layout->ld)) ||
      (bias_epilogue && !range_ok(call, "bias", desc->bias, size_t(p.m) * sizeof(float))) ||
      !range_ok(call, "workspace", workspace, needed))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  const OpView av{static_cast<const float*>(a), a_layout->ld, ta}, bv{static_cast<const float*>(b), b_layout->ld, tb};
  const float* cs = static_cast<const float*>(c);
  float* ds = static_cast<float*>(d);
  const int64_t ldc = c_layout->ld, ldd = d_layout->ld;
  const float* bias = bias_epilogue ? desc->bias : nullptr;
  const bool relu = desc->epilogue == CUBLASLT_EPILOGUE_RELU || desc->epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  return enqueue(stream, call, [=] {
    if (needed > 0) std::memset(workspace, 0xA5, needed);  // the split-K partials
    gemm(p.m, p.n, p.k, al, av, bv, be, cs, ldc, ds, ldd, bias, relu);
  });
}
