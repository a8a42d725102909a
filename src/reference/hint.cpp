// CPU reference hint distance (kd/hint.h, kd/reference.h): per row, in
// double, the cosine or squared-error distance between the mapped student
// features and the teacher's, and its gradient with respect to the former.
#include <algorithm>
#include <cmath>

#include "kd/error.h"
#include "kd/reference.h"

namespace kd::ref {

double hint_loss(const float* m, const float* t, float* grad, float* row_loss, int b, int d, HintKind kind,
                 float weight) {
  if (kind == HintKind::Off) fail("hint_loss: no distance to compute (--hint off)");
  // d(batch mean)/d(r_i) = 1/b, times the loss weight.
  const double scale = double(weight) / double(b);
  double sum = 0;
  for (int i = 0; i < b; ++i) {
    const float* mi = m + int64_t(i) * d;
    const float* ti = t + int64_t(i) * d;
    double r = 0;
    if (kind == HintKind::Mse) {
      for (int j = 0; j < d; ++j) r += (double(mi[j]) - ti[j]) * (double(mi[j]) - ti[j]);
      r /= d;
      // dr/dm_j = 2 (m_j - t_j) / d
      if (grad)
        for (int j = 0; j < d; ++j) grad[int64_t(i) * d + j] = float(scale * 2.0 * (double(mi[j]) - ti[j]) / d);
    } else {
      double dot = 0, mm = 0, tt = 0;
      for (int j = 0; j < d; ++j) {
        dot += double(mi[j]) * ti[j];
        mm += double(mi[j]) * mi[j];
        tt += double(ti[j]) * ti[j];
      }
      const double norm_m = std::sqrt(mm), clamped_m = std::max(norm_m, kHintCosineEps);
      const double clamped_t = std::max(std::sqrt(tt), kHintCosineEps);
      const double cos = dot / (clamped_m * clamped_t);
      r = 1.0 - cos;
      // dcos/dm_j = t_j / (|m| |t|) - cos m_j / |m|^2; under the clamp |m| is a
      // constant and only the first term remains.
      if (grad) {
        const double along_m = norm_m > kHintCosineEps ? cos / (norm_m * norm_m) : 0.0;
        for (int j = 0; j < d; ++j)
          grad[int64_t(i) * d + j] = float(-scale * (ti[j] / (clamped_m * clamped_t) - along_m * mi[j]));
      }
    }
    if (row_loss) row_loss[i] = float(r);
    sum += r;
  }
  return b > 0 ? sum / b : 0.0;
}

}  // namespace kd::ref
