// kernels/dense.cu against kd::ref::dense_forward / dense_backward (double
// accumulation) on fresh random inputs with every output poisoned with NaN
// first: both implementations, ReLU on and off, the ReLU mask of dX on and
// off, dX skipped, on shapes that hit every kernel variant of the custom GEMM
// (64x64 tiles with and without split-K, 128x128 tiles, M = 1, K = 1, edges
// that are not multiples of the tile) and on the trainer's layer shapes.
//
// Tolerances, ||gpu - ref|| / ||ref||:
//  - y, dX, dW 1e-4 (GEMM): fp32 products summed in a different order than the
//    double reference; the error grows like sqrt(K) * 6e-8, about 6e-6 at
//    K = 9216. TF32 (10-bit mantissa, ~1e-3) would fail this bound, so it also
//    checks that cuBLAS runs in full fp32.
//  - db 1e-5 (reduction): summed in double; only the final rounding remains.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/error.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DenseImpl;
using kd::cuda::DeviceBuffer;

constexpr double kGemmTolerance = 1e-4;
constexpr double kReductionTolerance = 1e-5;

struct Shape {
  int b, in, out;
};
std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << "b=" << s.b << " in=" << s.in << " out=" << s.out;
}

// The trainer's layers (student 784-256-128-10, teacher head 9216-128-10) at
// batch 64 and 1024, the SPEC's odd shapes, and shapes chosen for the GEMM
// variants: M = 1, K = 1, edges off the tile, and outputs of >= 144 128x128
// tiles for the forward (1536 x 1536), dX (1600 x 1600) and dW (1600 x 1600).
// The simulated device has 8 SMs: 260 x 260 outputs (9 tiles of 128 x 128)
// take the large tiles in all three GEMMs, 64 x 784 x 128 splits K 8 ways.
const std::vector<Shape> kShapes = kd::test::gpu_or_sim<Shape>(
    {
        {64, 784, 256},
        {64, 256, 128},
        {64, 128, 10},
        {64, 9216, 128},
        {1024, 784, 256},
        {1024, 256, 128},
        {1024, 128, 10},
        {1024, 9216, 128},
        {1, 784, 256},
        {65, 9216, 128},
        {1000, 129, 7},
        {1, 1, 1},
        {3, 1, 5},
        {130, 17, 129},
        {1536, 33, 1536},
        {1600, 1600, 24},
        {24, 1600, 1600},
    },
    {{64, 784, 128}, {64, 128, 10}, {1, 50, 70}, {65, 300, 7}, {1, 1, 1}, {3, 1, 5}, {130, 17, 129}, {260, 260, 260}});

// Host inputs with PyTorch-like scales: w, bias ~ U(-1/sqrt(in), 1/sqrt(in)),
// x and dy ~ U(-1, 1) (so about half of x is masked by a ReLU mask).
struct Layer {
  Shape shape;
  std::vector<float> x, w, bias, dy;
};
Layer random_layer(const Shape& s, std::mt19937_64& rng) {
  const float bound = 1.0f / std::sqrt(float(s.in));
  Layer l{s, kd::test::random_floats(size_t(s.b) * s.in, -1.0f, 1.0f, rng),
          kd::test::random_floats(size_t(s.out) * s.in, -bound, bound, rng),
          kd::test::random_floats(size_t(s.out), -bound, bound, rng),
          kd::test::random_floats(size_t(s.b) * s.out, -1.0f, 1.0f, rng)};
  return l;
}

// The reference's results, computed once per layer and masked on the host.
struct Expected {
  std::vector<float> y_linear, y_relu;  // (b, out)
  std::vector<float> dx, dx_masked;     // (b, in)
  std::vector<float> dw, db;            // (out, in), (out)
};
Expected reference(const Layer& l) {
  const Shape& s = l.shape;
  Expected e;
  e.y_linear.resize(size_t(s.b) * s.out);
  kd::ref::dense_forward(l.x.data(), l.w.data(), l.bias.data(), e.y_linear.data(), s.b, s.in, s.out, false);
  e.y_relu.resize(e.y_linear.size());
  kd::ref::relu_forward(e.y_linear.data(), e.y_relu.data(), int64_t(e.y_linear.size()));
  e.dx.resize(size_t(s.b) * s.in);
  e.dw.resize(size_t(s.out) * s.in);
  e.db.resize(s.out);
  kd::ref::dense_backward(l.x.data(), l.w.data(), l.dy.data(), e.dx.data(), e.dw.data(), e.db.data(), s.b, s.in, s.out);
  e.dx_masked.resize(e.dx.size());
  kd::ref::relu_backward(l.x.data(), e.dx.data(), e.dx_masked.data(), int64_t(e.dx.size()));
  return e;
}

struct DeviceLayer {
  Shape s;
  DeviceBuffer<float> x, w, bias, dy, y, dx, dw, db;
  explicit DeviceLayer(const Layer& l)
      : s(l.shape),
        x(l.x.size(), "x"),
        w(l.w.size(), "w"),
        bias(l.bias.size(), "bias"),
        dy(l.dy.size(), "dy"),
        y(l.dy.size(), "y"),
        dx(l.x.size(), "dx"),
        dw(l.w.size(), "dw"),
        db(l.bias.size(), "db") {
    x.upload(l.x);
    w.upload(l.w);
    bias.upload(l.bias);
    dy.upload(l.dy);
  }
  std::vector<float> forward(kd::cuda::DenseContext& ctx, DenseImpl impl, bool relu) {
    kd::test::poison(y);
    kd::cuda::dense_forward(ctx, impl, x.data(), w.data(), bias.data(), y.data(), s.b, s.in, s.out, relu, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    return y.download();
  }
  // Leaves dx, dw, db on the device (poisoned first; dx stays poisoned when skipped).
  void backward(kd::cuda::DenseContext& ctx, DenseImpl impl, bool with_dx, bool mask) {
    kd::test::poison(dx);
    kd::test::poison(dw);
    kd::test::poison(db);
    kd::cuda::dense_backward(ctx, impl, x.data(), w.data(), dy.data(), with_dx ? dx.data() : nullptr, mask, dw.data(),
                             db.data(), s.b, s.in, s.out, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

bool all_nan(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isnan(x)) return false;
  return true;
}

void check_layer(kd::cuda::DenseContext& ctx, DenseImpl impl, DeviceLayer& d, const Expected& e) {
  SCOPED_TRACE(testing::Message() << d.s << " impl=" << kd::cuda::dense_impl_name(impl));
  EXPECT_LE(kd::test::rel_error(d.forward(ctx, impl, false), e.y_linear), kGemmTolerance) << "y without ReLU";
  EXPECT_LE(kd::test::rel_error(d.forward(ctx, impl, true), e.y_relu), kGemmTolerance) << "y with ReLU";

  d.backward(ctx, impl, /*with_dx=*/true, /*mask=*/false);
  EXPECT_LE(kd::test::rel_error(d.dx.download(), e.dx), kGemmTolerance) << "dx";
  EXPECT_LE(kd::test::rel_error(d.dw.download(), e.dw), kGemmTolerance) << "dw";
  EXPECT_LE(kd::test::rel_error(d.db.download(), e.db), kReductionTolerance) << "db";
  const std::vector<float> db_first = d.db.download();

  d.backward(ctx, impl, /*with_dx=*/true, /*mask=*/true);
  EXPECT_LE(kd::test::rel_error(d.dx.download(), e.dx_masked), kGemmTolerance) << "dx with the ReLU mask of x";
  EXPECT_EQ(bits(d.db.download()), bits(db_first)) << "db must be bit-identical between runs";

  d.backward(ctx, impl, /*with_dx=*/false, /*mask=*/true);
  EXPECT_TRUE(all_nan(d.dx.download())) << "dx = null must leave dx untouched";
  EXPECT_LE(kd::test::rel_error(d.dw.download(), e.dw), kGemmTolerance) << "dw without dx";
  EXPECT_LE(kd::test::rel_error(d.db.download(), e.db), kReductionTolerance) << "db without dx";
}

std::mt19937_64 test_rng(uint64_t salt) {
  return std::mt19937_64(kd::test::test_seed() ^ (salt * 0x9E3779B97F4A7C15ull));
}

void check_implementation(DenseImpl impl, uint64_t salt) {
  auto rng = test_rng(salt);
  kd::cuda::DenseContext ctx;
  for (const Shape& s : kShapes) {
    const Layer layer = random_layer(s, rng);
    const Expected expected = reference(layer);
    DeviceLayer d(layer);
    check_layer(ctx, impl, d, expected);
  }
}

TEST(DenseGpu, CustomImplementationMatchesReference) {
  KD_REQUIRE_GPU();
  check_implementation(DenseImpl::Custom, 1);
}

TEST(DenseGpu, CublasImplementationMatchesReference) {
  KD_REQUIRE_GPU();
  check_implementation(DenseImpl::Cublas, 5);
}

// The custom GEMM has no atomics and split-K partials are summed in a fixed
// order: every output is bit-identical between runs.
TEST(DenseGpu, CustomImplementationIsDeterministic) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(2);
  kd::cuda::DenseContext ctx;
  for (const Shape& s : kd::test::gpu_or_sim<Shape>({{64, 9216, 128}, {1024, 784, 256}, {1536, 33, 1536}},
                                                    {{64, 784, 128}, {260, 260, 260}})) {
    SCOPED_TRACE(testing::Message() << s);
    DeviceLayer d(random_layer(s, rng));
    const std::vector<float> y = d.forward(ctx, DenseImpl::Custom, true);
    d.backward(ctx, DenseImpl::Custom, true, true);
    const std::vector<float> dx = d.dx.download(), dw = d.dw.download();
    EXPECT_EQ(bits(d.forward(ctx, DenseImpl::Custom, true)), bits(y));
    d.backward(ctx, DenseImpl::Custom, true, true);
    EXPECT_EQ(bits(d.dx.download()), bits(dx));
    EXPECT_EQ(bits(d.dw.download()), bits(dw));
  }
}

// A bias that is not 16-byte aligned cannot use the cuBLASLt epilogue; the
// cuBLAS path falls back to Sgemm + a bias kernel and must give the same result.
TEST(DenseGpu, CublasForwardWithUnalignedBias) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(3);
  kd::cuda::DenseContext ctx;
  const Shape s{63, 130, 33};
  const Layer layer = random_layer(s, rng);
  const Expected expected = reference(layer);
  DeviceBuffer<float> x(layer.x.size(), "x"), w(layer.w.size(), "w"), bias(s.out + 1, "bias"), y(layer.dy.size(), "y");
  x.upload(layer.x);
  w.upload(layer.w);
  std::vector<float> shifted_bias(1, 0.0f);
  shifted_bias.insert(shifted_bias.end(), layer.bias.begin(), layer.bias.end());
  bias.upload(shifted_bias);
  for (bool relu : {false, true}) {
    kd::test::poison(y);
    kd::cuda::dense_forward(ctx, DenseImpl::Cublas, x.data(), w.data(), bias.data() + 1, y.data(), s.b, s.in, s.out,
                            relu, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LE(kd::test::rel_error(y.download(), relu ? expected.y_relu : expected.y_linear), kGemmTolerance)
        << (relu ? "with" : "without") << " ReLU";
  }
}

// ReLU only selects values: exact equality with the reference, in place too.
TEST(DenseGpu, ReluMatchesReferenceExactly) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(4);
  for (int64_t n : kd::test::gpu_or_sim<int64_t>({1, 1000, (1 << 20) + 3}, {1, 1000, 65539})) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<float> x = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
    const std::vector<float> dy = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
    std::vector<float> y_ref(x.size()), dx_ref(x.size());
    kd::ref::relu_forward(x.data(), y_ref.data(), n);
    kd::ref::relu_backward(y_ref.data(), dy.data(), dx_ref.data(), n);

    DeviceBuffer<float> d_x(x.size(), "x"), d_y(x.size(), "y"), d_dy(x.size(), "dy"), d_dx(x.size(), "dx");
    d_x.upload(x);
    d_dy.upload(dy);
    kd::test::poison(d_y);
    kd::test::poison(d_dx);
    kd::cuda::relu_forward(d_x.data(), d_y.data(), n, nullptr);
    kd::cuda::relu_backward(d_y.data(), d_dy.data(), d_dx.data(), n, nullptr);
    kd::cuda::relu_forward(d_x.data(), d_x.data(), n, nullptr);                 // in place
    kd::cuda::relu_backward(d_y.data(), d_dy.data(), d_dy.data(), n, nullptr);  // in place
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(d_y.download(), y_ref);
    EXPECT_EQ(d_dx.download(), dx_ref);
    EXPECT_EQ(d_x.download(), y_ref);
    EXPECT_EQ(d_dy.download(), dx_ref);
  }
}

// The selector times both implementations once per shape and caches the answer.
TEST(DenseGpu, AutoselectReturnsACachedImplementation) {
  KD_REQUIRE_GPU();
  kd::cuda::DenseContext ctx;
  for (const Shape& s : kd::test::gpu_or_sim<Shape>({{64, 784, 256}, {1024, 9216, 128}, {64, 128, 10}},
                                                    {{64, 300, 64}, {65, 128, 10}})) {
    SCOPED_TRACE(testing::Message() << s);
    const DenseImpl first = kd::cuda::dense_autoselect(ctx, s.b, s.in, s.out, true, nullptr);
    EXPECT_TRUE(first == DenseImpl::Custom || first == DenseImpl::Cublas);
    EXPECT_EQ(kd::cuda::dense_autoselect(ctx, s.b, s.in, s.out, true, nullptr), first);
  }
}

// The selector refuses to run (it synchronises) while a graph is being captured.
TEST(DenseGpu, AutoselectRefusesDuringCapture) {
  KD_REQUIRE_GPU();
  kd::cuda::DenseContext ctx;
  cudaStream_t stream = nullptr;
  KD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const cudaError_t begun = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (begun == cudaErrorStreamCaptureUnsupported) {  // the CUDA simulator, until it captures graphs
    cudaGetLastError();
    KD_CUDA_CHECK(cudaStreamDestroy(stream));
    GTEST_SKIP() << "this CUDA implementation cannot capture graphs";
  }
  KD_CUDA_CHECK(begun);
  EXPECT_THROW(kd::cuda::dense_autoselect(ctx, 7, 11, 13, false, stream), kd::Error);
  cudaGraph_t graph = nullptr;
  KD_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  if (graph) KD_CUDA_CHECK(cudaGraphDestroy(graph));
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(DenseGpu, RejectsInvalidShapes) {
  KD_REQUIRE_GPU();
  kd::cuda::DenseContext ctx;
  DeviceBuffer<float> buf(16, "buf");
  float* p = buf.data();
  EXPECT_THROW(kd::cuda::dense_forward(ctx, DenseImpl::Custom, p, p, p, p, 1, 0, 1, false, nullptr), kd::Error);
  EXPECT_THROW(kd::cuda::dense_forward(ctx, DenseImpl::Cublas, p, p, p, p, -1, 1, 1, false, nullptr), kd::Error);
  EXPECT_THROW(kd::cuda::dense_forward(ctx, DenseImpl::Custom, p, nullptr, p, p, 1, 1, 1, false, nullptr), kd::Error);
  EXPECT_THROW(kd::cuda::dense_backward(ctx, DenseImpl::Custom, p, p, p, p, false, p, p, 1, 1, 0, nullptr), kd::Error);
  EXPECT_THROW(kd::cuda::dense_backward(ctx, DenseImpl::Cublas, p, p, p, p, false, nullptr, p, 1, 1, 1, nullptr),
               kd::Error);
}

}  // namespace
