// CPU reference fully connected layer (nn.Linear layout) and ReLU. Every dot
// product and column reduction is summed in double; backward passes keep one
// double row of partial sums so the innermost loop walks contiguous memory.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "kd/reference.h"

namespace kd::ref {

// x, y: (n); y may alias x.
void relu_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// y: (n) the forward output, dy: (n) -> dx: (n); dx may alias dy.
// The mask comes from y, not x: y > 0 exactly where x > 0.
void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// x: (b, in), w: (out, in), bias: (out) -> y: (b, out) = act(x . w^T + bias)
void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out, bool relu) {
  for (int row = 0; row < b; ++row) {
    const float* x_row = x + size_t(row) * in;
    for (int o = 0; o < out; ++o) {
      const float* w_row = w + size_t(o) * in;
      double sum = bias[o];
      for (int k = 0; k < in; ++k) sum += double(x_row[k]) * w_row[k];
      y[size_t(row) * out + o] = float(relu ? std::max(sum, 0.0) : sum);
    }
  }
}

// x: (b, in), w: (out, in), dy: (b, out) -> dx: (b, in) or null, dw: (out, in), db: (out)
//   dx = dy . w,  dw = dy^T . x,  db = column sums of dy
void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b, int in,
                    int out) {
  std::vector<double> acc(static_cast<size_t>(in));  // one row of dx or dw, (in)
  if (dx) {
    for (int row = 0; row < b; ++row) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int o = 0; o < out; ++o) {
        const double g = dy[size_t(row) * out + o];
        const float* w_row = w + size_t(o) * in;
        for (int k = 0; k < in; ++k) acc[k] += g * w_row[k];
      }
      float* dx_row = dx + size_t(row) * in;
      for (int k = 0; k < in; ++k) dx_row[k] = float(acc[k]);
    }
  }
  for (int o = 0; o < out; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    double bias_sum = 0;
    for (int row = 0; row < b; ++row) {
      const double g = dy[size_t(row) * out + o];
      const float* x_row = x + size_t(row) * in;
      for (int k = 0; k < in; ++k) acc[k] += g * x_row[k];
      bias_sum += g;
    }
    float* dw_row = dw + size_t(o) * in;
    for (int k = 0; k < in; ++k) dw_row[k] = float(acc[k]);
    db[o] = float(bias_sum);
  }
}

}  // namespace kd::ref
