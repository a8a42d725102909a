// The simulated cuDNN (sim_cudnn.cpp) against cases worked by hand from the
// documented definitions: output size 1 + (in + 2 pad - ((k - 1) dil + 1)) / stride,
// cross-correlation y(i, j) = sum x(i stride - pad + r dil, j stride - pad + s dil) w(r, s)
// (CUDNN_CONVOLUTION: w flipped), out = alpha result + beta out, the fused
// y = act(alpha1 conv + alpha2 z + bias), the backward passes as adjoints of
// the forward one, and the documented status of each refused call.
//
// The running example: x = 3x3 [1 2 3; 4 5 6; 7 8 9], w = 2x2 [1 2; 3 4].
// Cross-correlation, stride 1, no padding:
//   y = [1+4+12+20  2+6+15+24; 4+10+21+32  5+12+24+36] = [37 47; 67 77];
// convolution (w flipped to [4 3; 2 1]): y = [23 33; 53 63].
// Every expected value is exact in float (small integers), so the checks
// are exact.
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sim_test_util.h"

namespace {

using kdsim::test::DeviceFloats;
using kdsim::test::kNaN;

const std::vector<float> kX3x3 = {1, 2, 3, 4, 5, 6, 7, 8, 9};
const std::vector<float> kW2x2 = {1, 2, 3, 4};

// A handle and the descriptors of one convolution, NCHW fp32.
struct Conv {
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnActivationDescriptor_t act = nullptr;
  int n, c, h, wd, k, r, s;  // x (n, c, h, wd), w (k, c, r, s)

  // y gets the output size the descriptors imply.
  Conv(int n_, int c_, int h_, int w_, int k_, int r_, int s_, int pad = 0, int stride = 1, int dilation = 1,
       cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION)
      : n(n_), c(c_), h(h_), wd(w_), k(k_), r(r_), s(s_) {
    EXPECT_EQ(cudnnCreate(&handle), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&y), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&bias), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateFilterDescriptor(&w), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateConvolutionDescriptor(&conv), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateActivationDescriptor(&act), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, wd), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, r, s), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(
        cudnnSetConvolution2dDescriptor(conv, pad, pad, stride, stride, dilation, dilation, mode, CUDNN_DATA_FLOAT),
        CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), CUDNN_STATUS_SUCCESS);
    int yn = 0, yc = 0, yh = 0, yw = 0;
    EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &yn, &yc, &yh, &yw), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, yn, yc, yh, yw), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, k, 1, 1), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
              CUDNN_STATUS_SUCCESS);
  }
  ~Conv() {
    cudnnDestroyActivationDescriptor(act);
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(bias);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroy(handle);
  }
  size_t y_count() const {
    int yn, yc, yh, yw;
    cudnnGetConvolution2dForwardOutputDim(conv, x, w, &yn, &yc, &yh, &yw);
    return size_t(yn) * yc * yh * yw;
  }

  // y = alpha conv(x, w) + beta y, with IMPLICIT_GEMM (no workspace).
  cudnnStatus_t forward(const DeviceFloats& xs, const DeviceFloats& ws, DeviceFloats& ys, float alpha = 1,
                        float beta = 0, cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                        void* workspace = nullptr, size_t workspace_bytes = 0) {
    return cudnnConvolutionForward(handle, &alpha, x, xs.get(), w, ws.get(), conv, algo, workspace, workspace_bytes,
                                   &beta, y, ys.get());
  }
  cudnnStatus_t backward_data(const DeviceFloats& ws, const DeviceFloats& dy, DeviceFloats& dx, float alpha = 1,
                              float beta = 0) {
    return cudnnConvolutionBackwardData(handle, &alpha, w, ws.get(), y, dy.get(), conv,
                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &beta, x, dx.get());
  }
  cudnnStatus_t backward_filter(const DeviceFloats& xs, const DeviceFloats& dy, DeviceFloats& dw, float alpha = 1,
                                float beta = 0) {
    return cudnnConvolutionBackwardFilter(handle, &alpha, x, xs.get(), y, dy.get(), conv,
                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &beta, w, dw.get());
  }
  // y = act(alpha1 conv(x, w) + alpha2 z + bias) with z = y.
  cudnnStatus_t fused(const DeviceFloats& xs, const DeviceFloats& ws, const DeviceFloats& bs, DeviceFloats& ys,
                      float alpha2, cudnnConvolutionFwdAlgo_t algo, void* workspace = nullptr,
                      size_t workspace_bytes = 0) {
    const float alpha1 = 1;
    return cudnnConvolutionBiasActivationForward(handle, &alpha1, x, xs.get(), w, ws.get(), conv, algo, workspace,
                                                 workspace_bytes, &alpha2, y, ys.get(), bias, bs.get(), act, y,
                                                 ys.get());
  }
};

std::string last_error() {
  char message[512];
  cudnnGetLastErrorString(message, sizeof message);
  return message;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += double(a[i]) * b[i];
  return sum;
}

TEST(SimCudnn, OutputDimFollowsTheDocumentedFormula) {
  struct Case {
    int h, k, pad, stride, dilation, expected;
  };
  // 1 + (5 + 2 - 3) / 2 = 3; 1 + (6 + 2 - 2) / 2 = 4; 1 + (7 - 5) / 1 = 3 (dilated span 5); 1 + (28 - 3) / 1 = 26.
  for (const Case& t :
       {Case{5, 3, 1, 2, 1, 3}, Case{6, 2, 1, 2, 1, 4}, Case{7, 3, 0, 1, 2, 3}, Case{28, 3, 0, 1, 1, 26}}) {
    SCOPED_TRACE(testing::Message() << "h " << t.h << " k " << t.k << " pad " << t.pad << " stride " << t.stride
                                    << " dilation " << t.dilation);
    Conv c(2, 3, t.h, t.h + 1, 4, t.k, t.k, t.pad, t.stride, t.dilation);
    int n, k, h, w;
    ASSERT_EQ(cudnnGetConvolution2dForwardOutputDim(c.conv, c.x, c.w, &n, &k, &h, &w), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(k, 4);
    EXPECT_EQ(h, t.expected);
    EXPECT_EQ(w, 1 + (t.h + 1 + 2 * t.pad - ((t.k - 1) * t.dilation + 1)) / t.stride);
  }
}

TEST(SimCudnn, ForwardCrossCorrelationAndConvolution) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(4, kNaN));
  Conv xcorr(1, 1, 3, 3, 1, 2, 2);
  ASSERT_EQ(xcorr.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{37, 47, 67, 77}));
  Conv convolution(1, 1, 3, 3, 1, 2, 2, 0, 1, 1, CUDNN_CONVOLUTION);
  ASSERT_EQ(convolution.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{23, 33, 53, 63}));
}

// Stride 2, pad 1: output 1 + (3 + 2 - 2) / 2 = 2; window (i, j) starts at
// (2i - 1, 2j - 1), so y(0,0) = x(0,0) w(1,1) = 4, y(0,1) = 2*3 + 3*4 = 18,
// y(1,0) = 4*2 + 7*4 = 36, y(1,1) = 5*1 + 6*2 + 8*3 + 9*4 = 77.
TEST(SimCudnn, ForwardStrideAndPadding) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(4, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2, /*pad=*/1, /*stride=*/2);
  ASSERT_EQ(c.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{4, 18, 36, 77}));
}

// Dilation 2: the 2x2 filter spans 3x3 and touches the corners: 1*1 + 3*2 + 7*3 + 9*4 = 64.
TEST(SimCudnn, ForwardDilation) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(1, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2, 0, 1, /*dilation=*/2);
  ASSERT_EQ(c.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{64}));
}

// Two input channels, two filters of 1x1 (KCRS: w[k][c]): y_k = sum_c w[k][c] x_c.
// x_0 = [1 2 3 4], x_1 = [5 6 7 8]; w = [[1 10], [2 -1]] -> y_0 = [51 62 73 84], y_1 = [-3 -2 -1 0].
// The same x stored NHWC (channels interleaved) gives the same y.
TEST(SimCudnn, ForwardSumsChannelsInKcrsAndReadsNhwc) {
  const DeviceFloats w({1, 10, 2, -1});
  DeviceFloats y(std::vector<float>(8, kNaN));
  Conv c(1, 2, 2, 2, 2, 1, 1);
  const std::vector<float> expected = {51, 62, 73, 84, -3, -2, -1, 0};
  const DeviceFloats x_nchw({1, 2, 3, 4, 5, 6, 7, 8});
  ASSERT_EQ(c.forward(x_nchw, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), expected);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 2, 2, 2), CUDNN_STATUS_SUCCESS);
  const DeviceFloats x_nhwc({1, 5, 2, 6, 3, 7, 4, 8});
  ASSERT_EQ(c.forward(x_nhwc, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), expected);
}

// y described with explicit strides (rows 3 apart): the 2x2 result lands at
// 0, 1, 3, 4 and the gaps keep their NaN.
TEST(SimCudnn, ForwardWritesThroughExplicitStrides) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(6, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2);
  ASSERT_EQ(cudnnSetTensor4dDescriptorEx(c.y, CUDNN_DATA_FLOAT, 1, 1, 2, 2, 6, 6, 3, 1), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(c.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  EXPECT_TRUE(kdsim::test::same_floats(y.read(), {37, 47, kNaN, 67, 77, kNaN}));
}

// y = 2 [37 47 67 77] + 0.5 [10 20 30 40]; with beta = 0 a NaN y is not read.
TEST(SimCudnn, AlphaBetaBlending) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  Conv c(1, 1, 3, 3, 1, 2, 2);
  DeviceFloats y({10, 20, 30, 40});
  ASSERT_EQ(c.forward(x, w, y, 2.0f, 0.5f), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{79, 104, 149, 174}));
  DeviceFloats poisoned(std::vector<float>(4, kNaN));
  ASSERT_EQ(c.forward(x, w, poisoned, 2.0f, 0.0f), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(poisoned.read(), (std::vector<float>{74, 94, 134, 154}));
}

// relu(conv + z + bias) with z = [-100 0 1 2], bias -40: [37-140, 47-40, 67-39, 77-38] -> [0 7 28 39].
// alpha2 = 0: z (NaN here) is not read: relu([37 47 67 77] - 40) = [0 7 27 37].
// IDENTITY (only with IMPLICIT_PRECOMP_GEMM): [-103 7 28 39] unclipped.
TEST(SimCudnn, BiasActivationForward) {
  const DeviceFloats x(kX3x3), w(kW2x2), bias({-40});
  Conv c(1, 1, 3, 3, 1, 2, 2);
  DeviceFloats y({-100, 0, 1, 2});
  ASSERT_EQ(c.fused(x, w, bias, y, 1.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(y.read(), (std::vector<float>{0, 7, 28, 39}));
  DeviceFloats poisoned(std::vector<float>(4, kNaN));
  ASSERT_EQ(c.fused(x, w, bias, poisoned, 0.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(poisoned.read(), (std::vector<float>{0, 7, 27, 37}));

  ASSERT_EQ(cudnnSetActivationDescriptor(c.act, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0),
            CUDNN_STATUS_SUCCESS);
  DeviceFloats z({-100, 0, 1, 2});
  EXPECT_EQ(c.fused(x, w, bias, z, 1.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), CUDNN_STATUS_NOT_SUPPORTED);
  size_t bytes = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(c.handle, c.x, c.w, c.conv, c.y,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, &bytes),
            CUDNN_STATUS_SUCCESS);
  DeviceFloats workspace(std::vector<float>(bytes / sizeof(float) + 1, 0));
  ASSERT_EQ(c.fused(x, w, bias, z, 1.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, workspace.get(), bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(z.read(), (std::vector<float>{-103, 7, 28, 39}));

  ASSERT_EQ(cudnnSetActivationDescriptor(c.act, CUDNN_ACTIVATION_SIGMOID, CUDNN_NOT_PROPAGATE_NAN, 0.0),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(c.fused(x, w, bias, z, 1.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), CUDNN_STATUS_NOT_SUPPORTED);
  ASSERT_EQ(cudnnSetActivationDescriptor(c.act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 1, 1), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(c.fused(x, w, bias, z, 1.0f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), CUDNN_STATUS_BAD_PARAM)
      << "a bias of 2 channels for a 1-channel output";
}

// dy with a single 1 at (i, j) puts w (flipped for CUDNN_CONVOLUTION) into dx
// at (i, j); two 1s add up. dw for a single 1 at (i, j) is the 2x2 window of x there.
TEST(SimCudnn, BackwardDataAndFilterHandWorked) {
  const DeviceFloats x(kX3x3), w(kW2x2), dy({1, 0, 0, 1});
  DeviceFloats dx(std::vector<float>(9, kNaN)), dw(std::vector<float>(4, kNaN));
  Conv xcorr(1, 1, 3, 3, 1, 2, 2);
  ASSERT_EQ(xcorr.backward_data(w, dy, dx), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dx.read(), (std::vector<float>{1, 2, 0, 3, 5, 2, 0, 3, 4}));
  ASSERT_EQ(xcorr.backward_filter(x, dy, dw), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dw.read(), (std::vector<float>{1 + 5, 2 + 6, 4 + 8, 5 + 9}));
  // alpha 2, beta 1 over dw = [1 2 4 5] + ... : 2 [6 8 12 14] + [6 8 12 14].
  ASSERT_EQ(xcorr.backward_filter(x, dy, dw, 2.0f, 1.0f), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dw.read(), (std::vector<float>{18, 24, 36, 42}));

  Conv convolution(1, 1, 3, 3, 1, 2, 2, 0, 1, 1, CUDNN_CONVOLUTION);
  const DeviceFloats first({1, 0, 0, 0});
  ASSERT_EQ(convolution.backward_data(w, first, dx), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dx.read(), (std::vector<float>{4, 3, 0, 2, 1, 0, 0, 0, 0}));
  ASSERT_EQ(convolution.backward_filter(x, first, dw), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dw.read(), (std::vector<float>{5, 4, 2, 1})) << "the window of x, flipped";
}

// The backward passes are the forward pass's adjoints: <conv(x, w), dy> =
// <x, bwd_data(dy, w)> = <w, bwd_filter(x, dy)>, on a shape with every
// parameter at work (2 images, 3 -> 2 channels, stride 2, pad 1, dilation 2)
// and in both modes. Exact up to float rounding of the outputs (~1e-7).
TEST(SimCudnn, BackwardPassesAreAdjointsOfTheForwardPass) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  const auto random = [&](size_t n) {
    std::vector<float> v(n);
    for (float& e : v) e = u(rng);
    return v;
  };
  for (const cudnnConvolutionMode_t mode : {CUDNN_CROSS_CORRELATION, CUDNN_CONVOLUTION}) {
    Conv c(2, 3, 9, 8, 2, 3, 2, /*pad=*/1, /*stride=*/2, /*dilation=*/2, mode);
    const std::vector<float> xv = random(2 * 3 * 9 * 8), wv = random(2 * 3 * 3 * 2), dyv = random(c.y_count());
    const DeviceFloats x(xv), w(wv), dy(dyv);
    DeviceFloats y(std::vector<float>(c.y_count(), kNaN)), dx(std::vector<float>(xv.size(), kNaN)),
        dw(std::vector<float>(wv.size(), kNaN));
    ASSERT_EQ(c.forward(x, w, y), CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(c.backward_data(w, dy, dx), CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(c.backward_filter(x, dy, dw), CUDNN_STATUS_SUCCESS);
    const double forward = dot(y.read(), dyv);
    EXPECT_NEAR(dot(xv, dx.read()), forward, 1e-5) << "backward data, mode " << mode;
    EXPECT_NEAR(dot(wv, dw.read()), forward, 1e-5) << "backward filter, mode " << mode;
  }
}

// db = sum of dy over (n, h, w) per channel: dy n0 = [[1 2], [3 4]], n1 = [[5 6], [7 8]]
// (c, w) -> [1+2+5+6, 3+4+7+8] = [14 22]; beta 1 adds the old db.
TEST(SimCudnn, BackwardBias) {
  cudnnHandle_t handle;
  cudnnTensorDescriptor_t dy_desc, db_desc;
  ASSERT_EQ(cudnnCreate(&handle), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnCreateTensorDescriptor(&dy_desc), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnCreateTensorDescriptor(&db_desc), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(dy_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 2, 1, 2), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(db_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 1, 1), CUDNN_STATUS_SUCCESS);
  const DeviceFloats dy({1, 2, 3, 4, 5, 6, 7, 8});
  DeviceFloats db({1, 1});
  const float one = 1;
  ASSERT_EQ(cudnnConvolutionBackwardBias(handle, &one, dy_desc, dy.get(), &one, db_desc, db.get()),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(db.read(), (std::vector<float>{15, 23}));
  ASSERT_EQ(cudnnSetTensor4dDescriptor(db_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 1, 1), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnConvolutionBackwardBias(handle, &one, dy_desc, dy.get(), &one, db_desc, db.get()),
            CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(db_desc);
  cudnnDestroyTensorDescriptor(dy_desc);
  cudnnDestroy(handle);
}

// Find: every algorithm once, the supported ones first by non-decreasing
// time, then the unsupported ones; _v7: the same set in heuristic order.
// Memory equals the workspace-size query; determinism as documented.
TEST(SimCudnn, AlgorithmSearchAndWorkspaceSizes) {
  Conv c(2, 3, 8, 8, 4, 3, 3, /*pad=*/1, /*stride=*/2);  // stride 2: no FFT or Winograd
  int count = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithmMaxCount(c.handle, &count), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(count, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  std::vector<cudnnConvolutionFwdAlgoPerf_t> found(count), ranked(count);
  int returned = 0;
  ASSERT_EQ(cudnnFindConvolutionForwardAlgorithm(c.handle, c.x, c.w, c.conv, c.y, count, &returned, found.data()),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(returned, count);
  int supported = 0;
  for (int i = 0; i < returned; ++i) {
    const auto& p = found[i];
    SCOPED_TRACE(testing::Message() << "algorithm " << p.algo);
    size_t bytes = 0;
    const cudnnStatus_t size_status =
        cudnnGetConvolutionForwardWorkspaceSize(c.handle, c.x, c.w, c.conv, c.y, p.algo, &bytes);
    EXPECT_EQ(size_status, p.status);
    if (p.status == CUDNN_STATUS_SUCCESS) {
      EXPECT_EQ(i, supported++) << "supported algorithms come first";
      EXPECT_EQ(p.memory, bytes);
      if (i > 0) {
        EXPECT_LE(found[i - 1].time, p.time);
      }
    }
    EXPECT_EQ(p.mathType, CUDNN_FMA_MATH);
    EXPECT_EQ(p.determinism, CUDNN_DETERMINISTIC);
  }
  EXPECT_EQ(supported, 3) << "IMPLICIT_GEMM, IMPLICIT_PRECOMP_GEMM and GEMM take stride 2";
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(c.handle, c.x, c.w, c.conv, c.y, 2, &returned, ranked.data()),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(returned, 2);
  EXPECT_EQ(ranked[0].algo, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
  size_t gemm_bytes = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(c.handle, c.x, c.w, c.conv, c.y, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                                                    &gemm_bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(gemm_bytes, size_t(3 * 3 * 3) * 4 * 4 * sizeof(float)) << "one image's im2col: (c r s) x (oh ow)";
  EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(c.handle, c.x, c.w, c.conv, c.y, 0, &returned, ranked.data()),
            CUDNN_STATUS_BAD_PARAM);

  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> data(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  ASSERT_EQ(cudnnFindConvolutionBackwardDataAlgorithm(c.handle, c.w, c.y, c.conv, c.x, int(data.size()), &returned,
                                                      data.data()),
            CUDNN_STATUS_SUCCESS);
  for (int i = 0; i < returned; ++i)
    EXPECT_EQ(data[i].determinism == CUDNN_NON_DETERMINISTIC, data[i].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> filter(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  ASSERT_EQ(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c.handle, c.x, c.y, c.conv, c.w, int(filter.size()),
                                                          &returned, filter.data()),
            CUDNN_STATUS_SUCCESS);
  for (int i = 0; i < returned; ++i) {
    const bool nondeterministic =
        filter[i].algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || filter[i].algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
    EXPECT_EQ(filter[i].determinism == CUDNN_NON_DETERMINISTIC, nondeterministic) << filter[i].algo;
  }
}

// Every supported forward algorithm gives the hand-worked result with its
// workspace; one byte less, or none, is BAD_PARAM; an algorithm the shape
// does not support (DIRECT; the Winograd ones for a 2x2 filter) is NOT_SUPPORTED.
TEST(SimCudnn, AlgorithmsNeedTheirWorkspace) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(4, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2);
  int tested = 0;
  for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) {
    const auto algo = cudnnConvolutionFwdAlgo_t(a);
    SCOPED_TRACE(testing::Message() << "algorithm " << a);
    size_t bytes = 0;
    const cudnnStatus_t status = cudnnGetConvolutionForwardWorkspaceSize(c.handle, c.x, c.w, c.conv, c.y, algo, &bytes);
    if (algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT || algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
        algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED) {
      EXPECT_EQ(status, CUDNN_STATUS_NOT_SUPPORTED);
      EXPECT_EQ(c.forward(x, w, y, 1, 0, algo), CUDNN_STATUS_NOT_SUPPORTED);
      continue;
    }
    ASSERT_EQ(status, CUDNN_STATUS_SUCCESS);
    DeviceFloats workspace(std::vector<float>(bytes / sizeof(float) + 1, 0));
    if (bytes > 0) {
      EXPECT_EQ(c.forward(x, w, y, 1, 0, algo, workspace.get(), bytes - 1), CUDNN_STATUS_BAD_PARAM);
      EXPECT_EQ(c.forward(x, w, y, 1, 0, algo, nullptr, bytes), CUDNN_STATUS_BAD_PARAM);
    }
    DeviceFloats fresh(std::vector<float>(4, kNaN));
    ASSERT_EQ(c.forward(x, w, fresh, 1, 0, algo, workspace.get(), bytes), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(fresh.read(), (std::vector<float>{37, 47, 67, 77}));
    ++tested;
  }
  EXPECT_EQ(tested, 5);
  size_t gemm_bytes = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(c.handle, c.x, c.w, c.conv, c.y, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                                                    &gemm_bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_GT(gemm_bytes, 0u) << "some algorithm must need workspace, or none of this is exercised";
}

// Descriptor mismatches and bad arguments answer their documented status,
// with a message for cudnnGetLastErrorString that is cleared once read.
TEST(SimCudnn, ArgumentChecks) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(4, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2);
  const float one = 1, zero = 0;
  EXPECT_EQ(cudnnConvolutionForward(nullptr, &one, c.x, x.get(), c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, c.y, y.get()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnConvolutionForward(c.handle, nullptr, c.x, x.get(), c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, c.y, y.get()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnConvolutionForward(c.handle, &one, c.x, nullptr, c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, c.y, y.get()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_NE(last_error().find("null"), std::string::npos);
  EXPECT_EQ(last_error(), "") << "read once, the message is cleared";

  cudnnTensorDescriptor_t unset;
  ASSERT_EQ(cudnnCreateTensorDescriptor(&unset), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnConvolutionForward(c.handle, &one, unset, x.get(), c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, c.y, y.get()),
            CUDNN_STATUS_BAD_PARAM);
  // y's spatial size is not the formula's: NOT_SUPPORTED; its channel count is not k: BAD_PARAM.
  ASSERT_EQ(cudnnSetTensor4dDescriptor(unset, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 1), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnConvolutionForward(c.handle, &one, c.x, x.get(), c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, unset, y.get()),
            CUDNN_STATUS_NOT_SUPPORTED);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(unset, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 2, 1), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnConvolutionForward(c.handle, &one, c.x, x.get(), c.w, w.get(), c.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, unset, y.get()),
            CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(unset);
  EXPECT_TRUE(kdsim::test::same_floats(y.read(), std::vector<float>(4, kNaN))) << "a refused call writes nothing";

  // x with 2 channels against a 1-channel filter; a 4x4 filter on a 3x3 input.
  Conv channels(1, 2, 3, 3, 1, 2, 2);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(channels.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 2, 2),
            CUDNN_STATUS_SUCCESS);
  int n, k, h, wo;
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(channels.conv, channels.x, channels.w, &n, &k, &h, &wo),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(channels.forward(x, w, y), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(c.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 4, 4), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(c.conv, c.x, c.w, &n, &k, &h, &wo), CUDNN_STATUS_BAD_PARAM);

  // The setters' own checks; fp64 descriptors are accepted but not computed.
  EXPECT_EQ(cudnnSetTensor4dDescriptor(c.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 0, 3, 3), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetFilter4dDescriptor(c.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, -1, 1, 2, 2), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(c.conv, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(c.conv, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(c.conv, 0, 0, 1, 1, 0, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolutionMathType(c.conv, cudnnMathType_t(9)), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetActivationDescriptor(c.act, cudnnActivationMode_t(42), CUDNN_NOT_PROPAGATE_NAN, 0),
            CUDNN_STATUS_BAD_PARAM);
  Conv doubles(1, 1, 3, 3, 1, 2, 2);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(doubles.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 1, 1, 3, 3),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(doubles.forward(x, w, y), CUDNN_STATUS_BAD_PARAM) << "x double, w and y float";
  EXPECT_EQ(cudnnCreate(nullptr), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetStream(nullptr, nullptr), CUDNN_STATUS_BAD_PARAM);
}

TEST(SimCudnn, VersionAndStatusNames) {
  EXPECT_EQ(cudnnGetVersion(), size_t(90000));
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_SUCCESS), "CUDNN_STATUS_SUCCESS");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED_SHAPE), "CUDNN_STATUS_NOT_SUPPORTED_SHAPE");
  EXPECT_STREQ(cudnnGetErrorString(cudnnStatus_t(1234)), "CUDNN_UNKNOWN_STATUS");
  EXPECT_EQ(CUDNN_STATUS_CATEGORY(CUDNN_STATUS_NOT_SUPPORTED_SHAPE), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(int(CUDNN_STATUS_EXECUTION_FAILED), 5000);
}

// Work goes to the handle's stream; a stream that does not exist fails the call.
TEST(SimCudnn, RunsOnTheHandlesStream) {
  const DeviceFloats x(kX3x3), w(kW2x2);
  DeviceFloats y(std::vector<float>(4, kNaN));
  Conv c(1, 1, 3, 3, 1, 2, 2);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudnnSetStream(c.handle, stream), CUDNN_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  ASSERT_EQ(cudnnGetStream(c.handle, &got), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(got, stream);
  ASSERT_EQ(c.forward(x, w, y), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(y.read(), (std::vector<float>{37, 47, 67, 77}));
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(c.forward(x, w, y), CUDNN_STATUS_EXECUTION_FAILED_CUDART) << "the stream was destroyed";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
}

}  // namespace
