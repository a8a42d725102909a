// CPU reference distillation loss: hand-computed cases, the textbook formula on
// moderate logits, extreme logits, softmax properties of the gradient, and the
// gradient against central finite differences of the loss for many T, alpha, C.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "kd/error.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

using reftest::nan_filled;

struct Textbook {
  double loss = 0, kl = 0, ce = 0;
};

// The loss straight from its definition, without max subtraction or log-space tricks:
// fine for |logits / T| < ~50, where it is independent of the implementation under test.
Textbook textbook_loss(const std::vector<float>& s, const std::vector<float>& t, const std::vector<int32_t>& labels,
                       int b, int c, double T, double alpha) {
  auto softmax = [c](const float* z, double scale) {
    std::vector<double> p(static_cast<size_t>(c));
    double sum = 0;
    for (int j = 0; j < c; ++j) sum += p[j] = std::exp(z[j] * scale);
    for (double& v : p) v /= sum;
    return p;
  };
  Textbook out;
  for (int i = 0; i < b; ++i) {
    const std::vector<double> ps = softmax(&s[size_t(i) * c], 1 / T), pt = softmax(&t[size_t(i) * c], 1 / T);
    const std::vector<double> p1 = softmax(&s[size_t(i) * c], 1.0);
    double kl = 0;
    for (int j = 0; j < c; ++j) kl += pt[j] * std::log(pt[j] / ps[j]);
    const double ce = -std::log(p1[labels[i]]);
    out.kl += kl / b;
    out.ce += ce / b;
    out.loss += (alpha * T * T * kl + (1 - alpha) * ce) / b;
  }
  return out;
}

TEST(SoftmaxKl, CrossEntropyByHand) {
  // alpha = 0, T = 1, no teacher: plain softmax cross-entropy.
  // Row 0: logits [0, ln 3] -> softmax [1/4, 3/4]; label 1 -> CE = -ln(3/4) = ln(4/3) = 0.2876821.
  // Row 1: logits [ln 3, 0] -> softmax [3/4, 1/4]; label 1 -> CE = ln 4 = 1.3862944.
  const float ln3 = float(std::log(3.0));
  const std::vector<float> s = {0, ln3, ln3, 0};
  const std::vector<int32_t> labels = {1, 1};
  std::vector<float> grad = nan_filled(4), row_loss = nan_filled(2);
  const LossSums sums = softmax_kl(s.data(), nullptr, labels.data(), grad.data(), row_loss.data(), 2, 2, 1.0f, 0.0f);
  // ln3 is stored as a float (error 2e-8), which moves the probabilities by < 1e-8; 1e-7 covers it.
  EXPECT_NEAR(row_loss[0], std::log(4.0 / 3.0), 1e-7);
  EXPECT_NEAR(row_loss[1], std::log(4.0), 1e-7);
  EXPECT_NEAR(sums.loss, (std::log(4.0 / 3.0) + std::log(4.0)) / 2, 1e-7);
  EXPECT_NEAR(sums.ce, sums.loss, 1e-12);
  EXPECT_EQ(sums.kl, 0.0);
  // (softmax - onehot) / b: row 0 [1/4, 3/4 - 1] / 2, row 1 [3/4, 1/4 - 1] / 2.
  const std::vector<float> expected = {0.125f, -0.125f, 0.375f, -0.375f};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(grad[i], expected[i], 1e-7) << "grad " << i;
}

TEST(SoftmaxKl, PureDistillationByHand) {
  // alpha = 1, T = 2: student [0, 0] -> softmax(s/T) = [1/2, 1/2]; teacher [0, 2 ln 3] ->
  // softmax(t/T) = softmax([0, ln 3]) = [1/4, 3/4].
  // KL = 1/4 ln((1/4)/(1/2)) + 3/4 ln((3/4)/(1/2)) = -0.1732868 + 0.3040988 = 0.1308120,
  // L = T^2 KL = 0.5232481; dL/ds = T (p_s - p_t) = 2 [1/4, -1/4] = [0.5, -0.5].
  const double kl = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  const std::vector<float> s = {0, 0}, t = {0, float(2 * std::log(3.0))};
  const std::vector<int32_t> labels = {0};
  std::vector<float> grad = nan_filled(2), row_loss = nan_filled(1);
  const LossSums sums = softmax_kl(s.data(), t.data(), labels.data(), grad.data(), row_loss.data(), 1, 2, 2.0f, 1.0f);
  EXPECT_NEAR(sums.kl, kl, 1e-7);  // 2 ln 3 rounded to float moves p_t by < 1e-8
  EXPECT_NEAR(sums.loss, 4 * kl, 4e-7);
  EXPECT_NEAR(row_loss[0], 4 * kl, 4e-7);
  EXPECT_NEAR(sums.ce, std::log(2.0), 1e-12);  // still reported, weighted 0
  EXPECT_NEAR(grad[0], 0.5, 1e-7);
  EXPECT_NEAR(grad[1], -0.5, 1e-7);
}

TEST(SoftmaxKl, IdenticalTeacherLeavesOnlyCrossEntropy) {
  const int b = 4, c = 7;
  const float T = 3, alpha = 0.7f;
  std::mt19937_64 rng = reftest::make_rng(71);
  const std::vector<float> s = reftest::uniform(size_t(b) * c, -4, 4, rng);
  const std::vector<int32_t> labels = {0, 6, 3, 3};
  std::vector<float> grad = nan_filled(s.size());
  const LossSums sums = softmax_kl(s.data(), s.data(), labels.data(), grad.data(), nullptr, b, c, T, alpha);
  EXPECT_EQ(sums.kl, 0.0);  // same logits, same arithmetic: every log-ratio is exactly 0
  EXPECT_NEAR(sums.loss, (1 - alpha) * sums.ce, 1e-12);
  for (int i = 0; i < b; ++i) {
    double sum = 0;
    for (int j = 0; j < c; ++j) sum += std::exp(double(s[size_t(i) * c + j]));
    for (int j = 0; j < c; ++j) {
      const double p = std::exp(double(s[size_t(i) * c + j])) / sum;
      const double expected = (1 - double(alpha)) * (p - (j == labels[i])) / b;
      // Float rounding of the stored gradient (|g| < 0.25 -> 1.5e-8) plus alpha's float error.
      EXPECT_NEAR(grad[size_t(i) * c + j], expected, 1e-7) << "row " << i << " class " << j;
    }
  }
}

// Mixup's hard targets (HardTargetMix): row 0's logits [0, ln 2, ln 3] give
// softmax [1/6, 2/6, 3/6]; labels 0 and 2 weighted 0.7 and 0.3 give
//   CE = 0.7 ln 6 + 0.3 ln 2,  dCE/ds = softmax - [0.7, 0, 0.3].
// Row 1 mixes a label with itself: plain CE of that label.
TEST(SoftmaxKl, MixedHardTargetsByHand) {
  const float ln2 = float(std::log(2.0)), ln3 = float(std::log(3.0));
  const std::vector<float> s = {0, ln2, ln3, 0, ln2, ln3};
  const std::vector<int32_t> labels = {0, 1}, partners = {2, 1};
  std::vector<float> grad = nan_filled(6), row_loss = nan_filled(2);
  const HardTargetMix mix{partners.data(), 0.7f, 0.3f};
  const LossSums sums =
      softmax_kl(s.data(), nullptr, labels.data(), grad.data(), row_loss.data(), 2, 3, 1.0f, 0.0f, mix);
  // ln 2 and ln 3 are stored as floats (error < 3e-8), and 0.7f, 0.3f carry ~1e-8: 2e-7 covers both.
  const double ce0 = 0.7 * std::log(6.0) + 0.3 * std::log(2.0), ce1 = std::log(3.0);
  EXPECT_NEAR(row_loss[0], ce0, 2e-7);
  EXPECT_NEAR(row_loss[1], ce1, 2e-7);
  EXPECT_NEAR(sums.ce, (ce0 + ce1) / 2, 2e-7);
  const std::vector<double> want = {(1.0 / 6 - 0.7) / 2, (2.0 / 6) / 2,       (3.0 / 6 - 0.3) / 2,
                                    (1.0 / 6) / 2,       (2.0 / 6 - 1.0) / 2, (3.0 / 6) / 2};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(grad[i], want[i], 1e-7) << "grad " << i;
}

// The mixed loss is linear in the target: lambda L(y) + (1 - lambda) L(y') with
// the same KL term, in loss and gradient, while distilling; lambda = 1 is the
// unmixed loss bit for bit.
TEST(SoftmaxKl, MixedTargetsAreTheWeightedSumOfTheTwoLosses) {
  const int b = 6, c = 10;
  // lambda and 1 - lambda exact in binary, so the two weights sum to exactly 1 and the KL term splits exactly.
  const float T = 4, alpha = 0.6f, lambda = 0.375f;
  std::mt19937_64 rng = reftest::make_rng(72);
  const std::vector<float> s = reftest::uniform(size_t(b) * c, -5, 5, rng), t = reftest::uniform(s.size(), -5, 5, rng);
  const std::vector<int32_t> labels = {0, 9, 3, 3, 5, 1}, partners = {4, 9, 8, 2, 0, 7};
  std::vector<float> g_mixed = nan_filled(s.size()), g_own = nan_filled(s.size()), g_partner = nan_filled(s.size());
  const LossSums mixed = softmax_kl(s.data(), t.data(), labels.data(), g_mixed.data(), nullptr, b, c, T, alpha,
                                    HardTargetMix{partners.data(), lambda, 1.0f - lambda});
  const LossSums own = softmax_kl(s.data(), t.data(), labels.data(), g_own.data(), nullptr, b, c, T, alpha);
  const LossSums partner = softmax_kl(s.data(), t.data(), partners.data(), g_partner.data(), nullptr, b, c, T, alpha);
  EXPECT_NEAR(mixed.loss, lambda * own.loss + (1 - lambda) * partner.loss, 1e-12);
  EXPECT_NEAR(mixed.ce, lambda * own.ce + (1 - lambda) * partner.ce, 1e-12);
  EXPECT_EQ(mixed.kl, own.kl);
  for (size_t i = 0; i < s.size(); ++i)  // float rounding of three stored gradients, each |g| < 1
    EXPECT_NEAR(g_mixed[i], lambda * g_own[i] + (1 - lambda) * g_partner[i], 2e-7) << i;
  std::vector<float> g_unit = nan_filled(s.size());
  const LossSums unit = softmax_kl(s.data(), t.data(), labels.data(), g_unit.data(), nullptr, b, c, T, alpha,
                                   HardTargetMix{partners.data(), 1.0f, 0.0f});
  EXPECT_EQ(unit.loss, own.loss);
  EXPECT_EQ(g_unit, g_own);
}

TEST(SoftmaxKl, MatchesTextbookFormula) {
  const int b = 5, c = 10;
  std::mt19937_64 rng = reftest::make_rng(72);
  const std::vector<float> s = reftest::uniform(size_t(b) * c, -5, 5, rng);
  const std::vector<float> t = reftest::uniform(size_t(b) * c, -5, 5, rng);
  const std::vector<int32_t> labels = {0, 9, 4, 4, 1};
  for (float T : {0.5f, 1.0f, 4.0f, 50.0f}) {
    for (float alpha : {0.0f, 0.3f, 0.9f, 1.0f}) {
      SCOPED_TRACE(testing::Message() << "T=" << T << " alpha=" << alpha);
      std::vector<float> row_loss = nan_filled(size_t(b));
      const LossSums sums = softmax_kl(s.data(), t.data(), labels.data(), nullptr, row_loss.data(), b, c, T, alpha);
      const Textbook want = textbook_loss(s, t, labels, b, c, T, alpha);
      // Both in double from the same float inputs, by different but well-conditioned routes
      // (|logits/T| <= 10): they agree to ~1e-14; 1e-10 leaves room and catches any real slip.
      EXPECT_NEAR(sums.loss, want.loss, 1e-10 * (1 + want.loss));
      EXPECT_NEAR(sums.kl, want.kl, 1e-10 * (1 + want.kl));
      EXPECT_NEAR(sums.ce, want.ce, 1e-10 * (1 + want.ce));
      double row_mean = 0;
      for (float l : row_loss) row_mean += l;
      EXPECT_NEAR(row_mean / b, sums.loss, 1e-6 * (1 + sums.loss));  // rows stored as float
    }
  }
}

TEST(SoftmaxKl, ExtremeLogitsStayFinite) {
  // Row 0 label 0, row 1 label 1, same logits. T = 4, alpha = 0.5.
  // s/T = [2500, -2500, 0] -> log softmax = [0, -5000, -2500] (exp(-2500) is 0 in double);
  // t/T = [-2500, 2500, 0] -> p_t = [0, 1, 0]: KL = 1 * (0 - (-5000)) = 5000, T^2 KL = 80000.
  // CE(s, 0) = 0, CE(s, 1) = 2e4. Row losses: 0.5 * 80000 + 0.5 * 0 = 40000 and 40000 + 1e4 = 50000.
  // Gradient rows (before / b = 2): alpha T (p_s - p_t) = 2 [1, -1, 0], plus (1 - alpha) (p_s - onehot):
  // row 0 adds 0, row 1 adds 0.5 [1, -1, 0].
  const std::vector<float> s = {1e4f, -1e4f, 0, 1e4f, -1e4f, 0};
  const std::vector<float> t = {-1e4f, 1e4f, 0, -1e4f, 1e4f, 0};
  const std::vector<int32_t> labels = {0, 1};
  std::vector<float> grad = nan_filled(6), row_loss = nan_filled(2);
  const LossSums sums = softmax_kl(s.data(), t.data(), labels.data(), grad.data(), row_loss.data(), 2, 3, 4.0f, 0.5f);
  // Every quantity here is a small integer or an exact exp(0) / exp(-huge), so exact.
  EXPECT_EQ(row_loss, std::vector<float>({40000, 50000}));
  EXPECT_EQ(sums.loss, 45000.0);
  EXPECT_EQ(sums.kl, 5000.0);
  EXPECT_EQ(sums.ce, 1e4);
  EXPECT_EQ(grad, std::vector<float>({1, -1, 0, 1.25f, -1.25f, 0}));

  for (float T : {0.5f, 1.0f, 50.0f}) {
    for (float alpha : {0.0f, 0.5f, 1.0f}) {
      std::vector<float> g = nan_filled(6);
      const LossSums x = softmax_kl(s.data(), t.data(), labels.data(), g.data(), nullptr, 2, 3, T, alpha);
      EXPECT_TRUE(std::isfinite(x.loss) && std::isfinite(x.kl) && std::isfinite(x.ce))
          << "T=" << T << " alpha=" << alpha;
      for (float v : g) EXPECT_TRUE(std::isfinite(v)) << "T=" << T << " alpha=" << alpha;
    }
  }
}

TEST(SoftmaxKl, ZeroTeacherProbabilityContributesNothing) {
  // A masked teacher class (logit -inf) has p_t = 0 and log p_t = -inf; its KL term must be
  // 0, not 0 * inf = NaN. T = 1, alpha = 1: p_t = [0, 1/2, 1/2], p_s = [1/3, 1/3, 1/3],
  // KL = 2 * 1/2 * ln((1/2) / (1/3)) = ln 1.5 = 0.4054651; grad = p_s - p_t = [1/3, -1/6, -1/6].
  const std::vector<float> s = {0, 0, 0}, t = {-std::numeric_limits<float>::infinity(), 0, 0};
  const std::vector<int32_t> labels = {2};
  std::vector<float> grad = nan_filled(3);
  const LossSums sums = softmax_kl(s.data(), t.data(), labels.data(), grad.data(), nullptr, 1, 3, 1.0f, 1.0f);
  EXPECT_NEAR(sums.kl, std::log(1.5), 1e-12);  // exact inputs, double arithmetic
  EXPECT_NEAR(sums.loss, std::log(1.5), 1e-12);
  const std::vector<double> expected = {1.0 / 3, -1.0 / 6, -1.0 / 6};
  for (size_t j = 0; j < 3; ++j) EXPECT_NEAR(grad[j], expected[j], 3e-8) << "class " << j;  // float rounding
}

TEST(SoftmaxKl, SingleClassHasZeroLossAndGradient) {
  const std::vector<float> s = {3, -1e4f, 7}, t = {-2, 5, 1e4f};
  const std::vector<int32_t> labels = {0, 0, 0};
  for (float T : {0.5f, 4.0f}) {
    for (float alpha : {0.0f, 0.5f, 1.0f}) {
      std::vector<float> grad = nan_filled(3), row_loss = nan_filled(3);
      const LossSums x = softmax_kl(s.data(), t.data(), labels.data(), grad.data(), row_loss.data(), 3, 1, T, alpha);
      // softmax of one logit is exactly 1, its log exactly 0: everything is exactly 0.
      EXPECT_EQ(x.loss, 0.0);
      EXPECT_EQ(x.kl, 0.0);
      EXPECT_EQ(x.ce, 0.0);
      EXPECT_EQ(grad, std::vector<float>(3, 0.0f));
      EXPECT_EQ(row_loss, std::vector<float>(3, 0.0f));
    }
  }
}

TEST(SoftmaxKl, GradientRowsSumToZero) {
  std::mt19937_64 rng = reftest::make_rng(73);
  for (int c : {2, 10, 33, 1000}) {
    const int b = 3;
    const std::vector<float> s = reftest::uniform(size_t(b) * c, -8, 8, rng);
    const std::vector<float> t = reftest::uniform(size_t(b) * c, -8, 8, rng);
    const std::vector<int32_t> labels = {0, c - 1, c / 2};
    for (float T : {0.5f, 4.0f, 50.0f}) {
      std::vector<float> grad = nan_filled(s.size());
      softmax_kl(s.data(), t.data(), labels.data(), grad.data(), nullptr, b, c, T, 0.6f);
      for (int i = 0; i < b; ++i) {
        double sum = 0, magnitude = 0;
        for (int j = 0; j < c; ++j) {
          sum += grad[size_t(i) * c + j];
          magnitude += std::fabs(grad[size_t(i) * c + j]);
        }
        // Both softmaxes sum to 1 and onehot sums to 1, so the exact row sum is 0; each stored
        // entry carries a float rounding of at most 6e-8 of itself.
        EXPECT_LE(std::fabs(sum), 1e-7 * magnitude) << "c=" << c << " T=" << T << " row " << i;
      }
    }
  }
}

TEST(SoftmaxKl, GradientMatchesFiniteDifferences) {
  std::mt19937_64 rng = reftest::make_rng(74);
  const int b = 3;
  for (int c : {1, 2, 10, 33}) {
    for (float T : {0.5f, 1.0f, 4.0f, 50.0f}) {
      for (float alpha : {0.0f, 0.3f, 1.0f}) {
        SCOPED_TRACE(testing::Message() << "c=" << c << " T=" << T << " alpha=" << alpha);
        std::vector<float> s = reftest::uniform(size_t(b) * c, -3, 3, rng);
        const std::vector<float> t = reftest::uniform(size_t(b) * c, -3, 3, rng);
        std::vector<int32_t> labels(b);
        for (int i = 0; i < b; ++i) labels[size_t(i)] = int32_t(rng() % uint64_t(c));
        std::vector<float> grad = nan_filled(s.size());
        softmax_kl(s.data(), t.data(), labels.data(), grad.data(), nullptr, b, c, T, alpha);
        auto loss = [&] {
          return softmax_kl(s.data(), t.data(), labels.data(), nullptr, nullptr, b, c, T, alpha).loss;
        };
        // The loss is smooth and computed in double. Central-difference truncation is
        // h^2/6 * |L'''| with |L'''| <= ~2 (the T^2 KL(s/T) term scales as alpha / T,
        // largest at T = 0.5): ~3e-7 at h = 1e-3. The stored gradient adds float rounding
        // (6e-8 relative). A wrong factor of T or of 1/b is off by > 1e-2.
        reftest::expect_gradient_near(grad, reftest::central_difference(s, 1e-3, loss), 1e-6, 1e-5, "dL/ds");
      }
    }
  }
}

TEST(SoftmaxKl, OptionalOutputsAndMissingTeacher) {
  const int b = 2, c = 5;
  std::mt19937_64 rng = reftest::make_rng(75);
  const std::vector<float> s = reftest::uniform(size_t(b) * c, -2, 2, rng);
  const std::vector<float> t = reftest::uniform(size_t(b) * c, -2, 2, rng);
  const std::vector<int32_t> labels = {4, 1};
  std::vector<float> with_teacher(s.size()), without_teacher = nan_filled(s.size());
  const LossSums a = softmax_kl(s.data(), t.data(), labels.data(), with_teacher.data(), nullptr, b, c, 2.0f, 0.0f);
  const LossSums n = softmax_kl(s.data(), nullptr, labels.data(), without_teacher.data(), nullptr, b, c, 2.0f, 0.0f);
  EXPECT_EQ(with_teacher, without_teacher);  // alpha = 0: the teacher term is weighted 0 either way
  EXPECT_EQ(a.loss, n.loss);
  EXPECT_GT(a.kl, 0.0);  // still measured when a teacher is given
  EXPECT_EQ(n.kl, 0.0);
  const LossSums bare = softmax_kl(s.data(), t.data(), labels.data(), nullptr, nullptr, b, c, 2.0f, 0.5f);
  const LossSums full = softmax_kl(s.data(), t.data(), labels.data(), with_teacher.data(), nullptr, b, c, 2.0f, 0.5f);
  EXPECT_EQ(bare.loss, full.loss);
  EXPECT_NEAR(full.loss, 0.5 * 4 * full.kl + 0.5 * full.ce, 1e-12);  // alpha T^2 KL + (1 - alpha) CE
  EXPECT_THROW(softmax_kl(s.data(), nullptr, labels.data(), nullptr, nullptr, b, c, 2.0f, 0.5f), Error);
}

}  // namespace
}  // namespace kd::ref
