// CPU reference optimisers against two steps iterated by hand with the
// torch.optim.Adam / torch.optim.SGD formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kd/error.h"
#include "kd/reference.h"

namespace kd::ref {
namespace {

// The hand values below are written in decimals; the parameters are floats (0.9f is
// 0.9 - 2.4e-8) and p, m, v are stored as floats after every step, which moves the
// results by a few 1e-8. 1e-6 absolute is 10x that and still 1/20000 of the smallest update.
constexpr double kHandTol = 1e-6;

TEST(Adam, TwoStepsByHand) {
  AdamParams a;
  a.lr = 0.1f;  // beta1 0.9, beta2 0.999, eps 1e-8, no weight decay (the defaults)
  // Element 0 starts at 1 with gradients 0.5 then -0.25; element 1 mirrors it; element 2
  // has zero gradient and must not move (m = v = 0 -> update 0 / (0 + eps) = 0).
  std::vector<float> p = {1, -2, 3}, m(3, 0), v(3, 0);
  const std::vector<float> g1 = {0.5f, -0.5f, 0}, g2 = {-0.25f, 0.25f, 0};

  adam_step(p.data(), g1.data(), m.data(), v.data(), 3, a, 1);
  // Step 1: m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025,
  //   m_hat = 0.05 / (1 - 0.9) = 0.5, v_hat = 0.00025 / (1 - 0.999) = 0.25, sqrt = 0.5,
  //   update = 0.1 * 0.5 / (0.5 + 1e-8) = 0.099999998 -> p = 0.900000002.
  EXPECT_NEAR(m[0], 0.05, kHandTol);
  EXPECT_NEAR(v[0], 0.00025, kHandTol);
  EXPECT_NEAR(p[0], 0.900000002, kHandTol);
  EXPECT_NEAR(p[1], -1.900000002, kHandTol);

  adam_step(p.data(), g2.data(), m.data(), v.data(), 3, a, 2);
  // Step 2: m = 0.9 * 0.05 + 0.1 * (-0.25) = 0.045 - 0.025 = 0.02,
  //   v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00024975 + 0.0000625 = 0.00031225,
  //   bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999,
  //   m_hat = 0.02 / 0.19 = 0.1052632, v_hat = 0.00031225 / 0.001999 = 0.1562031,
  //   sqrt(v_hat) = 0.3952254, update = 0.1 * 0.1052632 / 0.3952254 = 0.0266337,
  //   p = 0.9000000 - 0.0266337 = 0.8733663.
  EXPECT_NEAR(m[0], 0.02, kHandTol);
  EXPECT_NEAR(v[0], 0.00031225, kHandTol);
  EXPECT_NEAR(p[0], 0.8733663, kHandTol);
  EXPECT_NEAR(m[1], -0.02, kHandTol);
  EXPECT_NEAR(p[1], -1.8733663, kHandTol);
  EXPECT_EQ(p[2], 3.0f);
  EXPECT_EQ(m[2], 0.0f);
  EXPECT_EQ(v[2], 0.0f);
}

TEST(Adam, WeightDecayIsAddedToTheGradient) {
  AdamParams a;
  a.lr = 0.1f;
  a.weight_decay = 0.1f;
  std::vector<float> p = {1}, m = {0}, v = {0};
  const float g1 = 0.5f, g2 = -0.25f;
  adam_step(p.data(), &g1, m.data(), v.data(), 1, a, 1);
  // Step 1: g' = 0.5 + 0.1 * 1 = 0.6, m = 0.06, v = 0.00036; the first Adam step is
  //   lr * g' / |g'| up to eps, so p = 1 - 0.1 = 0.9 (to 2e-9).
  EXPECT_NEAR(m[0], 0.06, kHandTol);
  EXPECT_NEAR(p[0], 0.9, kHandTol);
  adam_step(p.data(), &g2, m.data(), v.data(), 1, a, 2);
  // Step 2: g' = -0.25 + 0.1 * 0.9 = -0.16, m = 0.054 - 0.016 = 0.038,
  //   v = 0.999 * 0.00036 + 0.001 * 0.0256 = 0.00038524,
  //   m_hat = 0.038 / 0.19 = 0.2, v_hat = 0.00038524 / 0.001999 = 0.1927164, sqrt = 0.4389947,
  //   update = 0.1 * 0.2 / 0.4389947 = 0.0455586, p = 0.9 - 0.0455586 = 0.8544414.
  EXPECT_NEAR(m[0], 0.038, kHandTol);
  EXPECT_NEAR(v[0], 0.00038524, kHandTol);
  EXPECT_NEAR(p[0], 0.8544414, kHandTol);
}

TEST(Adam, DecoupledWeightDecayShrinksTheParameterFirst) {
  // torch.optim.AdamW: p *= 1 - lr * wd, then the plain Adam update from the raw gradient.
  AdamParams a;
  a.lr = 0.1f;
  a.weight_decay = 0.1f;
  a.decoupled_weight_decay = true;
  std::vector<float> p = {1}, m = {0}, v = {0};
  const float g1 = 0.5f, g2 = -0.25f;
  adam_step(p.data(), &g1, m.data(), v.data(), 1, a, 1);
  // Step 1: p = 1 * (1 - 0.01) = 0.99; m = 0.05 and v = 0.00025 from g alone (L2 would give
  //   m = 0.06), update 0.099999998 as in TwoStepsByHand -> p = 0.890000002.
  EXPECT_NEAR(m[0], 0.05, kHandTol);
  EXPECT_NEAR(v[0], 0.00025, kHandTol);
  EXPECT_NEAR(p[0], 0.890000002, kHandTol);
  adam_step(p.data(), &g2, m.data(), v.data(), 1, a, 2);
  // Step 2: p = 0.890000002 * 0.99 = 0.881100002; m = 0.02, v = 0.00031225 and the update
  //   0.0266337 are TwoStepsByHand's -> p = 0.881100002 - 0.0266337 = 0.8544663.
  EXPECT_NEAR(m[0], 0.02, kHandTol);
  EXPECT_NEAR(v[0], 0.00031225, kHandTol);
  EXPECT_NEAR(p[0], 0.8544663, kHandTol);
}

TEST(Adam, ZeroWeightDecayIsPlainAdamInBothModes) {
  // With wd = 0 (the default) neither weight decay may change a bit: the L2 path
  // adds 0 * p, the decoupled path multiplies by 1 - 0 = 1, both exact.
  AdamParams plain;
  AdamParams decoupled;
  decoupled.decoupled_weight_decay = true;
  std::vector<float> p = {0.3f, -1.7f, 2e-3f, 5.0f}, m(4, 0), v(4, 0);
  std::vector<float> q = p, mq = m, vq = v;
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<float> g = {0.1f * float(step), -0.4f, 1e-5f, float(step) - 2};
    adam_step(p.data(), g.data(), m.data(), v.data(), 4, plain, step);
    adam_step(q.data(), g.data(), mq.data(), vq.data(), 4, decoupled, step);
  }
  EXPECT_EQ(p, q);
  EXPECT_EQ(m, mq);
  EXPECT_EQ(v, vq);
}

TEST(SgdMomentum, TwoStepsByHand) {
  SgdParams a;
  a.lr = 0.1f;
  a.momentum = 0.9f;
  // The first step must overwrite the buffer, whatever it held.
  std::vector<float> p = {1, -1}, buf(2, std::numeric_limits<float>::quiet_NaN());
  const std::vector<float> g1 = {0.5f, 2}, g2 = {-0.25f, 0};
  sgd_momentum_step(p.data(), g1.data(), buf.data(), 2, a, 1);
  // Step 1: buf = g = 0.5, p = 1 - 0.1 * 0.5 = 0.95;  buf = 2, p = -1 - 0.2 = -1.2.
  EXPECT_NEAR(buf[0], 0.5, kHandTol);
  EXPECT_NEAR(p[0], 0.95, kHandTol);
  EXPECT_NEAR(p[1], -1.2, kHandTol);
  sgd_momentum_step(p.data(), g2.data(), buf.data(), 2, a, 2);
  // Step 2: buf = 0.9 * 0.5 - 0.25 = 0.2, p = 0.95 - 0.02 = 0.93;
  //   buf = 0.9 * 2 + 0 = 1.8, p = -1.2 - 0.18 = -1.38 (momentum keeps moving it).
  EXPECT_NEAR(buf[0], 0.2, kHandTol);
  EXPECT_NEAR(p[0], 0.93, kHandTol);
  EXPECT_NEAR(buf[1], 1.8, kHandTol);
  EXPECT_NEAR(p[1], -1.38, kHandTol);
}

TEST(SgdMomentum, WeightDecayAndZeroMomentum) {
  SgdParams a;
  a.lr = 0.1f;
  a.momentum = 0.9f;
  a.weight_decay = 0.1f;
  float p = 1, buf = 0;
  const float g1 = 0.5f, g2 = -0.25f;
  sgd_momentum_step(&p, &g1, &buf, 1, a, 1);
  // g' = 0.5 + 0.1 * 1 = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
  EXPECT_NEAR(p, 0.94, kHandTol);
  sgd_momentum_step(&p, &g2, &buf, 1, a, 2);
  // g' = -0.25 + 0.1 * 0.94 = -0.156, buf = 0.54 - 0.156 = 0.384, p = 0.94 - 0.0384 = 0.9016
  EXPECT_NEAR(buf, 0.384, kHandTol);
  EXPECT_NEAR(p, 0.9016, kHandTol);

  SgdParams plain;
  plain.lr = 0.5f;
  plain.momentum = 0;
  float q = 1, q_buf = 7;
  sgd_momentum_step(&q, &g1, &q_buf, 1, plain, 3);  // momentum 0: buf = 0 * 7 + g, plain SGD
  EXPECT_NEAR(q, 0.75, kHandTol);                   // 1 - 0.5 * 0.5
}

TEST(Optim, StepCountIsOneBased) {
  float p = 0, g = 0, m = 0, v = 0;
  EXPECT_THROW(adam_step(&p, &g, &m, &v, 1, AdamParams{}, 0), Error);
  EXPECT_THROW(sgd_momentum_step(&p, &g, &m, 1, SgdParams{}, 0), Error);
}

}  // namespace
}  // namespace kd::ref
