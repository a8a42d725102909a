// CPU reference inverted dropout. The keep decision for element i of a step is
// kd::dropout_keep(seed, step, i, p) (kd/philox.h), the same function the CUDA
// kernel evaluates, so both draw the identical mask for a (seed, step).
#include <algorithm>

#include "kd/philox.h"
#include "kd/reference.h"

namespace kd::ref {

// x: (n) -> y, mask: (n). p = 0 (also evaluation) copies x and keeps every element;
// p = 1 drops every element (the uniform draw is < 1), so 1/(1-p) is never applied.
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t step,
                     uint64_t first) {
  if (p == 0.0f) {
    std::copy(x, x + n, y);
    std::fill(mask, mask + n, uint8_t(1));
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = dropout_keep(seed, step, first + uint64_t(i), p);
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
}

// dy, mask: (n) -> dx: (n) = dy * mask / (1 - p).
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

}  // namespace kd::ref
