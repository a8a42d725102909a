// CPU reference distillation loss (SPEC section 2), forward and gradient, all
// in double. Per row, three log-softmaxes: of s/T and t/T for the KL term and
// of s for the cross-entropy. Each subtracts the row maximum before exp, so
// logits of +-1e4 (or far beyond) stay finite; KL is evaluated from the
// log-probabilities rather than from ratios of probabilities, so a teacher
// probability that underflows to 0 contributes exactly 0 and never 0 * inf.
//
// Labels are not range-checked: they come from the IDX loader, which already
// rejects labels >= the class count (kd/data.h), and checking here per step
// would only duplicate that. A label outside [0, c) is undefined behaviour.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/reference.h"

namespace kd::ref {
namespace {

// logits: (c) -> log_probs: (c) = log_softmax(logits * scale), in double.
void log_softmax_row(const float* logits, int c, double scale, double* log_probs) {
  double row_max = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < c; ++j) row_max = std::max(row_max, logits[j] * scale);
  double sum = 0;
  for (int j = 0; j < c; ++j) sum += std::exp(logits[j] * scale - row_max);
  const double log_sum = std::log(sum);
  for (int j = 0; j < c; ++j) log_probs[j] = (logits[j] * scale - row_max) - log_sum;
}

// KL(p_t || p_s) = sum_j p_t[j] * (logp_t[j] - logp_s[j]) over classes with p_t[j] > 0.
double kl_from_log_probs(const double* logp_t, const double* logp_s, int c) {
  double kl = 0;
  for (int j = 0; j < c; ++j) {
    const double p_t = std::exp(logp_t[j]);
    if (p_t > 0) kl += p_t * (logp_t[j] - logp_s[j]);
  }
  return kl;
}

}  // namespace

// s: (b, c) student logits, t: (b, c) teacher logits or null when alpha == 0,
// labels: (b) assumed in [0, c), mix.partner_labels likewise when set
// -> grad: (b, c) or null, row_loss: (b) or null.
// Needs b >= 1, c >= 1. With c == 1 every softmax is 1: loss 0, gradient 0.
LossSums softmax_kl(const float* s, const float* t, const int32_t* labels, float* grad, float* row_loss, int b, int c,
                    float temperature, float alpha, const HardTargetMix& mix) {
  if (!t && alpha != 0.0f)
    fail("ref::softmax_kl: teacher logits are null but alpha = " + std::to_string(alpha) +
         "; pass the teacher's logits or use alpha = 0");
  const double T = temperature, a = alpha;
  const double inv_t = 1.0 / T;
  const size_t classes = static_cast<size_t>(c);
  std::vector<double> logp_s_soft(classes), logp_t_soft(classes), logp_s(classes);  // each (c)
  LossSums sums;
  for (int row = 0; row < b; ++row) {
    const float* s_row = s + size_t(row) * c;
    const int label = labels[row];
    // Without mixing the partner is the label itself at weight 0: the same
    // target (1 + 0) and CE as plain cross-entropy.
    const int partner = mix.partner_labels ? mix.partner_labels[row] : label;
    const double own_weight = mix.partner_labels ? mix.lambda : 1.0;
    const double partner_weight = mix.partner_labels ? mix.partner_weight : 0.0;
    log_softmax_row(s_row, c, 1.0, logp_s.data());
    const double ce =
        mix.partner_labels ? own_weight * -logp_s[label] + partner_weight * -logp_s[partner] : -logp_s[label];
    double kl = 0;
    if (t) {
      log_softmax_row(s_row, c, inv_t, logp_s_soft.data());
      log_softmax_row(t + size_t(row) * c, c, inv_t, logp_t_soft.data());
      kl = kl_from_log_probs(logp_t_soft.data(), logp_s_soft.data(), c);
    }
    const double loss = a * T * T * kl + (1.0 - a) * ce;
    sums.loss += loss;
    sums.kl += kl;
    sums.ce += ce;
    if (row_loss) row_loss[row] = float(loss);
    if (grad) {
      float* g_row = grad + size_t(row) * c;
      for (int j = 0; j < c; ++j) {
        const double target = (j == label ? own_weight : 0.0) + (j == partner ? partner_weight : 0.0);
        const double hard = std::exp(logp_s[j]) - target;
        const double soft = t ? std::exp(logp_s_soft[j]) - std::exp(logp_t_soft[j]) : 0.0;
        g_row[j] = float((a * T * soft + (1.0 - a) * hard) / b);
      }
    }
  }
  sums.loss /= b;
  sums.kl /= b;
  sums.ce /= b;
  return sums;
}

}  // namespace kd::ref
