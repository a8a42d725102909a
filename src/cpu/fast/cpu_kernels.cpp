// Branch-free, vectorisable loop kernels of the fast CPU ops (see cpu_kernels.h).
#include "cpu_kernels.h"

#include <algorithm>
#include <cmath>

#include "kd/philox.h"

// One clone per instruction set, picked by the loader (ifunc) on first call.
#if defined(__x86_64__)
#define KD_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KD_VECTOR_CLONES
#endif

namespace kd::fast {

KD_VECTOR_CLONES void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.0f);
}

KD_VECTOR_CLONES void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];  // loaded unconditionally, so the select becomes a vector blend
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

namespace {

// One output row of 2x2 pooling: input rows `top` and `bottom`, ow windows.
// Window order 0 1 / 2 3. A tournament with strict > picks the first index
// attaining the maximum, exactly as the reference's scan does. Integer and
// select arithmetic only, so the loop vectorises. Arg: uint8_t, or float
// where the winner is kept in a float lane next to the values.
template <class Arg>
inline void pool_window(float v0, float v1, float v2, float v3, float& best, Arg& arg) {
  const int right_top = v1 > v0, right_bottom = v3 > v2;
  const float best_top = right_top ? v1 : v0, best_bottom = right_bottom ? v3 : v2;
  const int bottom_wins = best_bottom > best_top;
  best = bottom_wins ? best_bottom : best_top;
  arg = Arg(right_top + bottom_wins * (2 + right_bottom - right_top));
}

inline void maxpool_row(const float* __restrict top, const float* __restrict bottom, float* __restrict y,
                        uint8_t* __restrict argmax, int ow) {
  for (int ox = 0; ox < ow; ++ox)
    pool_window(top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1], y[ox], argmax[ox]);
}

// The gradient of one output row routed to its windows' winners; every window
// element is written (dy at the winner, 0 elsewhere). The argmax is compared
// as float so the compare and the selects share one vector width.
inline void route_window(float g, float a, float& top_left, float& top_right, float& bottom_left, float& bottom_right) {
  top_left = a == 0.0f ? g : 0.0f;
  top_right = a == 1.0f ? g : 0.0f;
  bottom_left = a == 2.0f ? g : 0.0f;
  bottom_right = a == 3.0f ? g : 0.0f;
}

inline void maxpool_backward_row(const float* __restrict dy, const uint8_t* __restrict argmax, float* __restrict top,
                                 float* __restrict bottom, int ow) {
  for (int ox = 0; ox < ow; ++ox)
    route_window(dy[ox], float(argmax[ox]), top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]);
}

}  // namespace

KD_VECTOR_CLONES void maxpool_forward_kernel(const float* x, float* y, uint8_t* argmax, int64_t planes, int h, int w) {
  const int oh = h / 2, ow = w / 2;
  for (int64_t p = 0; p < planes; ++p)
    for (int oy = 0; oy < oh; ++oy) {
      const float* top = x + (size_t(p) * h + 2 * oy) * w;
      const size_t o = (size_t(p) * oh + oy) * ow;
      maxpool_row(top, top + w, y + o, argmax + o, ow);
    }
}

KD_VECTOR_CLONES void maxpool_backward_kernel(const float* dy, const uint8_t* argmax, float* dx, int64_t planes, int h,
                                              int w) {
  const int oh = h / 2, ow = w / 2;
  for (int64_t p = 0; p < planes; ++p) {
    float* plane = dx + size_t(p) * h * w;
    // An odd last row or column belongs to no window: its gradient is 0.
    if (h % 2) std::fill(plane + size_t(h - 1) * w, plane + size_t(h) * w, 0.0f);
    for (int oy = 0; oy < oh; ++oy) {
      float* top = plane + size_t(2 * oy) * w;
      const size_t o = (size_t(p) * oh + oy) * ow;
      maxpool_backward_row(dy + o, argmax + o, top, top + w, ow);
      if (w % 2) top[w - 1] = top[2 * w - 1] = 0.0f;
    }
  }
}

// Nchw16c pooling works on the 16 channels of a block at once (one vector of
// 16 lanes per pixel) and moves between the plain (y, dy, argmax) and the
// blocked tensors through a small tile of kTile windows x 16 channels, so both
// sides are read and written in contiguous runs.
namespace {
constexpr int kBlock = 16, kTile = 16;  // channels per Nchw16c block; windows per tile
}

KD_VECTOR_CLONES void maxpool_forward_blocked_kernel(const float* x, float* y, uint8_t* argmax, int64_t blocks, int h,
                                                     int w) {
  const int oh = h / 2, ow = w / 2;
  const size_t out_plane = size_t(oh) * ow;
  alignas(64) float tile_y[kTile * kBlock], tile_arg[kTile * kBlock];  // float winners: 16-lane vectors
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const float* xb = x + size_t(blk) * h * w * kBlock;
    float* yb = y + size_t(blk) * kBlock * out_plane;
    uint8_t* ab = argmax + size_t(blk) * kBlock * out_plane;
    for (int oy = 0; oy < oh; ++oy)
      for (int ox0 = 0; ox0 < ow; ox0 += kTile) {
        const int count = std::min(kTile, ow - ox0);
        for (int j = 0; j < count; ++j) {
          const float* top = xb + (size_t(2 * oy) * w + 2 * (ox0 + j)) * kBlock;
          const float* bottom = top + size_t(w) * kBlock;
          for (int l = 0; l < kBlock; ++l)  // one channel per lane
            pool_window(top[l], top[kBlock + l], bottom[l], bottom[kBlock + l], tile_y[j * kBlock + l],
                        tile_arg[j * kBlock + l]);
        }
        for (int l = 0; l < kBlock; ++l) {
          const size_t o = l * out_plane + size_t(oy) * ow + ox0;
          for (int j = 0; j < count; ++j) {
            yb[o + j] = tile_y[j * kBlock + l];
            ab[o + j] = uint8_t(tile_arg[j * kBlock + l]);
          }
        }
      }
  }
}

KD_VECTOR_CLONES void maxpool_backward_blocked_kernel(const float* dy, const uint8_t* argmax, float* dx, int64_t blocks,
                                                      int h, int w) {
  const int oh = h / 2, ow = w / 2;
  const size_t out_plane = size_t(oh) * ow, row = size_t(w) * kBlock;
  alignas(64) float tile_g[kTile * kBlock], tile_arg[kTile * kBlock];
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const float* gb = dy + size_t(blk) * kBlock * out_plane;
    const uint8_t* ab = argmax + size_t(blk) * kBlock * out_plane;
    float* db = dx + size_t(blk) * h * row;
    // An odd last row or column belongs to no window: its gradient is 0.
    if (h % 2) std::fill(db + size_t(h - 1) * row, db + size_t(h) * row, 0.0f);
    for (int oy = 0; oy < oh; ++oy) {
      float* top_row = db + size_t(2 * oy) * row;
      if (w % 2) {
        std::fill(top_row + (w - 1) * kBlock, top_row + w * kBlock, 0.0f);
        std::fill(top_row + row + (w - 1) * kBlock, top_row + row + w * kBlock, 0.0f);
      }
      for (int ox0 = 0; ox0 < ow; ox0 += kTile) {
        const int count = std::min(kTile, ow - ox0);
        for (int l = 0; l < kBlock; ++l) {
          const size_t o = l * out_plane + size_t(oy) * ow + ox0;
          for (int j = 0; j < count; ++j) {
            tile_g[j * kBlock + l] = gb[o + j];
            tile_arg[j * kBlock + l] = float(ab[o + j]);  // compared as float, as in maxpool_backward_row
          }
        }
        for (int j = 0; j < count; ++j) {
          float* top = top_row + size_t(2 * (ox0 + j)) * kBlock;
          float* bottom = top + row;
          for (int l = 0; l < kBlock; ++l)
            route_window(tile_g[j * kBlock + l], tile_arg[j * kBlock + l], top[l], top[kBlock + l], bottom[l],
                         bottom[kBlock + l]);
        }
      }
    }
  }
}

namespace {

constexpr int kLanes = 16;  // Philox blocks drawn together: one AVX-512 register per counter word

// philox4x32_10 (kd/philox.h) for blocks first .. first + kLanes - 1 of the draw
// (seed, step), one block per lane: out[4 * lane + j] = word j of that block,
// i.e. the draw of element 4 * (first + lane) + j, in element order.
inline void philox_blocks(uint64_t seed, uint64_t step, uint64_t first, uint32_t out[4 * kLanes]) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u, kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  // Lanes are independent: the compiler vectorises this loop, with the ten
  // rounds unrolled inside it.
  for (int l = 0; l < kLanes; ++l) {
    uint32_t c0 = uint32_t(first + l), c1 = uint32_t((first + l) >> 32), c2 = uint32_t(step), c3 = uint32_t(step >> 32);
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = uint64_t(kMul0) * c0, p1 = uint64_t(kMul1) * c2;
      c0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
      c1 = uint32_t(p1);
      c2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
      c3 = uint32_t(p0);
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    out[4 * l + 0] = c0;
    out[4 * l + 1] = c1;
    out[4 * l + 2] = c2;
    out[4 * l + 3] = c3;
  }
}

// Elements whose draws are `words` (n of them): keep when uniform >= p. A
// dropped element is x * 0 (0, or -0 for negative x: equal as numbers to the
// reference's 0 and identical in every later sum).
inline void dropout_apply(const float* __restrict x, float* __restrict y, uint8_t* __restrict mask,
                          const uint32_t* __restrict words, int n, float p, float scale) {
  for (int i = 0; i < n; ++i) {
    const int keep = philox_lane_uniform(words[i]) >= p;
    mask[i] = uint8_t(keep);
    y[i] = x[i] * (keep ? scale : 0.0f);
  }
}

}  // namespace

KD_VECTOR_CLONES void dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t begin, int64_t end,
                                             float p, uint64_t seed, uint64_t step, int64_t first) {
  const float scale = 1.0f / (1.0f - p);
  uint32_t words[4 * kLanes];
  // Whole groups of kLanes blocks (4 * kLanes counters) starting at a group
  // boundary; lo and hi are counters, element i has counter first + i.
  for (int64_t group = (first + begin) / (4 * kLanes); group * 4 * kLanes < first + end; ++group) {
    philox_blocks(seed, step, uint64_t(group) * kLanes, words);
    const int64_t lo = std::max(first + begin, group * 4 * kLanes),
                  hi = std::min(first + end, (group + 1) * 4 * kLanes);
    dropout_apply(x + (lo - first), y + (lo - first), mask + (lo - first), words + (lo - group * 4 * kLanes),
                  int(hi - lo), p, scale);
  }
}

KD_VECTOR_CLONES void dropout_backward_kernel(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale) {
  // Dropped: dy * 0 = +-0, as in the forward (never inf * 0: p = 1 keeps nothing).
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (mask[i] ? scale : 0.0f);
}

KD_VECTOR_CLONES void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
                                  float step_size, float inv_sqrt_bc2) {
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  // Decoupled (AdamW): p *= 1 - lr wd as torch.optim.AdamW's param.mul_; L2 (Adam): g += wd p.
  // Exactly one of the two is active; the inactive one is a multiply by 1 or an add of 0 * p,
  // both exact for finite p, so one branch-free loop serves both (and wd = 0 changes nothing).
  const float l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
  const float decay = a.decoupled_weight_decay ? float(1.0 - double(a.lr) * double(a.weight_decay)) : 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i] + l2 * p[i];
    const float mi = b1 * m[i] + (1.0f - b1) * grad;
    const float vi = b2 * v[i] + (1.0f - b2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

KD_VECTOR_CLONES void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                                 float weight_decay, bool first_step) {
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i] + weight_decay * p[i];
    const float b = first_step ? grad : momentum * buf[i] + grad;  // step 1 ignores whatever buf held
    buf[i] = b;
    p[i] -= lr * b;
  }
}

}  // namespace kd::fast
