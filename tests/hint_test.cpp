// CPU reference hint distance (kd/hint.h, ref::hint_loss): hand-worked rows
// for cosine and mse, the norm clamp, finite differences of both, and the
// whole hint gradient (map, distance, the CpuModel's last-layer hook through
// its ReLU) against finite differences of the parameters; the features' width
// and its refusals; the map's init.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/cpu_model.h"
#include "kd/error.h"
#include "kd/hint.h"
#include "kd/params.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

using reftest::nan_filled;

// b = 2, d = 2: r_0 = (0^2 + 2^2) / 2 = 2, r_1 = (3^2 + 4^2) / 2 = 12.5, mean 7.25;
// grad = weight * 2 (m - t) / (b d) = (m - t) / 2 at weight 1.
TEST(HintLoss, MseHandComputed) {
  const std::vector<float> m = {1, 2, 0, 0}, t = {1, 0, 3, 4};
  std::vector<float> grad = nan_filled(4), row = nan_filled(2);
  EXPECT_DOUBLE_EQ(hint_loss(m.data(), t.data(), grad.data(), row.data(), 2, 2, HintKind::Mse, 1.0f), 7.25);
  EXPECT_EQ(row, std::vector<float>({2.0f, 12.5f}));
  EXPECT_EQ(grad, std::vector<float>({0.0f, 1.0f, -1.5f, -2.0f}));
}

// m = (3, 4), t = (4, 3): cos = 24 / 25, r = 0.04. dcos/dm = t / 25 - 0.96 m / 25
// = (1.12, -0.84) / 25 = (0.0448, -0.0336); grad = -weight * dcos/dm, so at
// weight 2 (-0.0896, 0.0672); the returned distance is unweighted. Second row:
// antiparallel, r = 2 and a gradient of 0 (cos is at its minimum).
TEST(HintLoss, CosineHandComputed) {
  const std::vector<float> m = {3, 4, 1, 0}, t = {4, 3, -2, 0};
  std::vector<float> grad = nan_filled(4), row = nan_filled(2);
  EXPECT_NEAR(hint_loss(m.data(), t.data(), grad.data(), row.data(), 2, 2, HintKind::Cosine, 2.0f), (0.04 + 2) / 2,
              1e-15);
  EXPECT_NEAR(row[0], 0.04f, 1e-7);
  EXPECT_EQ(row[1], 2.0f);
  // Per row the batch mean divides by b = 2: weight / b = 1.
  EXPECT_NEAR(grad[0], -0.0448f, 1e-7);
  EXPECT_NEAR(grad[1], 0.0336f, 1e-7);
  EXPECT_EQ(grad[2], 0.0f);
  EXPECT_EQ(grad[3], 0.0f);
}

// A zero mapped row (dead features and a zero bias): the norm is clamped at
// eps, cos = 0, r = 1, and the gradient t / (eps |t|) stays finite and points
// the row towards the teacher. A zero teacher row gives r = 1 and no gradient.
TEST(HintLoss, CosineClampsZeroNorms) {
  const std::vector<float> m = {0, 0, 1, 2}, t = {2, 0, 0, 0};
  std::vector<float> grad = nan_filled(4), row = nan_filled(2);
  hint_loss(m.data(), t.data(), grad.data(), row.data(), 2, 2, HintKind::Cosine, 1.0f);
  EXPECT_EQ(row, std::vector<float>({1.0f, 1.0f}));
  EXPECT_EQ(grad[0], float(-0.5 / kHintCosineEps));  // -(1/b) * (2 / (eps * 2))
  EXPECT_EQ(grad[1], 0.0f);
  EXPECT_EQ(grad[2], 0.0f);
  EXPECT_EQ(grad[3], 0.0f);
}

TEST(HintLoss, RefusesOff) {
  EXPECT_THROW(hint_loss(nullptr, nullptr, nullptr, nullptr, 1, 1, HintKind::Off, 1), Error);
}

// Central differences of weight * mean distance against grad, both kinds, on
// rows with norms well away from the clamp. Step 1e-3 on values of O(1): the
// O(h^2) truncation is ~1e-7 next to gradients of ~1e-2; the float gradient
// rounds at ~1e-8. Hence 1e-6 absolute plus 1e-4 relative.
TEST(HintLoss, GradientMatchesFiniteDifferences) {
  const int b = 3, d = 5;
  const float weight = 0.7f;
  std::mt19937_64 rng = reftest::make_rng(71);
  for (HintKind kind : {HintKind::Cosine, HintKind::Mse}) {
    SCOPED_TRACE(kind == HintKind::Cosine ? "cosine" : "mse");
    std::vector<float> m = reftest::uniform(size_t(b) * d, -1, 1, rng);
    const std::vector<float> t = reftest::uniform(size_t(b) * d, 0, 2, rng);
    std::vector<float> grad(m.size());
    hint_loss(m.data(), t.data(), grad.data(), nullptr, b, d, kind, weight);
    const std::vector<double> numeric = reftest::central_difference(
        m, 1e-3, [&] { return weight * hint_loss(m.data(), t.data(), nullptr, nullptr, b, d, kind, weight); });
    reftest::expect_gradient_near(grad, numeric, 1e-6, 1e-4, "dhint/dm");
  }
}

// The whole hint gradient as the CPU engines compute it: the student's
// features (the input of its last layer, after a ReLU), the map, the
// distance, then CpuModel::backward with the features' gradient added at the
// last layer (and no logits gradient), against central differences of the
// distance in the model's parameters and the map's. Random inputs leave some
// ReLUs off, so the hook's gradient must pass the ReLU's mask.
TEST(HintLoss, ThroughTheMapAndTheModelMatchesFiniteDifferences) {
  const Arch arch = parse_arch("flatten,dense:6,relu,dense:3", Shape{1, 2, 2, false}, 3, "--arch");
  const int b = 4, ds = 6, dt = 5;
  const float weight = 1.5f;
  EXPECT_EQ(hint_feature_width(arch, "student"), ds);
  std::mt19937_64 rng = reftest::make_rng(72);
  const std::vector<float> x = reftest::uniform(size_t(b) * 4, -2, 2, rng);
  const std::vector<float> t = reftest::uniform(size_t(b) * dt, 0, 2, rng);
  std::vector<float> map = init_hint_map(ds, dt, 9);
  CpuModel model(arch, b);
  init_params(arch, 8, model.params().data());
  for (HintKind kind : {HintKind::Cosine, HintKind::Mse}) {
    SCOPED_TRACE(kind == HintKind::Cosine ? "cosine" : "mse");
    std::vector<float> mapped(size_t(b) * dt), dmapped(mapped.size()), dfeatures(size_t(b) * ds), dmap(map.size());
    const auto distance = [&](bool with_grads) {
      model.forward(x.data(), b, /*training=*/true, 0, 1);
      const float* features = model.last_layer_input();
      dense_forward(features, map.data(), map.data() + dt * ds, mapped.data(), b, ds, dt, false);
      const double r =
          hint_loss(mapped.data(), t.data(), with_grads ? dmapped.data() : nullptr, nullptr, b, dt, kind, weight);
      if (with_grads)
        dense_backward(features, map.data(), dmapped.data(), dfeatures.data(), dmap.data(), dmap.data() + dt * ds, b,
                       ds, dt);
      return weight * r;
    };
    distance(true);
    const std::vector<float> no_logit_gradient(size_t(b) * 3, 0.0f);
    model.backward(no_logit_gradient.data(), b, dfeatures.data());
    const std::vector<float> dparams = model.grads();
    const std::vector<double> numeric_params =
        reftest::central_difference(model.params(), 1e-3, [&] { return distance(false); });
    reftest::expect_gradient_near(dparams, numeric_params, 1e-6, 1e-3, "dhint/dparams");
    const std::vector<double> numeric_map = reftest::central_difference(map, 1e-3, [&] { return distance(false); });
    reftest::expect_gradient_near(dmap, numeric_map, 1e-6, 1e-3, "dhint/dmap");
    // The last layer gets no gradient from the hint (it reads the features, the hint does not read it).
    for (int64_t i = arch.layers.back().param_offset; i < arch.param_count; ++i) EXPECT_EQ(dparams[size_t(i)], 0.0f);
  }
}

// The features are the last dense layer's input: the teacher's fc1 after ReLU
// and dropout, the student's last hidden layer. Without a hidden layer, or
// with a last layer that is not dense, --hint is refused naming the model.
TEST(HintFeatures, WidthAndRefusals) {
  const Shape mnist{1, 28, 28, false};
  EXPECT_EQ(hint_feature_width(parse_arch(kDefaultTeacherArch, mnist, 10, "--teacher-arch"), "teacher"), 128);
  EXPECT_EQ(hint_feature_width(parse_arch(kDefaultStudentArch, mnist, 10, "--student-arch"), "student"), 128);
  try {
    hint_feature_width(parse_arch("flatten,dense:10", mnist, 10, "--student-arch"), "student");
    FAIL() << "a student without a hidden layer has no features";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--hint: the student 'flatten,dense:10' has no hidden layer feeding a last dense layer, so it has no "
              "features to match; use a student with one (e.g. 'flatten,dense:128,relu,dense:10') or --hint off");
  }
}

// nn.Linear's bound 1/sqrt(fan in), the same values for the same seed, others for another.
TEST(HintMap, InitIsSeededAndBounded) {
  const std::vector<float> a = init_hint_map(16, 8, 1), b = init_hint_map(16, 8, 1), c = init_hint_map(16, 8, 2);
  ASSERT_EQ(a.size(), size_t(hint_map_param_count(16, 8)));
  EXPECT_EQ(a.size(), size_t(8 * 16 + 8));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (float v : a) EXPECT_LE(std::fabs(v), 0.25f);
}

}  // namespace
}  // namespace kd::ref
