// kernels/hint.cu against kd::ref::hint_loss, and the backward hook
// hint_add_gradient against its definition. Outputs are poisoned with NaN
// first, so an element a kernel forgets to write fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/cuda_buffer.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"

namespace {

using kd::HintKind;
using kd::cuda::DeviceBuffer;

struct HintShape {
  int b, d;
};

// b: 1, the trainer's 64, 63 and 65 around it, and 1000 (several blocks of 8
// rows); d: 1, 10, 31 and 33 around a warp's 32 lanes, the default 128, and
// 1000 (many strided loads per lane). Simulated: fewer large combinations.
const std::vector<HintShape> kShapes = kd::test::gpu_or_sim<HintShape>(
    {{1, 1}, {1, 128}, {63, 33}, {64, 128}, {65, 31}, {1000, 10}, {1000, 128}, {64, 1000}},
    {{1, 1}, {1, 128}, {63, 33}, {64, 128}, {65, 31}, {17, 1000}});

// Tolerance: the kernel and the reference both accumulate a row in double,
// in other orders (a warp's strided partial sums, then shuffles), and round
// the same double expressions to float: agreement to ~1e-7 relative, so the
// elementwise bound of 1e-5 (SPEC section 4) holds with room.
constexpr double kTolerance = 1e-5;

void check_hint(const HintShape& s, HintKind kind, float weight, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "b " << s.b << ", d " << s.d << (kind == HintKind::Cosine ? ", cosine" : ", mse"));
  const size_t n = size_t(s.b) * s.d;
  const std::vector<float> m = kd::test::random_floats(n, -2.0f, 2.0f, rng);
  const std::vector<float> t = kd::test::random_floats(n, 0.0f, 3.0f, rng);  // teacher features are post-ReLU
  const std::vector<float> total = kd::test::random_floats(size_t(s.b), 0.0f, 2.0f, rng);
  std::vector<float> grad_ref(n), row_ref(size_t(s.b)), total_ref = total;
  kd::ref::hint_loss(m.data(), t.data(), grad_ref.data(), row_ref.data(), s.b, s.d, kind, weight);
  for (int i = 0; i < s.b; ++i) total_ref[size_t(i)] += float(double(weight) * row_ref[size_t(i)]);

  DeviceBuffer<float> d_m(n, "m"), d_t(n, "t"), d_grad(n, "grad"), d_row(size_t(s.b), "row hint"),
      d_total(size_t(s.b), "row total");
  d_m.upload(m);
  d_t.upload(t);
  d_total.upload(total);
  kd::test::poison(d_grad);
  kd::test::poison(d_row);
  kd::cuda::hint_loss(d_m.data(), d_t.data(), d_grad.data(), d_row.data(), d_total.data(), s.b, s.d, kind, weight,
                      nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(kd::test::rel_error(d_grad.download(), grad_ref), kTolerance);
  EXPECT_LE(kd::test::rel_error(d_row.download(), row_ref), kTolerance);
  EXPECT_LE(kd::test::rel_error(d_total.download(), total_ref), kTolerance);
}

TEST(HintGpu, MatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 21);
  for (const HintShape& s : kShapes)
    for (HintKind kind : {HintKind::Cosine, HintKind::Mse})
      check_hint(s, kind, kind == HintKind::Mse ? 0.5f : 2.0f, rng);
}

// Null outputs are skipped, and a zero mapped row takes the norm clamp as
// the reference does (a finite, large gradient towards the teacher).
TEST(HintGpu, NullOutputsAndTheClamp) {
  KD_REQUIRE_GPU();
  const std::vector<float> m = {0, 0, 3, 4}, t = {2, 0, 4, 3};
  std::vector<float> grad_ref(4), row_ref(2);
  kd::ref::hint_loss(m.data(), t.data(), grad_ref.data(), row_ref.data(), 2, 2, HintKind::Cosine, 1.0f);
  DeviceBuffer<float> d_m(4, "m"), d_t(4, "t"), d_grad(4, "grad"), d_row(2, "row hint");
  d_m.upload(m);
  d_t.upload(t);
  kd::test::poison(d_grad);
  kd::test::poison(d_row);
  kd::cuda::hint_loss(d_m.data(), d_t.data(), nullptr, d_row.data(), nullptr, 2, 2, HintKind::Cosine, 1.0f, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(kd::test::rel_error(d_row.download(), row_ref), kTolerance);
  EXPECT_TRUE(std::isnan(d_grad.download()[0])) << "a null grad is not written";
  kd::cuda::hint_loss(d_m.data(), d_t.data(), d_grad.data(), nullptr, nullptr, 2, 2, HintKind::Cosine, 1.0f, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(kd::test::rel_error(d_grad.download(), grad_ref), kTolerance);
}

// dx += g, where the ReLU output mask_by is > 0 when given: exact (one addition per element, as the CPU engine's).
TEST(HintGpu, AddGradientPassesTheMask) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 22);
  for (const int64_t n : {int64_t(1), int64_t(255), int64_t(257), int64_t(64 * 128)}) {
    SCOPED_TRACE(n);
    const std::vector<float> dx = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
    const std::vector<float> g = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
    std::vector<float> relu_out = kd::test::random_floats(size_t(n), -1.0f, 1.0f, rng);
    for (float& v : relu_out) v = v < 0 ? 0.0f : v;  // a ReLU's output: zeros and positives
    std::vector<float> plain = dx, masked = dx;
    for (size_t i = 0; i < size_t(n); ++i) {
      plain[i] += g[i];
      if (relu_out[i] > 0) masked[i] += g[i];
    }
    DeviceBuffer<float> d_dx(size_t(n), "dx"), d_g(size_t(n), "g"), d_mask(size_t(n), "relu output");
    d_g.upload(g);
    d_mask.upload(relu_out);
    d_dx.upload(dx);
    kd::cuda::hint_add_gradient(d_dx.data(), d_g.data(), nullptr, n, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(kd::test::bitwise_difference(d_dx.download(), plain), "");
    d_dx.upload(dx);
    kd::cuda::hint_add_gradient(d_dx.data(), d_g.data(), d_mask.data(), n, nullptr);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(kd::test::bitwise_difference(d_dx.download(), masked), "");
  }
}

}  // namespace
