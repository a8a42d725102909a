// CPU reference optimiser steps, element by element in double, following
// torch.optim.Adam (amsgrad off) and torch.optim.SGD (dampening 0, no
// nesterov). Weight decay is L2 added to the gradient, as both of those do,
// except for Adam with decoupled_weight_decay, which follows torch.optim.AdamW.
#include <cmath>
#include <string>

#include "kd/error.h"
#include "kd/reference.h"

namespace kd::ref {
namespace {

void require_one_based(int64_t step, const char* who) {
  if (step < 1) fail(std::string(who) + ": step must be >= 1 (it counts this update), got " + std::to_string(step));
}

}  // namespace

// p, g, m, v: (n). m and v are read and rewritten; the update uses them as stored (float).
// The decoupled decay keeps the shrunk parameter in double until the one final
// rounding (torch.optim.AdamW rounds it to float first: at most 1 ulp apart).
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a, int64_t step) {
  require_one_based(step, "ref::adam_step");
  const double beta1 = a.beta1, beta2 = a.beta2;
  const double bias_correction1 = 1.0 - std::pow(beta1, double(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, double(step));
  const double decay = 1.0 - double(a.lr) * double(a.weight_decay);  // AdamW's shrink factor
  for (int64_t i = 0; i < n; ++i) {
    double param = p[i], grad = g[i];
    if (a.decoupled_weight_decay) {
      param *= decay;
    } else {
      grad += double(a.weight_decay) * param;
    }
    m[i] = float(beta1 * m[i] + (1.0 - beta1) * grad);
    v[i] = float(beta2 * v[i] + (1.0 - beta2) * grad * grad);
    const double m_hat = m[i] / bias_correction1;
    const double v_hat = v[i] / bias_correction2;
    p[i] = float(param - double(a.lr) * m_hat / (std::sqrt(v_hat) + double(a.eps)));
  }
}

// p, g, buf: (n). On step 1 buf is overwritten with the gradient, whatever it held.
void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const SgdParams& a, int64_t step) {
  require_one_based(step, "ref::sgd_momentum_step");
  for (int64_t i = 0; i < n; ++i) {
    const double grad = double(g[i]) + double(a.weight_decay) * p[i];
    buf[i] = float(step == 1 ? grad : double(a.momentum) * buf[i] + grad);
    p[i] = float(p[i] - double(a.lr) * buf[i]);
  }
}

}  // namespace kd::ref
