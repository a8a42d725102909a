// CPU reference 2-D convolution (cross-correlation, as nn.Conv2d): forward,
// backward data and backward filter for any kernel size, stride and zero
// padding. Every output element is a double-precision sum over its taps.
//
// Instead of testing each tap for falling into the padding, every loop runs
// only over the output positions whose input coordinate lies inside the
// image; valid_outputs() computes that span once per kernel offset. Loops are
// ordered so the innermost one walks contiguous output (or input) columns.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "kd/reference.h"

namespace kd::ref {
namespace {

struct Span {
  int begin = 0, end = 0;
};

// Output positions o in [0, out_size) whose input coordinate o*stride - pad + tap
// lies inside [0, in_size). tap: kernel offset in [0, k).
Span valid_outputs(int tap, int in_size, int out_size, int stride, int pad) {
  const int lowest = pad - tap;                 // need o*stride >= lowest
  const int highest = in_size - 1 + pad - tap;  // need o*stride <= highest
  if (highest < 0) return {};
  const int begin = lowest > 0 ? (lowest + stride - 1) / stride : 0;
  const int end = std::min(out_size, highest / stride + 1);
  return {begin, std::max(begin, end)};
}

// For kernel tap (ky, kx), calls row(oy, iy, ox_begin, ox_end, ix_shift) once per
// output row oy whose input row iy = oy*stride - pad + ky exists; the output
// columns ox in [ox_begin, ox_end) are exactly those whose input column
// ix = ox*stride + ix_shift exists.
template <typename RowFn>
void for_each_valid_row(const ConvShape& s, int ky, int kx, RowFn row) {
  const Span rows = valid_outputs(ky, s.h, s.out_h(), s.stride, s.pad);
  const Span cols = valid_outputs(kx, s.w, s.out_w(), s.stride, s.pad);
  if (cols.begin == cols.end) return;
  for (int oy = rows.begin; oy < rows.end; ++oy) row(oy, oy * s.stride - s.pad + ky, cols.begin, cols.end, kx - s.pad);
}

size_t plane_in(const ConvShape& s) { return size_t(s.h) * s.w; }
size_t plane_out(const ConvShape& s) { return size_t(s.out_h()) * s.out_w(); }
size_t kernel_taps(const ConvShape& s) { return size_t(s.k) * s.k; }

}  // namespace

// x: (n, in_c, h, w), w: (out_c, in_c, k, k), b: (out_c) or null -> y: (n, out_c, out_h, out_w)
void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
  const int ow = s.out_w();
  std::vector<double> acc(plane_out(s));  // one output plane (out_h, out_w)
  for (int n = 0; n < s.n; ++n) {
    for (int oc = 0; oc < s.out_c; ++oc) {
      std::fill(acc.begin(), acc.end(), b ? double(b[oc]) : 0.0);
      for (int ic = 0; ic < s.in_c; ++ic) {
        const float* x_plane = x + (size_t(n) * s.in_c + ic) * plane_in(s);     // (h, w)
        const float* kernel = w + (size_t(oc) * s.in_c + ic) * kernel_taps(s);  // (k, k)
        for (int ky = 0; ky < s.k; ++ky) {
          for (int kx = 0; kx < s.k; ++kx) {
            const double weight = kernel[ky * s.k + kx];
            for_each_valid_row(s, ky, kx, [&](int oy, int iy, int ox_begin, int ox_end, int ix_shift) {
              const float* x_row = x_plane + size_t(iy) * s.w;
              double* acc_row = acc.data() + size_t(oy) * ow;
              for (int ox = ox_begin; ox < ox_end; ++ox) acc_row[ox] += weight * x_row[ox * s.stride + ix_shift];
            });
          }
        }
      }
      float* y_plane = y + (size_t(n) * s.out_c + oc) * plane_out(s);
      for (size_t i = 0; i < acc.size(); ++i) y_plane[i] = float(acc[i]);
    }
  }
}

// dy: (n, out_c, out_h, out_w), w: (out_c, in_c, k, k) -> dx: (n, in_c, h, w)
// dx[n, ic, iy, ix] = sum over (oc, ky, kx) with iy = oy*stride - pad + ky, ix likewise,
// of dy[n, oc, oy, ox] * w[oc, ic, ky, kx]; inputs no window covers get 0.
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
  const int ow = s.out_w();
  std::vector<double> acc(plane_in(s));  // one input-gradient plane (h, w)
  for (int n = 0; n < s.n; ++n) {
    for (int ic = 0; ic < s.in_c; ++ic) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int oc = 0; oc < s.out_c; ++oc) {
        const float* dy_plane = dy + (size_t(n) * s.out_c + oc) * plane_out(s);  // (out_h, out_w)
        const float* kernel = w + (size_t(oc) * s.in_c + ic) * kernel_taps(s);   // (k, k)
        for (int ky = 0; ky < s.k; ++ky) {
          for (int kx = 0; kx < s.k; ++kx) {
            const double weight = kernel[ky * s.k + kx];
            for_each_valid_row(s, ky, kx, [&](int oy, int iy, int ox_begin, int ox_end, int ix_shift) {
              const float* dy_row = dy_plane + size_t(oy) * ow;
              double* acc_row = acc.data() + size_t(iy) * s.w;
              for (int ox = ox_begin; ox < ox_end; ++ox) acc_row[ox * s.stride + ix_shift] += weight * dy_row[ox];
            });
          }
        }
      }
      float* dx_plane = dx + (size_t(n) * s.in_c + ic) * plane_in(s);
      for (size_t i = 0; i < acc.size(); ++i) dx_plane[i] = float(acc[i]);
    }
  }
}

// x: (n, in_c, h, w), dy: (n, out_c, out_h, out_w) -> dw: (out_c, in_c, k, k), db: (out_c) or null
// dw[oc, ic, ky, kx] = sum over (n, oy, ox) of dy[n, oc, oy, ox] * x[n, ic, iy, ix]; db[oc] = sum of dy[., oc].
void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s) {
  const int ow = s.out_w();
  // Per-column partial sums, (out_w): independent accumulators the compiler can keep in
  // vector registers, added up once per tap.
  std::vector<double> column_sums(static_cast<size_t>(ow));
  for (int oc = 0; oc < s.out_c; ++oc) {
    for (int ic = 0; ic < s.in_c; ++ic) {
      for (int ky = 0; ky < s.k; ++ky) {
        for (int kx = 0; kx < s.k; ++kx) {
          std::fill(column_sums.begin(), column_sums.end(), 0.0);
          for (int n = 0; n < s.n; ++n) {
            const float* x_plane = x + (size_t(n) * s.in_c + ic) * plane_in(s);
            const float* dy_plane = dy + (size_t(n) * s.out_c + oc) * plane_out(s);
            for_each_valid_row(s, ky, kx, [&](int oy, int iy, int ox_begin, int ox_end, int ix_shift) {
              const float* x_row = x_plane + size_t(iy) * s.w;
              const float* dy_row = dy_plane + size_t(oy) * ow;
              for (int ox = ox_begin; ox < ox_end; ++ox)
                column_sums[ox] += double(dy_row[ox]) * x_row[ox * s.stride + ix_shift];
            });
          }
          double sum = 0;
          for (double partial : column_sums) sum += partial;
          dw[((size_t(oc) * s.in_c + ic) * s.k + ky) * s.k + kx] = float(sum);
        }
      }
    }
    if (db) {
      double sum = 0;
      for (int n = 0; n < s.n; ++n) {
        const float* dy_plane = dy + (size_t(n) * s.out_c + oc) * plane_out(s);
        for (size_t i = 0; i < plane_out(s); ++i) sum += dy_plane[i];
      }
      db[oc] = float(sum);
    }
  }
}

}  // namespace kd::ref
