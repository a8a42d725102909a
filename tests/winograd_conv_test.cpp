// The fast engine's own Winograd F(4x4, 3x3) convolution (src/cpu/fast/winograd_conv.h)
// against the CPU reference: forward, backward-data, backward-filter, and the
// fused conv -> ReLU -> 2x2 max-pool forward and backward; on every SIMD path
// of this build that this CPU can run (an AVX-512 machine tests its AVX2 path
// too; an ARM64 build its NEON path: scripts/cross-aarch64.sh), and the paths
// against each other.
//
// Tolerances, as ||fast - ref|| / ||ref|| over a whole output:
//  - kGemmTolerance = 1e-4 for outputs and both input gradients. The reference
//    sums in double; Winograd sums fp32 products over in_c (forward), out_c
//    (backward-data) or every tile (backward-filter) and adds the rounding of
//    its transforms, whose largest factors are 8 (A^T) and 5 (B^T): measured
//    ~1e-6 here. An indexing, padding or transform mistake gives errors of
//    order 1.
//  - kReductionTolerance = 1e-5 for the bias gradient: per-thread fp32 sums of
//    dy, added in double.
//  - Exact equality where the same fp32 operations must run: the fused forward
//    against the unfused forward followed by the reference max-pool (values
//    and winners), the fused backward against the unfused backward of the
//    gradient the reference pool routes, and forward and backward-data across
//    thread counts (each output is computed by one thread, whatever the count).
#include "../src/cpu/fast/winograd_conv.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fast_test_util.h"
#include "kd/cpu_ops.h"
#include "kd/error.h"
#include "ref_test_util.h"

namespace kd::fast {
// Test names and messages say "avx2", not the enum's bytes.
void PrintTo(CpuPath path, std::ostream* os) { *os << cpu_path_name(path); }
}  // namespace kd::fast

namespace kd {
namespace {

using fasttest::from_layout;
using fasttest::rel_error;
using fasttest::relayout;
using fasttest::to_layout;
using reftest::make_rng;
using reftest::nan_filled;
using reftest::uniform;

constexpr double kGemmTolerance = 1e-4;
constexpr double kReductionTolerance = 1e-5;

std::string text(const ref::ConvShape& s) {
  return "n=" + std::to_string(s.n) + " " + std::to_string(s.in_c) + "->" + std::to_string(s.out_c) + " " +
         std::to_string(s.h) + "x" + std::to_string(s.w) + " pad " + std::to_string(s.pad);
}

// Restores the OpenMP thread count a test changed.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

// What the Winograd path computes, in plain NCHW.
struct Outputs {
  std::vector<float> y, y_relu, dx, dw, db;
};

// The teacher's conv2 (at batch 3), every padding, outputs that are not multiples of the
// 4x4 tile, a 1x1 output, and channel counts giving 1, 2, 3, 4 and 5 vectors of 16.
std::vector<ref::ConvShape> shapes() {
  return {ref::conv_shape(3, 32, 26, 26, 64, 3),       ref::conv_shape(2, 16, 11, 9, 32, 3, 1, 1),
          ref::conv_shape(1, 16, 5, 7, 16, 3, 1, 2),   ref::conv_shape(3, 32, 3, 3, 16, 3),
          ref::conv_shape(2, 48, 10, 13, 48, 3, 1, 1), ref::conv_shape(1, 16, 9, 6, 80, 3, 1, 1)};
}

struct Inputs {
  std::vector<float> x, w, b, dy;
};
Inputs random_inputs(const ref::ConvShape& s, uint64_t seed) {
  auto rng = make_rng(seed);
  return {uniform(size_t(s.n) * s.in_c * s.h * s.w, -1, 1, rng),
          uniform(size_t(s.out_c) * s.in_c * 9, -0.3f, 0.3f, rng), uniform(size_t(s.out_c), -1, 1, rng),
          uniform(size_t(s.n) * s.out_c * s.out_h() * s.out_w(), -1, 1, rng)};
}

Outputs run_winograd(const ref::ConvShape& s, const Inputs& in, fast::CpuPath path) {
  const int oh = s.out_h(), ow = s.out_w();
  const size_t ny = size_t(s.n) * s.out_c * oh * ow;
  const auto x = to_layout(in.x, ActLayout::Nchw16c, s.n, s.in_c, s.h, s.w);
  const auto dy = to_layout(in.dy, ActLayout::Nchw16c, s.n, s.out_c, oh, ow);
  fast::WinogradConv conv(s, path);
  Outputs out{nan_filled(ny), nan_filled(ny), nan_filled(in.x.size()), nan_filled(in.w.size()),
              nan_filled(in.b.size())};
  conv.conv_forward(x.data(), in.w.data(), in.b.data(), out.y.data(), false);
  conv.conv_forward(x.data(), in.w.data(), in.b.data(), out.y_relu.data(), true);
  conv.conv_backward(x.data(), in.w.data(), dy.data(), out.dx.data(), out.dw.data(), out.db.data());
  out.y = from_layout(out.y, ActLayout::Nchw16c, s.n, s.out_c, oh, ow);
  out.y_relu = from_layout(out.y_relu, ActLayout::Nchw16c, s.n, s.out_c, oh, ow);
  out.dx = from_layout(out.dx, ActLayout::Nchw16c, s.n, s.in_c, s.h, s.w);
  // Without dx (a first layer): the same filter and bias gradients.
  auto dw2 = nan_filled(in.w.size()), db2 = nan_filled(in.b.size());
  conv.conv_backward(x.data(), in.w.data(), dy.data(), nullptr, dw2.data(), db2.data());
  EXPECT_EQ(dw2, out.dw);
  EXPECT_EQ(db2, out.db);
  return out;
}

// Each vector path, skipped where this CPU cannot run it.
class WinogradPath : public ::testing::TestWithParam<fast::CpuPath> {
 protected:
  void SetUp() override {
    if (!fast::cpu_supports(GetParam())) GTEST_SKIP() << "this CPU has no " << fast::cpu_path_name(GetParam());
  }
};

TEST_P(WinogradPath, SupportsOnly3x3Stride1WithChannelsInSixteens) {
  const fast::CpuPath path = GetParam();
  EXPECT_TRUE(fast::WinogradConv::supports(ref::conv_shape(64, 32, 26, 26, 64, 3), path));
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(64, 1, 28, 28, 32, 3), path));      // in_c 1
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(4, 16, 9, 9, 17, 3, 1, 1), path));  // out_c 17
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(4, 16, 9, 9, 16, 3, 2, 1), path));  // stride 2
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(4, 16, 9, 9, 16, 5, 1, 2), path));  // 5x5
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(4, 16, 9, 9, 16, 3, 1, 3), path));  // pad 3
  EXPECT_FALSE(fast::WinogradConv::supports(ref::conv_shape(64, 32, 26, 26, 64, 3), fast::CpuPath::Scalar));
  EXPECT_THROW(fast::WinogradConv(ref::conv_shape(4, 16, 9, 9, 16, 3, 2, 1), path), Error);
}

TEST_P(WinogradPath, ForwardAndBothBackwardsMatchTheReference) {
  auto ref_ops = make_reference_ops();
  for (const ref::ConvShape& s : shapes()) {
    SCOPED_TRACE(text(s));
    const Inputs in = random_inputs(s, 7);
    const size_t ny = in.dy.size();
    auto y_ref = nan_filled(ny), y_relu_ref = nan_filled(ny), dx_ref = nan_filled(in.x.size()),
         dw_ref = nan_filled(in.w.size()), db_ref = nan_filled(in.b.size());
    ref_ops->conv_forward(in.x.data(), in.w.data(), in.b.data(), y_ref.data(), s, false, ActLayout::Nchw,
                          ActLayout::Nchw);
    ref_ops->conv_forward(in.x.data(), in.w.data(), in.b.data(), y_relu_ref.data(), s, true, ActLayout::Nchw,
                          ActLayout::Nchw);
    ref_ops->conv_backward(in.x.data(), in.w.data(), in.dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data(), s,
                           ActLayout::Nchw, ActLayout::Nchw);
    Outputs one, three;
    {
      ThreadCount threads(1);
      one = run_winograd(s, in, GetParam());
    }
    {
      ThreadCount threads(3);
      three = run_winograd(s, in, GetParam());
    }
    EXPECT_LE(rel_error(one.y, y_ref), kGemmTolerance) << "forward";
    EXPECT_LE(rel_error(one.y_relu, y_relu_ref), kGemmTolerance) << "forward with ReLU";
    for (size_t i = 0; i < ny; ++i) ASSERT_EQ(one.y_relu[i], std::max(one.y[i], 0.0f)) << "ReLU is max(y, 0), at " << i;
    EXPECT_LE(rel_error(one.dx, dx_ref), kGemmTolerance) << "backward data";
    EXPECT_LE(rel_error(one.dw, dw_ref), kGemmTolerance) << "backward filter";
    EXPECT_LE(rel_error(one.db, db_ref), kReductionTolerance) << "bias gradient";
    // One output, one thread, one order: the thread count changes nothing here...
    EXPECT_EQ(three.y, one.y);
    EXPECT_EQ(three.dx, one.dx);
    // ...while the filter and bias gradients add per-thread partials.
    EXPECT_LE(rel_error(three.dw, dw_ref), kGemmTolerance);
    EXPECT_LE(rel_error(three.db, db_ref), kReductionTolerance);
  }
}

// The shapes of a conv -> ReLU -> max-pool: the teacher's conv2 (24x24 output), odd output
// sizes (the pool drops the last row and column), padding, five vectors of channels.
std::vector<ref::ConvShape> pooled_shapes() {
  return {ref::conv_shape(3, 32, 26, 26, 64, 3), ref::conv_shape(2, 16, 11, 9, 32, 3),
          ref::conv_shape(2, 16, 8, 10, 16, 3, 1, 1), ref::conv_shape(1, 32, 7, 7, 80, 3, 1, 2)};
}

TEST_P(WinogradPath, FusedReluPoolEqualsTheConvolutionThenTheReferencePool) {
  auto ref_ops = make_reference_ops();
  for (const ref::ConvShape& s : pooled_shapes()) {
    SCOPED_TRACE(text(s));
    ThreadCount threads(3);
    const Inputs in = random_inputs(s, 8);
    const int oh = s.out_h(), ow = s.out_w(), ph = oh / 2, pw = ow / 2;
    const size_t ny = in.dy.size(), np = size_t(s.n) * s.out_c * ph * pw;
    const auto x = to_layout(in.x, ActLayout::Nchw16c, s.n, s.in_c, s.h, s.w);
    fast::WinogradConv conv(s, GetParam());

    // Forward: the unfused convolution with ReLU, pooled by the reference, is the oracle.
    auto y = nan_filled(ny);
    conv.conv_forward(x.data(), in.w.data(), in.b.data(), y.data(), /*relu=*/true);
    y = from_layout(y, ActLayout::Nchw16c, s.n, s.out_c, oh, ow);
    auto pooled_want = nan_filled(np);
    std::vector<uint8_t> arg_want(np, 9);
    ref::maxpool2x2_forward(y.data(), pooled_want.data(), arg_want.data(), s.n, s.out_c, oh, ow);

    auto pooled = nan_filled(np);
    std::vector<uint8_t> arg_blocked(np, 9);
    conv.forward(x.data(), in.w.data(), in.b.data(), pooled.data(), arg_blocked.data());
    EXPECT_EQ(pooled, pooled_want);
    EXPECT_EQ(relayout(arg_blocked, ActLayout::Nchw16c, ActLayout::Nchw, s.n, s.out_c, ph, pw), arg_want);

    // Backward: the gradient the model routes (ReLU mask at the pooled value, then the
    // pool's backward) through the unfused backward is the oracle.
    auto rng = make_rng(9);
    const auto dpooled = uniform(np, -1, 1, rng);
    std::vector<float> masked(np);
    for (size_t i = 0; i < np; ++i) masked[i] = pooled_want[i] > 0 ? dpooled[i] : 0.0f;
    auto dz = nan_filled(ny);
    ref::maxpool2x2_backward(masked.data(), arg_want.data(), dz.data(), s.n, s.out_c, oh, ow);
    const auto dz_blocked = to_layout(dz, ActLayout::Nchw16c, s.n, s.out_c, oh, ow);
    auto dx_want = nan_filled(in.x.size()), dw_want = nan_filled(in.w.size()), db_want = nan_filled(in.b.size());
    conv.conv_backward(x.data(), in.w.data(), dz_blocked.data(), dx_want.data(), dw_want.data(), db_want.data());

    auto dx = nan_filled(in.x.size()), dw = nan_filled(in.w.size()), db = nan_filled(in.b.size());
    conv.backward(x.data(), in.w.data(), dpooled.data(), pooled.data(), arg_blocked.data(), dx.data(), dw.data(),
                  db.data());
    EXPECT_EQ(dx, dx_want);
    EXPECT_EQ(dw, dw_want);
    EXPECT_EQ(db, db_want);

    // And the whole chain against the reference's convolution backward of the same gradient.
    auto dx_ref = nan_filled(in.x.size()), dw_ref = nan_filled(in.w.size()), db_ref = nan_filled(in.b.size());
    ref_ops->conv_backward(in.x.data(), in.w.data(), dz.data(), dx_ref.data(), dw_ref.data(), db_ref.data(), s,
                           ActLayout::Nchw, ActLayout::Nchw);
    EXPECT_LE(rel_error(from_layout(dx, ActLayout::Nchw16c, s.n, s.in_c, s.h, s.w), dx_ref), kGemmTolerance);
    EXPECT_LE(rel_error(dw, dw_ref), kGemmTolerance);
    EXPECT_LE(rel_error(db, db_ref), kReductionTolerance);
  }
}

// The forward keeps its transformed filters while the weights keep their bits (inference
// repeats them), and notices a change made in place, as the optimiser makes it.
TEST_P(WinogradPath, ForwardFollowsWeightsChangedInPlace) {
  const ref::ConvShape s = ref::conv_shape(1, 16, 8, 8, 16, 3, 1, 1);
  Inputs in = random_inputs(s, 12);
  const auto x = to_layout(in.x, ActLayout::Nchw16c, s.n, s.in_c, s.h, s.w);
  fast::WinogradConv kept(s, GetParam());
  auto y = nan_filled(in.dy.size()), y_fresh = nan_filled(in.dy.size());
  kept.conv_forward(x.data(), in.w.data(), in.b.data(), y.data(), false);
  in.w[17] += 0.25f;  // one weight of one filter, same buffer
  kept.conv_forward(x.data(), in.w.data(), in.b.data(), y.data(), false);
  fast::WinogradConv fresh(s, GetParam());
  fresh.conv_forward(x.data(), in.w.data(), in.b.data(), y_fresh.data(), false);
  EXPECT_EQ(y, y_fresh);
}

INSTANTIATE_TEST_SUITE_P(Paths, WinogradPath, ::testing::ValuesIn(fast::vector_paths()),
                         [](const ::testing::TestParamInfo<fast::CpuPath>& info) {
                           return std::string(fast::cpu_path_name(info.param));
                         });

// Every path does the same fp32 operations in the same order (the GEMM sums over k in order
// with one FMA per term, whatever the vector width; the transforms are not contracted), so
// a model trained on one path continues bit for bit on another. The widest path's bits are
// printed ("bits PATH HASH") for a comparison with another build's (scripts/cross-aarch64.sh).
TEST(WinogradConv, PathsAgreeBitForBit) {
  const std::vector<fast::CpuPath> paths = fasttest::runnable_vector_paths();
  if (paths.empty()) GTEST_SKIP() << "no vector path on this CPU";
  ThreadCount threads(2);
  uint64_t hash = fasttest::bits_hash({});
  for (const ref::ConvShape& s : shapes()) {
    SCOPED_TRACE(text(s));
    const Inputs in = random_inputs(s, 11);
    const Outputs widest = run_winograd(s, in, paths[0]);
    for (const auto* out : {&widest.y, &widest.y_relu, &widest.dx, &widest.dw, &widest.db})
      hash = fasttest::bits_hash(*out, hash);
    for (size_t i = 1; i < paths.size(); ++i) {
      SCOPED_TRACE(fast::cpu_path_name(paths[i]));
      const Outputs other = run_winograd(s, in, paths[i]);
      EXPECT_EQ(other.y, widest.y);
      EXPECT_EQ(other.y_relu, widest.y_relu);
      EXPECT_EQ(other.dx, widest.dx);
      EXPECT_EQ(other.dw, widest.dw);
      EXPECT_EQ(other.db, widest.db);
    }
  }
  std::printf("bits %s %016llx\n", fast::cpu_path_name(paths[0]), static_cast<unsigned long long>(hash));
}

}  // namespace
}  // namespace kd
