// CpuModel: parameter layout, PyTorch-default init, the whole model's
// backward pass against central finite differences, and its ReLU backward
// moved past the max-pool against the plain chain of reference ops.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kd/arch.h"
#include "kd/error.h"
#include "kd/cpu_model.h"
#include "kd/reference.h"

namespace kd {
namespace {

Arch mnist_arch(const char* text) { return parse_arch(text, Shape{1, 28, 28, false}, 10, "--arch"); }

TEST(ParamTensors, DefaultTeacherMatchesPyTorchStateDict) {
  const Arch arch = mnist_arch(kDefaultTeacherArch);
  const std::vector<ParamTensor> p = param_tensors(arch);
  ASSERT_EQ(p.size(), 8u);
  EXPECT_EQ(p[0].name, "conv1.weight");
  EXPECT_EQ(p[0].shape, (std::vector<int64_t>{32, 1, 3, 3}));
  EXPECT_EQ(p[2].name, "conv2.weight");
  EXPECT_EQ(p[2].shape, (std::vector<int64_t>{64, 32, 3, 3}));
  EXPECT_EQ(p[4].name, "fc1.weight");
  EXPECT_EQ(p[4].shape, (std::vector<int64_t>{128, 9216}));
  EXPECT_EQ(p[7].name, "fc2.bias");
  EXPECT_EQ(p[7].shape, (std::vector<int64_t>{10}));
  int64_t next = 0;  // views tile the flat buffer with no gaps, in state_dict order
  for (const ParamTensor& t : p) {
    EXPECT_EQ(t.offset, next) << t.name;
    next += t.count;
  }
  EXPECT_EQ(next, 1199882);
}

TEST(ParamTensors, DefaultStudentIsThreeLinearLayers) {
  const std::vector<ParamTensor> p = param_tensors(mnist_arch(kDefaultStudentArch));
  ASSERT_EQ(p.size(), 6u);
  EXPECT_EQ(p[0].name, "fc1.weight");
  EXPECT_EQ(p[0].shape, (std::vector<int64_t>{256, 784}));
  EXPECT_EQ(p[4].name, "fc3.weight");
  EXPECT_EQ(p[4].shape, (std::vector<int64_t>{10, 128}));
  EXPECT_EQ(p[5].offset + p[5].count, 235146);
}

TEST(InitParams, UniformWithinOneOverSqrtFanInAndSeeded) {
  const Arch arch = mnist_arch(kDefaultStudentArch);
  std::vector<float> a(arch.param_count), b(arch.param_count), c(arch.param_count);
  init_params(arch, 7, a.data());
  init_params(arch, 7, b.data());
  init_params(arch, 8, c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const Layer& l : arch.layers) {
    if (l.param_count() == 0) continue;
    const double bound = 1.0 / std::sqrt(double(l.fan_in()));
    double sum = 0, sum_sq = 0, max_abs = 0;
    for (int64_t i = 0; i < l.param_count(); ++i) {
      const double x = a[l.param_offset + i];
      sum += x;
      sum_sq += x * x;
      max_abs = std::max(max_abs, std::abs(x));
    }
    const double n = double(l.param_count());
    EXPECT_LE(max_abs, bound) << l.name;
    EXPECT_GT(max_abs, 0.9 * bound) << l.name;  // the draws reach the edges of the interval
    // U(-a, a) has variance a^2/3; with n >= 1290 draws the sample variance is within 15 %.
    EXPECT_NEAR(sum_sq / n, bound * bound / 3, 0.15 * bound * bound / 3) << l.name;
    EXPECT_NEAR(sum / n, 0.0, 5 * bound / std::sqrt(3 * n)) << l.name;  // 5 sigma
  }
}

TEST(DropoutSeed, DiffersPerLayerAndSeed) {
  EXPECT_NE(dropout_seed(0, 0), dropout_seed(0, 1));
  EXPECT_NE(dropout_seed(0, 3), dropout_seed(1, 3));
  EXPECT_EQ(dropout_seed(5, 2), dropout_seed(5, 2));
}

// The model's parameter gradient against central differences of
// L(params) = sum(logits * r) for a fixed random r, through every layer kind
// (conv with padding and stride, relu, maxpool, dropout in training mode with a
// fixed mask, flatten, dense).
TEST(CpuModel, BackwardMatchesFiniteDifferences) {
  const Arch arch = parse_arch("conv:3:3:1:1,relu,maxpool:2,conv:4:3:2,relu,dropout:0.3,flatten,dense:6,relu,dense:3",
                               Shape{2, 9, 9, false}, 3, "--arch");
  const int b = 3;
  CpuModel model(arch, b);
  init_params(arch, 11, model.params().data());
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(size_t(b) * arch.input.size()), r(size_t(b) * 3);
  for (float& v : x) v = u(rng);
  for (float& v : r) v = u(rng);
  const uint64_t seed = 9, step = 4;
  auto loss = [&]() {
    const float* y = model.forward(x.data(), b, true, seed, step);
    double s = 0;
    for (size_t i = 0; i < r.size(); ++i) s += double(y[i]) * r[i];
    return s;
  };
  loss();
  model.backward(r.data(), b);
  const std::vector<float> analytic = model.grads();
  // Central differences in float32 forward passes: eps 1e-2 keeps the rounding
  // error (~1e-7 / 1e-2 per unit) far below the truncation error (~eps^2); an
  // element near a ReLU kink or a pool switch can still disagree, so the check
  // is on the norm over all parameters, with a 2 % bound.
  double num = 0, den = 0;
  const float eps = 1e-2f;
  for (size_t i = 0; i < analytic.size(); ++i) {
    const float keep = model.params()[i];
    model.params()[i] = keep + eps;
    const double up = loss();
    model.params()[i] = keep - eps;
    const double down = loss();
    model.params()[i] = keep;
    const double fd = (up - down) / (2.0 * eps);
    num += (fd - analytic[i]) * (fd - analytic[i]);
    den += fd * fd;
  }
  EXPECT_GT(den, 0.0);
  EXPECT_LT(std::sqrt(num / den), 2e-2);
}

// The model applies a ReLU's backward after the max-pool's, on the pooled
// gradient (max-pool and ReLU commute). Against the op chain in layer order
// (pool backward, then ReLU backward over the whole conv output) the weight
// gradients must agree bit for bit. The conv bias is pushed negative so that
// many windows are all zero after the ReLU: there the pooled gradient must be
// dropped, not routed to the window's first element (a finite-difference check
// over all parameters is too coarse to see that on a small conv).
TEST(CpuModel, ReluBackwardAfterTheMaxPoolEqualsTheLayerOrderChain) {
  const Arch arch = parse_arch("conv:4:3,relu,maxpool:2,flatten,dense:3", Shape{1, 8, 8, false}, 3, "--arch");
  const int b = 5, c = 4, hw = 6, pooled = 3, flat = c * pooled * pooled;
  CpuModel model(arch, b);
  init_params(arch, 21, model.params().data());
  const std::vector<ParamTensor> tensors = param_tensors(arch);  // conv1.weight, conv1.bias, fc.weight, fc.bias
  ASSERT_EQ(tensors.size(), 4u);
  float* p = model.params().data();
  for (int64_t i = 0; i < tensors[1].count; ++i) p[tensors[1].offset + i] = -0.3f;
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(size_t(b) * 64), r(size_t(b) * 3);
  for (float& v : x) v = u(rng);
  for (float& v : r) v = u(rng);
  model.forward(x.data(), b, /*training=*/true, 0, 0);  // no dropout: the inference values
  model.backward(r.data(), b);

  const ref::ConvShape s = ref::conv_shape(b, 1, 8, 8, c, 3);
  std::vector<float> conv(size_t(b) * c * hw * hw), pool(size_t(b) * flat), logits(size_t(b) * 3);
  std::vector<uint8_t> argmax(pool.size());
  ref::conv2d_forward(x.data(), p + tensors[0].offset, p + tensors[1].offset, conv.data(), s);
  ref::relu_forward(conv.data(), conv.data(), int64_t(conv.size()));
  ref::maxpool2x2_forward(conv.data(), pool.data(), argmax.data(), b, c, hw, hw);
  ref::dense_forward(pool.data(), p + tensors[2].offset, p + tensors[3].offset, logits.data(), b, flat, 3, false);
  std::vector<float> dpool(pool.size()), dconv(conv.size()), grads(model.grads().size());
  ref::dense_backward(pool.data(), p + tensors[2].offset, r.data(), dpool.data(), grads.data() + tensors[2].offset,
                      grads.data() + tensors[3].offset, b, flat, 3);
  ref::maxpool2x2_backward(dpool.data(), argmax.data(), dconv.data(), b, c, hw, hw);
  ref::relu_backward(conv.data(), dconv.data(), dconv.data(), int64_t(dconv.size()));
  ref::conv2d_backward_filter(x.data(), dconv.data(), grads.data() + tensors[0].offset,
                              grads.data() + tensors[1].offset, s);

  int dead_windows = 0;
  for (const float v : pool) dead_windows += v == 0.0f;
  EXPECT_GE(dead_windows, 20) << "the test needs windows the ReLU zeroed entirely";
  for (const ParamTensor& t : tensors)
    for (int64_t i = 0; i < t.count; ++i)
      ASSERT_EQ(model.grads()[t.offset + i], grads[t.offset + i]) << t.name << "[" << i << "]";
}

TEST(CpuModel, DefaultTeacherStepGivesFiniteNonzeroGradientsForEveryTensor) {
  const Arch arch = mnist_arch(kDefaultTeacherArch);
  CpuModel model(arch, 2);
  init_params(arch, 1, model.params().data());
  std::vector<float> x(2 * 784, 0.5f), dlogits(20, 0.05f);
  x[100] = -1.0f;
  model.forward(x.data(), 2, true, 3, 1);
  model.backward(dlogits.data(), 2);
  for (const ParamTensor& t : param_tensors(arch)) {
    double norm = 0;
    for (int64_t i = 0; i < t.count; ++i) {
      const float g = model.grads()[t.offset + i];
      ASSERT_TRUE(std::isfinite(g)) << t.name;
      norm += double(g) * g;
    }
    EXPECT_GT(norm, 0.0) << t.name;
  }
}

TEST(CpuModel, InferenceIgnoresDropoutAndRejectsOversizedBatch) {
  const Arch arch = mnist_arch("flatten,dropout:0.5,dense:10");
  CpuModel model(arch, 4);
  init_params(arch, 2, model.params().data());
  std::vector<float> x(4 * 784, 1.0f);
  const float* first = model.forward(x.data(), 4, false, 1, 1);
  const std::vector<float> a(first, first + 40);
  const float* b = model.forward(x.data(), 4, false, 2, 7);  // seed and step do not matter without training
  for (int i = 0; i < 40; ++i) EXPECT_EQ(a[i], b[i]);
  EXPECT_THROW(model.forward(x.data(), 5, false, 0, 0), Error);
}

// Inference reads x in place (no copy): a ReLU first then writes the model's own buffer, not x, and
// gives what a training forward gives; backward after it is refused (it kept no copy of x).
TEST(CpuModel, InferenceLeavesItsInputAloneAndBackwardNeedsATrainingForward) {
  const Arch arch = mnist_arch("relu,flatten,dense:10");
  CpuModel model(arch, 3);
  init_params(arch, 5, model.params().data());
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(3 * 784);
  for (float& v : x) v = u(rng);
  const std::vector<float> x_before = x;
  const float* inferred = model.forward(x.data(), 3, /*training=*/false, 0, 0);
  const std::vector<float> a(inferred, inferred + 30);
  EXPECT_EQ(x, x_before);
  EXPECT_THROW(model.backward(a.data(), 3), Error);
  const float* trained = model.forward(x.data(), 3, /*training=*/true, 0, 0);
  EXPECT_EQ(std::vector<float>(trained, trained + 30), a);
  EXPECT_NO_THROW(model.backward(a.data(), 3));
}

}  // namespace
}  // namespace kd
