// kd/exact_math.h: double arithmetic that gives the same bits on the host and
// on a CUDA device, for values both sides must agree on exactly (an
// augmentation's transform, a learning rate).
//
// Each operation is an explicit, individually rounded IEEE operation (fma where
// a product meets a sum), so no compiler can contract or reorder it differently
// on the two sides; sin and cos are a series evaluated with those operations,
// not the math libraries' sin and cos, whose last bits differ between host and
// device.
#pragma once

#include <cmath>

#include "kd/host_device.h"

namespace kd::exact {

KD_HOST_DEVICE double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

KD_HOST_DEVICE double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// sin and cos of x, |x| <= pi, by their Taylor series through x^21 / x^22 in
// Horner form. The first omitted terms, pi^23/23! = 1e-11 and pi^24/24! = 1.4e-12,
// are far below float resolution; near |x| = pi the result is within ~1e-15
// absolute of libm's.
KD_HOST_DEVICE void sin_cos(double x, double& sin_x, double& cos_x) {
  const double x2 = mul_rn(x, x);
  // (-1)^k / (2k+1)! and (-1)^(k+1) / (2k+2)!, k = 10 .. 1; every factorial here is exact in double.
  constexpr double kSin[] = {1.0 / 51090942171709440000.0,
                             -1.0 / 121645100408832000.0,
                             1.0 / 355687428096000.0,
                             -1.0 / 1307674368000.0,
                             1.0 / 6227020800.0,
                             -1.0 / 39916800.0,
                             1.0 / 362880.0,
                             -1.0 / 5040.0,
                             1.0 / 120.0,
                             -1.0 / 6.0};
  constexpr double kCos[] = {-1.0 / 1124000727777607680000.0,
                             1.0 / 2432902008176640000.0,
                             -1.0 / 6402373705728000.0,
                             1.0 / 20922789888000.0,
                             -1.0 / 87178291200.0,
                             1.0 / 479001600.0,
                             -1.0 / 3628800.0,
                             1.0 / 40320.0,
                             -1.0 / 720.0,
                             1.0 / 24.0};
  double s = kSin[0], c = kCos[0];
  for (int k = 1; k < 10; ++k) {
    s = fma_rn(s, x2, kSin[k]);
    c = fma_rn(c, x2, kCos[k]);
  }
  sin_x = mul_rn(x, fma_rn(s, x2, 1.0));         // x (1 - x^2/6 + ...)
  cos_x = fma_rn(fma_rn(c, x2, -0.5), x2, 1.0);  // 1 - x^2/2 + x^4/24 - ...
}

}  // namespace kd::exact
