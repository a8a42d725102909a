// cuBLAS for the CUDA simulator: the handle, stream, workspace and math-mode
// calls and cublasSgemm, written from NVIDIA's cuBLAS documentation and
// computed on the host by tests/sim/sim_cublas.cpp. Enum values are the
// documented ones.
//
// Semantics modelled: column-major storage; C = alpha op(A) op(B) + beta C with
// op(X) = X (CUBLAS_OP_N) or X^T (CUBLAS_OP_T, and CUBLAS_OP_C, the same for
// real data); A is m x k after op, B k x n, C m x n. Host-pointer scalars.
// C is not read when beta == 0 (NaN there stays out of the result), A and B
// are not read when alpha == 0, and m == 0 or n == 0 returns at once.
// Checks with their documented status: a null handle answers
// CUBLAS_STATUS_NOT_INITIALIZED; m, n, k < 0, an unknown operation,
// lda < max(1, rows of A as stored) (m for OP_N, k otherwise), ldb likewise
// (k for OP_N, n otherwise), ldc < max(1, m), a null alpha or beta, or a null
// matrix that the call must read or write answer CUBLAS_STATUS_INVALID_VALUE.
// Device ranges outside a live cudaMalloc allocation are reported by the
// simulator ([kdsim] line) and answer CUBLAS_STATUS_EXECUTION_FAILED.
// Work runs on the handle's stream (cublasSetStream) through kdsim::enqueue.
//
// Limits: Sgemm only. Numerics: each element of op(A) op(B) is accumulated in
// double in k order, then alpha * sum + beta * C in double, rounded to float
// once; the vendor kernels' summation orders and TF32 under
// CUBLAS_TF32_TENSOR_OP_MATH are not modelled (the math mode is validated and
// stored, never applied). The workspace of cublasSetWorkspace is validated,
// not used; the 256-byte alignment cuBLAS asks of it is not checked.
#pragma once

#include "cuda_sim.h"

struct cublasContext;
using cublasHandle_t = cublasContext*;
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasMath_t {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16  // a flag, combined with one of the above
};
enum cublasComputeType_t {
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77
};
// From the CUDA toolkit's library_types.h, which the simulator does not provide.
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
enum libraryPropertyType { MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2 };

// The simulated cuBLAS reports version 12.0.0.
#define CUBLAS_VER_MAJOR 12
#define CUBLAS_VER_MINOR 0
#define CUBLAS_VER_PATCH 0

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value);
const char* cublasGetStatusName(cublasStatus_t status);
const char* cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream);
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes);
// a: lda x (k or m), b: ldb x (n or k), c: ldc x n, column-major; alpha, beta on the host.
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                           const float* beta, float* c, int ldc);
