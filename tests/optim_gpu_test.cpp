// kernels/optim.cu against kd::ref::adam_step / sgd_momentum_step over several
// steps, with the step count kept on the device and advanced by
// increment_counter as the trainer's CUDA graph does.
//
// Tolerance 1e-6 relative for p, m, v and the momentum buffer: the kernels
// perform the reference's double-precision operations in the same order with
// no fused multiply-add, so elements agree to the last bit except where CUDA's
// pow() for Adam's bias corrections differs from the host's in its last double
// bit, which moves a float result by at most one ulp (~6e-8 relative) in rare
// elements. Any real mistake (a wrong bias correction, a missing weight decay,
// L2 where AdamW's decoupled decay belongs, the first momentum step) gives
// errors of 1e-3 or more.
#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

constexpr double kTolerance = 1e-6;
constexpr int kSteps = 5;

// 1,199,882 is the teacher's flat parameter buffer (SPEC section 2), more than
// one pass of the grid (1,024 blocks of 256 threads, 4 elements each), so the
// grid-stride loop turns; the small sizes leave every possible n % 4 tail.
const int64_t kSizes[] = {1, 3, 63, 64, 65, 1000, 1199882};

// The sizes the case_index-th set of hyper-parameters runs at. The simulator
// runs every thread on the CPU (~2.3 CPU-seconds per Adam case at 1,199,882,
// ~8 s on CI's loaded cores), so there only the first case takes the largest
// size: what the cases vary is each element's arithmetic, the same at every size.
std::vector<int64_t> sizes_for_case(size_t case_index) {
  std::vector<int64_t> sizes(std::begin(kSizes), std::end(kSizes));
  if (kd::test::kSimulated && case_index > 0) sizes.pop_back();
  return sizes;
}

// A device copy of `host` at element offset `offset` inside a larger buffer
// (offset 1 breaks 16-byte alignment and sends the kernel down its scalar path).
class OffsetBuffer {
 public:
  OffsetBuffer(const std::vector<float>& host, int offset, const char* what)
      : offset_(offset), buf_(host.size() + offset, what) {
    kd::test::poison(buf_);
    upload(host);
  }
  float* data() { return buf_.data() + offset_; }
  void upload(const std::vector<float>& host) {
    KD_CUDA_CHECK(cudaMemcpy(data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  std::vector<float> download() const {
    const std::vector<float> all = buf_.download();
    return std::vector<float>(all.begin() + offset_, all.end());
  }

 private:
  int offset_;
  DeviceBuffer<float> buf_;
};

struct AdamCase {
  kd::ref::AdamParams params;
  uint64_t first_step;        // 1 = fresh optimiser state (m = v = 0); larger = a resumed run
  kd::LrSchedule schedule{};  // none: params.lr on every step
};

// A cosine schedule whose warm-up ends inside the test's kSteps from step 1, and
// which is mid-cosine at step 4690: both branches of lr_factor on the device.
// The AdamW cases run under it (the unscheduled rate is the other cases').
constexpr kd::LrSchedule kCosine{kd::LrScheduleKind::Cosine, 2, 9000};

void check_adam(const AdamCase& c, int64_t n, int offset, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "n " << n << " offset " << offset << " lr " << c.params.lr << " wd "
                                  << c.params.weight_decay << (c.params.decoupled_weight_decay ? " decoupled" : "")
                                  << " first step " << c.first_step << " schedule total " << c.schedule.total_steps);
  std::vector<float> p = kd::test::random_floats(size_t(n), -0.1f, 0.1f, rng);
  std::vector<float> m(size_t(n), 0.0f), v(size_t(n), 0.0f);
  if (c.first_step > 1) {
    m = kd::test::random_floats(size_t(n), -0.01f, 0.01f, rng);
    v = kd::test::random_floats(size_t(n), 0.0f, 1e-4f, rng);
  }
  OffsetBuffer d_p(p, offset, "p"), d_m(m, offset, "m"), d_v(v, offset, "v");
  OffsetBuffer d_g(std::vector<float>(size_t(n)), offset, "g");
  DeviceBuffer<uint64_t> d_step(1, "step");
  d_step.upload(std::vector<uint64_t>{c.first_step});
  for (uint64_t step = c.first_step; step < c.first_step + kSteps; ++step) {
    const std::vector<float> g = kd::test::random_floats(size_t(n), -0.1f, 0.1f, rng);
    d_g.upload(g);
    kd::cuda::adam_step(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, c.params, c.schedule, d_step.data(),
                        nullptr);
    kd::cuda::increment_counter(d_step.data(), nullptr);
    kd::ref::AdamParams scheduled = c.params;  // what the CPU engines pass the reference
    scheduled.lr = kd::scheduled_lr(c.params.lr, int64_t(step), c.schedule);
    kd::ref::adam_step(p.data(), g.data(), m.data(), v.data(), n, scheduled, int64_t(step));
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(kd::test::rel_error(d_p.download(), p), kTolerance) << "p";
  EXPECT_LE(kd::test::rel_error(d_m.download(), m), kTolerance) << "m";
  EXPECT_LE(kd::test::rel_error(d_v.download(), v), kTolerance) << "v";
  EXPECT_EQ(d_step.download()[0], c.first_step + kSteps);
}

TEST(OptimGpu, AdamMatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 11);
  kd::ref::AdamParams defaults;  // lr 1e-3, betas (0.9, 0.999), eps 1e-8 (SPEC section 2)
  kd::ref::AdamParams decayed;
  decayed.lr = 1e-2f;
  decayed.beta1 = 0.8f;
  decayed.beta2 = 0.99f;
  decayed.weight_decay = 0.05f;
  kd::ref::AdamParams adamw = decayed;  // torch.optim.AdamW: the same decay, decoupled from the gradient
  adamw.decoupled_weight_decay = true;
  const AdamCase cases[] = {AdamCase{defaults, 1}, AdamCase{decayed, 1}, AdamCase{adamw, 1, kCosine},
                            AdamCase{adamw, 4690, kCosine}, AdamCase{defaults, 4690}};
  for (size_t i = 0; i < std::size(cases); ++i) {
    const AdamCase& c = cases[i];
    for (const int64_t n : sizes_for_case(i)) {
      check_adam(c, n, /*offset=*/0, rng);
      check_adam(c, n, /*offset=*/1, rng);
    }
  }
}

void check_sgd(const kd::ref::SgdParams& params, int64_t n, int offset, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << "n " << n << " offset " << offset << " momentum " << params.momentum << " wd "
                                  << params.weight_decay);
  std::vector<float> p = kd::test::random_floats(size_t(n), -0.1f, 0.1f, rng);
  // Step 1 must overwrite the momentum buffer whatever it holds: start it at NaN on both sides.
  std::vector<float> buf(size_t(n), std::numeric_limits<float>::quiet_NaN());
  OffsetBuffer d_p(p, offset, "p"), d_buf(buf, offset, "momentum");
  OffsetBuffer d_g(std::vector<float>(size_t(n)), offset, "g");
  DeviceBuffer<uint64_t> d_step(1, "step");
  d_step.upload(std::vector<uint64_t>{1});
  for (int64_t step = 1; step <= kSteps; ++step) {
    const std::vector<float> g = kd::test::random_floats(size_t(n), -0.1f, 0.1f, rng);
    d_g.upload(g);
    kd::cuda::sgd_momentum_step(d_p.data(), d_g.data(), d_buf.data(), n, params, kCosine, d_step.data(), nullptr);
    kd::cuda::increment_counter(d_step.data(), nullptr);
    kd::ref::SgdParams scheduled = params;
    scheduled.lr = kd::scheduled_lr(params.lr, step, kCosine);
    kd::ref::sgd_momentum_step(p.data(), g.data(), buf.data(), n, scheduled, step);
  }
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(kd::test::rel_error(d_p.download(), p), kTolerance) << "p";
  EXPECT_LE(kd::test::rel_error(d_buf.download(), buf), kTolerance) << "momentum buffer";
}

TEST(OptimGpu, SgdMomentumMatchesReference) {
  KD_REQUIRE_GPU();
  std::mt19937_64 rng(kd::test::test_seed() + 12);
  kd::ref::SgdParams plain;  // lr 1e-2, momentum 0.9
  kd::ref::SgdParams decayed;
  decayed.lr = 5e-2f;
  decayed.momentum = 0.5f;
  decayed.weight_decay = 1e-3f;
  const kd::ref::SgdParams cases[] = {plain, decayed};
  for (size_t i = 0; i < std::size(cases); ++i) {
    const kd::ref::SgdParams& params = cases[i];
    for (const int64_t n : sizes_for_case(i)) {
      check_sgd(params, n, /*offset=*/0, rng);
      check_sgd(params, n, /*offset=*/1, rng);
    }
  }
}

}  // namespace
