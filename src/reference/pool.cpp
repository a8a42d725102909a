// CPU reference 2x2 max pooling, stride 2, floor mode (nn.MaxPool2d(2)): an odd
// last row or column belongs to no window, gets no output and a zero gradient.
#include <algorithm>
#include <cstddef>

#include "kd/reference.h"

namespace kd::ref {
namespace {

// Offsets of the four window elements from its top-left corner in a row of
// width w, in window row-major order (the order the argmax index refers to).
struct Window {
  size_t offset[4];
  explicit Window(int w) : offset{0, 1, size_t(w), size_t(w) + 1} {}
};

}  // namespace

// x: (n, c, h, w) -> y, argmax: (n, c, h/2, w/2); argmax in [0, 4), first max wins.
void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w) {
  const int oh = h / 2, ow = w / 2;
  const Window window(w);
  const int64_t planes = int64_t(n) * c;
  for (int64_t p = 0; p < planes; ++p) {
    const float* x_plane = x + size_t(p) * h * w;
    for (int oy = 0; oy < oh; ++oy) {
      for (int ox = 0; ox < ow; ++ox) {
        const float* corner = x_plane + size_t(2 * oy) * w + 2 * ox;
        int best = 0;
        for (int q = 1; q < 4; ++q)
          if (corner[window.offset[q]] > corner[window.offset[best]]) best = q;
        const size_t o = (size_t(p) * oh + oy) * ow + ox;
        y[o] = corner[window.offset[best]];
        argmax[o] = uint8_t(best);
      }
    }
  }
}

// dy, argmax: (n, c, h/2, w/2) -> dx: (n, c, h, w), dy routed to each window's winner, 0 elsewhere.
void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w) {
  const int oh = h / 2, ow = w / 2;
  const Window window(w);
  const int64_t planes = int64_t(n) * c;
  std::fill(dx, dx + size_t(planes) * h * w, 0.0f);
  for (int64_t p = 0; p < planes; ++p) {
    float* dx_plane = dx + size_t(p) * h * w;
    for (int oy = 0; oy < oh; ++oy) {
      for (int ox = 0; ox < ow; ++ox) {
        const size_t o = (size_t(p) * oh + oy) * ow + ox;
        dx_plane[size_t(2 * oy) * w + 2 * ox + window.offset[argmax[o]]] = dy[o];
      }
    }
  }
}

}  // namespace kd::ref
