// cuBLASLt for the CUDA simulator: matmul descriptors, matrix layouts,
// preferences, the algorithm heuristic and cublasLtMatmul, written from
// NVIDIA's cuBLASLt documentation and computed on the host by
// tests/sim/sim_cublas.cpp (with cublasSgemm's arithmetic). Enum values are
// the documented ones.
//
// Semantics modelled: D = epilogue(alpha op(A) op(B) + beta C) with
// column-major layouts (rows, cols, ld), op from CUBLASLT_MATMUL_DESC_TRANSA /
// TRANSB; m, n = D's rows and cols, k = op(A)'s cols. Epilogues DEFAULT,
// RELU, BIAS and RELU_BIAS: the bias (CUBLASLT_MATMUL_DESC_BIAS_POINTER, one
// float per row of D) is added after alpha and beta, then ReLU (max(v, 0),
// NaN -> 0). C is not read when beta == 0; C may be D (in place) when their
// layouts are equal.
// Algorithms (cublasLtMatmulAlgo_t holds the id): 0 "vector", which needs A,
// B, C and D 16-byte aligned and no workspace; 1 "split-K" for k >= 256,
// which needs m n min(8, k / 128) floats of workspace (so workspace handling
// is exercised: it writes a pattern over them); 2 "scalar", any alignment, no
// workspace. cublasLtMatmulAlgoGetHeuristic answers them in that order,
// keeping those that the preference's MIN_ALIGNMENT_*_BYTES (default 256) and
// MAX_WORKSPACE_BYTES (default 0) allow. cublasLtMatmul checks the chosen
// algorithm against the actual pointers and workspace (algo == null: the
// first one that fits them).
// Checks with their documented status: a null handle answers
// CUBLAS_STATUS_NOT_INITIALIZED (cublasLtDestroy's INVALID_VALUE, as the
// installed cuBLAS 13.1 answers without a GPU, as it does the attribute-size
// checks below; the rest needs a handle, so follows the docs); null descriptors, layouts, scalars or
// matrices, op(A), op(B), C and D whose dimensions disagree, ld < rows, a
// bias epilogue without a bias pointer, a workspace smaller than the algorithm
// needs, pointers less aligned than it needs, an attribute buffer of the
// wrong size: CUBLAS_STATUS_INVALID_VALUE; a compute type other than the
// 32F ones, a scale or matrix type other than CUDA_R_32F, or another epilogue:
// CUBLAS_STATUS_NOT_SUPPORTED. Bad device ranges: as in cublas_v2.h.
//
// Limits: no batching, no row-major or other orders (layouts are always
// CUBLASLT_ORDER_COL), host pointer mode only, descriptor attributes beyond
// those listed in the enum below are refused (INVALID_VALUE). Numerics as
// cublasSgemm's; the FAST_* compute types are computed in full precision.
#pragma once

#include "cublas_v2.h"

struct cublasLtContext;
struct cublasLtMatmulDescOpaque;
struct cublasLtMatrixLayoutOpaque;
struct cublasLtMatmulPreferenceOpaque;
using cublasLtHandle_t = cublasLtContext*;
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque*;
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque*;
using cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque*;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
// Value types: COMPUTE_TYPE int32 (cublasComputeType_t), SCALE_TYPE int32
// (cudaDataType_t), TRANSA / TRANSB int32 (cublasOperation_t), EPILOGUE
// uint32 (cublasLtEpilogue_t), BIAS_POINTER a device pointer.
enum cublasLtMatmulDescAttributes_t {
  CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
  CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
};
enum cublasLtEpilogue_t {
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_RELU = 2,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_RELU_BIAS = 6,  // RELU | BIAS
  CUBLASLT_EPILOGUE_DRELU = 8,      // gradient epilogues: declared, answered NOT_SUPPORTED
  CUBLASLT_EPILOGUE_BGRADA = 256,
  CUBLASLT_EPILOGUE_BGRADB = 512,
};
// Value types: SEARCH_MODE uint32, MAX_WORKSPACE_BYTES uint64, MIN_ALIGNMENT_* uint32.
enum cublasLtMatmulPreferenceAttributes_t {
  CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes);
// rows x cols, column-major with leading dimension ld (elements).
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t bytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* found);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* a,
                              cublasLtMatrixLayout_t a_layout, const void* b, cublasLtMatrixLayout_t b_layout,
                              const void* beta, const void* c, cublasLtMatrixLayout_t c_layout, void* d,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream);
