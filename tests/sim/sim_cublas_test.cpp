// The simulated cuBLAS and cuBLASLt (sim_cublas.cpp) against cases worked by
// hand from the documented definitions: column-major storage, C = alpha
// op(A) op(B) + beta C, the leading-dimension rules, Lt's D = epilogue(alpha
// op(A) op(B) + beta C) with the bias per row of D, and the documented status
// of each refused call.
//
// The running example: A = [1 2 3; 4 5 6] (2 x 3), B = [7 8; 9 10; 11 12] (3 x 2),
// A B = [58 64; 139 154], column-major [58 139 64 154]. Exact in float.
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "sim_test_util.h"

namespace {

using kdsim::test::DeviceFloats;
using kdsim::test::kNaN;

const std::vector<float> kA = {1, 4, 2, 5, 3, 6};     // 2 x 3, ld 2
const std::vector<float> kB = {7, 9, 11, 8, 10, 12};  // 3 x 2, ld 3
const std::vector<float> kAB = {58, 139, 64, 154};    // 2 x 2, ld 2

struct Blas {
  cublasHandle_t handle = nullptr;
  Blas() { EXPECT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS); }
  ~Blas() { cublasDestroy(handle); }
};

TEST(SimCublas, SgemmColumnMajor) {
  Blas blas;
  const DeviceFloats a(kA), b(kB);
  DeviceFloats c(std::vector<float>(4, kNaN));
  const float one = 1, zero = 0;
  ASSERT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.get(), 2, b.get(), 3, &zero, c.get(), 2),
      CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c.read(), kAB) << "beta = 0: the NaN in C is not read";
}

// The same product from transposed storage with padded leading dimensions:
// A stored as A^T (3 x 2) with lda 4, B stored as B^T (2 x 3) with ldb 3, C
// with ldc 3. The padding holds NaN: it must be neither read nor written.
TEST(SimCublas, SgemmTransposedWithPaddedLeadingDimensions) {
  Blas blas;
  const DeviceFloats a({1, 2, 3, kNaN, 4, 5, 6, kNaN});
  const DeviceFloats b({7, 8, kNaN, 9, 10, kNaN, 11, 12, kNaN});
  DeviceFloats c(std::vector<float>(6, kNaN));
  const float one = 1, zero = 0;
  ASSERT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, &one, a.get(), 4, b.get(), 3, &zero, c.get(), 3),
      CUBLAS_STATUS_SUCCESS);
  EXPECT_TRUE(kdsim::test::same_floats(c.read(), {58, 139, kNaN, 64, 154, kNaN}));
  // OP_C is OP_T for real data.
  DeviceFloats c2(std::vector<float>(4, kNaN));
  ASSERT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_C, CUBLAS_OP_C, 2, 2, 3, &one, a.get(), 4, b.get(), 3, &zero, c2.get(), 2),
      CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c2.read(), kAB);
}

// C = 2 A B - C_old; alpha = 0 reads neither A nor B (NaN there): C = beta C.
TEST(SimCublas, SgemmAlphaBeta) {
  Blas blas;
  const DeviceFloats a(kA), b(kB), nan_a(std::vector<float>(6, kNaN));
  DeviceFloats c({1, 2, 3, 4});
  const float two = 2, minus_one = -1, zero = 0, three = 3;
  ASSERT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &two, a.get(), 2, b.get(), 3, &minus_one, c.get(), 2),
      CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c.read(), (std::vector<float>{115, 276, 125, 304}));
  ASSERT_EQ(cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &zero, nan_a.get(), 2, b.get(), 3, &three,
                        c.get(), 2),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c.read(), (std::vector<float>{345, 828, 375, 912}));
}

// The documented INVALID_VALUE cases, NOT_INITIALIZED for a null handle, and
// the quick return for an empty C. A refused call writes nothing.
TEST(SimCublas, SgemmArgumentChecks) {
  Blas blas;
  const DeviceFloats a(kA), b(kB);
  DeviceFloats c(std::vector<float>(4, kNaN));
  const float one = 1, zero = 0;
  const auto sgemm = [&](cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                         int ldb, int ldc, const float* alpha = nullptr) {
    return cublasSgemm(h, ta, tb, m, n, k, alpha ? alpha : &one, a.get(), lda, b.get(), ldb, &zero, c.get(), ldc);
  };
  EXPECT_EQ(sgemm(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 2, 3, 2), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 1, 3, 2), CUBLAS_STATUS_INVALID_VALUE)
      << "lda < m for OP_N";
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, 2, 3, 2), CUBLAS_STATUS_INVALID_VALUE)
      << "lda < k for OP_T";
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE)
      << "ldb < k for OP_N";
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_T, 2, 2, 3, 2, 1, 2), CUBLAS_STATUS_INVALID_VALUE)
      << "ldb < n for OP_T";
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 2, 3, 1), CUBLAS_STATUS_INVALID_VALUE) << "ldc < m";
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 3, 2, 3, 2), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(sgemm(blas.handle, cublasOperation_t(7), CUBLAS_OP_N, 2, 2, 3, 2, 3, 2), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, nullptr, a.get(), 2, b.get(), 3, &zero, c.get(), 2),
      CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(sgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 0, 2, 3, 1, 3, 1), CUBLAS_STATUS_SUCCESS) << "m = 0";
  EXPECT_TRUE(kdsim::test::same_floats(c.read(), std::vector<float>(4, kNaN)));
}

TEST(SimCublas, HandleSettings) {
  Blas blas;
  cublasMath_t mode = CUBLAS_DEFAULT_MATH;
  EXPECT_EQ(cublasSetMathMode(blas.handle, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasGetMathMode(blas.handle, &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_TF32_TENSOR_OP_MATH);
  EXPECT_EQ(cublasSetMathMode(blas.handle,
                              cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSetMathMode(blas.handle, cublasMath_t(5)), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSetMathMode(nullptr, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasSetStream(nullptr, nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasSetWorkspace(blas.handle, nullptr, 1024), CUBLAS_STATUS_INVALID_VALUE);
  DeviceFloats workspace(std::vector<float>(64, 0));
  EXPECT_EQ(cublasSetWorkspace(blas.handle, workspace.get(), 64 * sizeof(float)), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasDestroy(nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
  int major = 0;
  EXPECT_EQ(cublasGetProperty(MAJOR_VERSION, &major), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(major, CUBLAS_VER_MAJOR);
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_STRNE(cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED), cublasGetStatusString(CUBLAS_STATUS_SUCCESS));
}

// Work goes to the handle's stream.
TEST(SimCublas, SgemmRunsOnTheHandlesStream) {
  Blas blas;
  const DeviceFloats a(kA), b(kB);
  DeviceFloats c(std::vector<float>(4, kNaN));
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cublasSetStream(blas.handle, stream), CUBLAS_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  ASSERT_EQ(cublasGetStream(blas.handle, &got), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(got, stream);
  const float one = 1, zero = 0;
  ASSERT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.get(), 2, b.get(), 3, &zero, c.get(), 2),
      CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(c.read(), kAB);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(
      cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.get(), 2, b.get(), 3, &zero, c.get(), 2),
      CUBLAS_STATUS_EXECUTION_FAILED)
      << "the stream was destroyed";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
}

// ------------------------------------------------------------------ cuBLASLt
// A matmul of the running example: D (2 x 2) = op(A) op(B) (+ C), with the
// layouts, descriptor and preference made once.
struct Lt {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, cd = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;

  // transa: A stored as A^T (3 x 2, ld 3), as kernels/dense.cu stores w.
  explicit Lt(bool transa = false) {
    EXPECT_EQ(cublasLtCreate(&handle), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
    const cublasOperation_t op = transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op, sizeof op), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(transa ? cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, 3, 2, 3)
                     : cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, 2, 3, 2),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, 3, 2, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&cd, CUDA_R_32F, 2, 2, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  }
  ~Lt() {
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(cd);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(handle);
  }
  cublasStatus_t set_epilogue(cublasLtEpilogue_t e, const float* bias = nullptr) {
    if (bias) cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    return cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
  }
  // d = epilogue(alpha op(A) op(B) + beta c), the algorithm chosen by Lt (null algo).
  cublasStatus_t matmul(const DeviceFloats& as, const DeviceFloats& bs, const DeviceFloats& c, DeviceFloats& d,
                        float alpha = 1, float beta = 0, const cublasLtMatmulAlgo_t* algo = nullptr,
                        void* workspace = nullptr, size_t workspace_bytes = 0) {
    return cublasLtMatmul(handle, desc, &alpha, as.get(), a, bs.get(), b, &beta, c.get(), cd, d.get(), cd, algo,
                          workspace, workspace_bytes, nullptr);
  }
};

// DEFAULT, BIAS (one value per row of D, after alpha and beta), RELU_BIAS,
// RELU, each on the running example.
TEST(SimCublasLt, Epilogues) {
  Lt lt;
  const DeviceFloats a(kA), b(kB), bias({100, 200}), shift({-60, -150});
  DeviceFloats d(std::vector<float>(4, kNaN));
  ASSERT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_SUCCESS) << "C = D in place, beta = 0: the NaN is not read";
  EXPECT_EQ(d.read(), kAB);
  ASSERT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_BIAS, bias.get()), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.read(), (std::vector<float>{158, 339, 164, 354}));
  // [58-60, 139-150, 64-60, 154-150] -> relu: [0 0 4 4]
  ASSERT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_RELU_BIAS, shift.get()), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.read(), (std::vector<float>{0, 0, 4, 4}));
  // relu(A B + C), C = [-100 0 0 -200]: [-42 139 64 -46] -> [0 139 64 0]
  ASSERT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_RELU), CUBLAS_STATUS_SUCCESS);
  const DeviceFloats c({-100, 0, 0, -200});
  ASSERT_EQ(lt.matmul(a, b, c, d, 1, 1), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.read(), (std::vector<float>{0, 139, 64, 0}));
}

// TRANSA = T over A stored transposed, as kernels/dense.cu multiplies by w.
TEST(SimCublasLt, TransposedA) {
  Lt lt(/*transa=*/true);
  const DeviceFloats a({1, 2, 3, 4, 5, 6}), b(kB);
  DeviceFloats d(std::vector<float>(4, kNaN));
  ASSERT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.read(), kAB);
}

// Heuristic results honour the preference: the vector algorithm only for
// 16-byte alignment, split-K (k >= 256) only within the workspace limit, and
// each result's workspaceSize is what cublasLtMatmul then needs.
TEST(SimCublasLt, HeuristicHonoursAlignmentAndWorkspace) {
  cublasLtHandle_t handle;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulPreference_t pref;
  ASSERT_EQ(cublasLtCreate(&handle), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  const int m = 3, n = 2, k = 300;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, m, k, m), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, k, n, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, m, n, m), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulHeuristicResult_t results[4];
  int found = 0;
  // Defaults: 256-byte alignment, no workspace: vector, then scalar.
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 4, results, &found), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(found, 2);
  EXPECT_EQ(results[0].workspaceSize, 0u);
  EXPECT_EQ(results[1].workspaceSize, 0u);
  const size_t split_bytes = size_t(m) * n * 2 * sizeof(float);  // min(8, 300 / 128) = 2 splits
  const uint64_t limit = split_bytes;
  const uint32_t four = 4;
  ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit, sizeof limit),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &four, sizeof four),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 4, results, &found), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(found, 2) << "A only 4-byte aligned: split-K, then scalar";
  EXPECT_EQ(results[0].workspaceSize, split_bytes);
  EXPECT_EQ(results[0].state, CUBLAS_STATUS_SUCCESS);
  const uint64_t too_small = split_bytes - 1;
  ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &too_small,
                                                 sizeof too_small),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 4, results, &found), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(found, 1);
  EXPECT_EQ(results[0].workspaceSize, 0u);
  EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 0, results, &found),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &four, sizeof four),
            CUBLAS_STATUS_INVALID_VALUE)
      << "a uint32 for a uint64 attribute";

  // Split-K with its workspace computes A B; the workspace is written; one byte short is refused.
  ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit, sizeof limit),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 1, results, &found), CUBLAS_STATUS_SUCCESS);
  std::vector<float> av(size_t(m) * k, 1.0f), bv(size_t(k) * n, 0.5f);
  const DeviceFloats as(av), bs(bv);
  DeviceFloats d(std::vector<float>(size_t(m) * n, kNaN)), workspace(std::vector<float>(m * n * 2, 0.0f));
  const float one = 1, zero = 0;
  EXPECT_EQ(cublasLtMatmul(handle, desc, &one, as.get(), a, bs.get(), b, &zero, d.get(), c, d.get(), c,
                           &results[0].algo, workspace.get(), split_bytes - 1, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_EQ(cublasLtMatmul(handle, desc, &one, as.get(), a, bs.get(), b, &zero, d.get(), c, d.get(), c,
                           &results[0].algo, workspace.get(), split_bytes, nullptr),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.read(), std::vector<float>(size_t(m) * n, 150.0f));
  EXPECT_NE(workspace.read(), std::vector<float>(m * n * 2, 0.0f)) << "split-K uses its workspace";

  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(handle);
}

// The documented refusals of cublasLtMatmul and of the attribute setters.
TEST(SimCublasLt, ArgumentChecks) {
  Lt lt;
  const DeviceFloats a(kA), b(kB), shifted(std::vector<float>(5, 1.0f));
  DeviceFloats d(std::vector<float>(4, kNaN));
  const float one = 1, zero = 0;
  EXPECT_EQ(cublasLtMatmul(nullptr, lt.desc, &one, a.get(), lt.a, b.get(), lt.b, &zero, d.get(), lt.cd, d.get(), lt.cd,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, a.get(), lt.b, b.get(), lt.b, &zero, d.get(), lt.cd, d.get(),
                           lt.cd, nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE)
      << "op(A) is 3 x 2 for a 2 x 2 D";
  EXPECT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, nullptr, lt.a, b.get(), lt.b, &zero, d.get(), lt.cd, d.get(),
                           lt.cd, nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_BIAS), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_INVALID_VALUE) << "BIAS without a bias pointer";
  EXPECT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_DRELU), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_NOT_SUPPORTED) << "a gradient epilogue";
  EXPECT_EQ(lt.set_epilogue(CUBLASLT_EPILOGUE_DEFAULT), CUBLAS_STATUS_SUCCESS);

  // The vector algorithm chosen explicitly, with an A only 4-byte aligned.
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(lt.handle, lt.desc, lt.a, lt.b, lt.cd, lt.cd, lt.pref, 1, &result, &found),
            CUBLAS_STATUS_SUCCESS);
  const DeviceFloats a_plus_one({0, 1, 4, 2, 5, 3, 6});
  EXPECT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, a_plus_one.get() + 1, lt.a, b.get(), lt.b, &zero, d.get(), lt.cd,
                           d.get(), lt.cd, &result.algo, nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatmulAlgo_t garbage = {};
  EXPECT_EQ(lt.matmul(a, b, d, d, 1, 0, &garbage), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_TRUE(kdsim::test::same_floats(d.read(), std::vector<float>(4, kNaN))) << "refused calls write nothing";
  ASSERT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, a_plus_one.get() + 1, lt.a, b.get(), lt.b, &zero, d.get(), lt.cd,
                           d.get(), lt.cd, nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS)
      << "without an algorithm, one that takes 4-byte alignment";
  EXPECT_EQ(d.read(), kAB);

  // ld below rows; non-fp32 types; attribute buffers of the wrong size.
  cublasLtMatrixLayout_t bad;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, 2, 2, 1), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, a.get(), lt.a, b.get(), lt.b, &zero, d.get(), bad, d.get(), bad,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatrixLayoutDestroy(bad);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&bad, CUDA_R_16F, 2, 2, 2), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmul(lt.handle, lt.desc, &one, a.get(), lt.a, b.get(), lt.b, &zero, d.get(), bad, d.get(), bad,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_NOT_SUPPORTED);
  cublasLtMatrixLayoutDestroy(bad);
  const cudaDataType_t f64 = CUDA_R_64F;
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(lt.desc, CUBLASLT_MATMUL_DESC_SCALE_TYPE, &f64, sizeof f64),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(lt.matmul(a, b, d, d), CUBLAS_STATUS_NOT_SUPPORTED);
  const cublasOperation_t op = CUBLAS_OP_T;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(lt.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op, 2), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(lt.desc, cublasLtMatmulDescAttributes_t(99), &op, sizeof op),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtDestroy(nullptr), CUBLAS_STATUS_INVALID_VALUE);
}

}  // namespace
