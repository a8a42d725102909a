// WinogradConv (winograd_conv.h): F(4x4, 3x3) on 16-float vectors.
//
// Work is split into chunks of kChunk output tiles (a tile: one image, one
// 4x4 block of output positions, all channels). A chunk's transformed inputs
// (36 x kChunk x in_c) and GEMM outputs (36 x kChunk x out_c) stay in the
// core's L2; threads take whole chunks. Vectors run over 16 channels: the
// Nchw16c layout holds 16 channels of one position in one 64-byte line.
//
// This file holds what is the same on every path (the filter transforms in
// double, the tiling, the threads, the filter gradient's final sum) and
// includes the vector kernels (simd_gemm.inc, winograd_kernels.inc) once per SIMD path
// (x86-64: AVX-512 and AVX2+FMA; ARM64: NEON); the constructor picks one (cpu_path.h).
#include "winograd_conv.h"

#include "kd/error.h"
#include "omp_waits.h"
#include "simd_arch.h"

#if KD_HAS_SIMD_PATHS
#include <omp.h>

#include <algorithm>
#include <cstring>

// The file is compiled with -ffp-contract=off (CMakeLists.txt) so that a transform rounds
// the same wherever it is inlined, and on every path (the fused and unfused paths, and the
// ISAs, are tested for equality); the GEMM's multiply-adds are explicit FMAs.

namespace kd::fast {
namespace {

constexpr int kChunk = 24;   // tiles per chunk: divisible by every GEMM row block of every path
constexpr int kPoints = 36;  // 6x6 transform points

// G g (filter, 3 -> 6), in double.
void filter_1d(const double* g, double* u) {
  u[0] = g[0] / 4;
  u[1] = -(g[0] + g[1] + g[2]) / 6;
  u[2] = -(g[0] - g[1] + g[2]) / 6;
  u[3] = g[0] / 24 + g[1] / 12 + g[2] / 6;
  u[4] = g[0] / 24 - g[1] / 12 + g[2] / 6;
  u[5] = g[2];
}
// G^T s (filter gradient back from the transform space, 6 -> 3): the adjoint of filter_1d.
void filter_adjoint_1d(const double* s, double* g) {
  g[0] = s[0] / 4 - (s[1] + s[2]) / 6 + (s[3] + s[4]) / 24;
  g[1] = (s[2] - s[1]) / 6 + (s[3] - s[4]) / 12;
  g[2] = (s[3] + s[4] - s[1] - s[2]) / 6 + s[5];
}

// u: (36, cin, cout) = G f G^T for every filter f = w[co][ci] (flip: f = w[ci][co] rotated 180
// degrees, w being (cin_of_w = cout, ...): the backward-data filters).
void transform_filters(const float* w, float* u, int cin, int cout, bool flip) {
#pragma omp parallel for schedule(static)
  for (int co = 0; co < cout; ++co)
    for (int ci = 0; ci < cin; ++ci) {
      const float* f = flip ? w + (size_t(ci) * cout + co) * 9 : w + (size_t(co) * cin + ci) * 9;
      double g[3][3], col[3], t[6][3], row[6];
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) g[a][b] = flip ? f[(2 - a) * 3 + (2 - b)] : f[a * 3 + b];
      for (int b = 0; b < 3; ++b) {
        for (int a = 0; a < 3; ++a) col[a] = g[a][b];
        double out[6];
        filter_1d(col, out);
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) t[i][b] = out[i];
      }
#pragma GCC unroll 24
      for (int i = 0; i < 6; ++i) {
        filter_1d(t[i], row);
#pragma GCC unroll 24
        for (int j = 0; j < 6; ++j) u[(size_t(i * 6 + j) * cin + ci) * cout + co] = float(row[j]);
      }
    }
}

// Tiles of one convolution pass: `channels` input channels of (h, w) planes read with
// `pad` zeros around them, producing (out_h, out_w) outputs in 4x4 tiles.
struct Geometry {
  int n, channels, h, w, pad, out_h, out_w, tiles_h, tiles_w;
  int64_t tiles() const { return int64_t(n) * tiles_h * tiles_w; }
  void tile(int64_t t, int& ni, int& ty, int& tx) const {
    ni = int(t / (int64_t(tiles_h) * tiles_w));
    const int rest = int(t % (int64_t(tiles_h) * tiles_w));
    ty = rest / tiles_w;
    tx = rest % tiles_w;
  }
};
Geometry geometry(int n, int channels, int h, int w, int pad) {
  const int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
  return {n, channels, h, w, pad, oh, ow, (oh + 3) / 4, (ow + 3) / 4};
}

// One convolution pass over the tiles of g: transformed filters u: (36, g.channels, out_c)
// and per-thread scratch, v(t): (36, kChunk, g.channels) and m(t): (36, kChunk, out_c).
struct Pass {
  Geometry g;
  int out_c;
  const float* u;
  float* const* v_bufs;
  float* const* m_bufs;
  float* v(int t) const { return v_bufs[t]; }
  float* m(int t) const { return m_bufs[t]; }
};

// Runs chunk(first_tile, thread) over every chunk of `tiles`, threads taking contiguous runs; on the
// calling thread alone (thread 0) when there are fewer than min_chunks_per_thread() per thread. With
// passive waits that is 4: the teacher's conv2 at batch 1 is 2 chunks (~20 us each), and waking a
// sleeping thread for one of them made the batch-1 forward slower, not faster (bench/RESULTS.md). With
// spinning threads (omp_waits.h) one chunk each pays. Each output is still computed in the same order.
int64_t min_chunks_per_thread() { return omp_waits_spin() ? 1 : 4; }
template <class F>
void for_each_chunk(int64_t tiles, F&& chunk) {
  const int64_t chunks = (tiles + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks >= min_chunks_per_thread() * omp_get_max_threads())
  for (int64_t c = 0; c < chunks; ++c) chunk(c * kChunk, omp_get_thread_num());
}

}  // namespace

#define KD_SIMD_KERNELS "winograd_kernels.inc"
#include "simd_paths.inc"

bool WinogradConv::supports(const ref::ConvShape& s, CpuPath path) {
  return s.k == 3 && s.stride == 1 && s.pad >= 0 && s.pad <= 2 && s.in_c % 16 == 0 && s.out_c % 16 == 0 &&
         s.h + 2 * s.pad >= 3 && s.w + 2 * s.pad >= 3 && path != CpuPath::Scalar && cpu_supports(path);
}

WinogradConv::WinogradConv(const ref::ConvShape& s, CpuPath path) : s_(s), path_(path) {
  if (!supports(s, path))
    fail(std::string("WinogradConv: shape or path not supported (needs a 3x3 kernel, stride 1, padding <= 2, "
                     "channels in multiples of 16 and a CPU with AVX2+FMA, AVX-512 or NEON; asked for ") +
         cpu_path_name(path) + "); the fast ops use oneDNN for other shapes");
  u_.resize(size_t(kPoints) * s.in_c * s.out_c);
  u_back_.resize(u_.size());
}

WinogradConv::~WinogradConv() = default;

// Sizes every thread's scratch for a pass over `channels` inputs to `out_c` outputs.
void WinogradConv::prepare_scratch(int channels, int out_c) {
  const size_t threads = size_t(omp_get_max_threads());
  for (auto* pool : {&v_, &m_, &s_part_, &db_part_})
    if (pool->size() < threads) pool->resize(threads);
  v_ptrs_.resize(threads);
  m_ptrs_.resize(threads);
  for (size_t t = 0; t < threads; ++t) {
    if (v_[t].size() < size_t(kPoints) * kChunk * channels) v_[t].resize(size_t(kPoints) * kChunk * channels);
    if (m_[t].size() < size_t(kPoints) * kChunk * out_c) m_[t].resize(size_t(kPoints) * kChunk * out_c);
    v_ptrs_[t] = v_[t].data();
    m_ptrs_[t] = m_[t].data();
  }
}

void WinogradConv::transform_forward_filters(const float* w) {
  const size_t n = size_t(s_.out_c) * s_.in_c * 9;
  if (w_seen_.size() == n && std::memcmp(w_seen_.data(), w, n * sizeof(float)) == 0) return;
  w_seen_.assign(w, w + n);
  transform_filters(w, u_.data(), s_.in_c, s_.out_c, false);
}

void WinogradConv::conv_forward(const float* x, const float* w, const float* b, float* y, bool relu) {
  transform_forward_filters(w);
  prepare_scratch(s_.in_c, s_.out_c);
  const Pass p{geometry(s_.n, s_.in_c, s_.h, s_.w, s_.pad), s_.out_c, u_.data(), v_ptrs_.data(), m_ptrs_.data()};
  KD_SIMD_DISPATCH(path_, forward_tiles)(p, x, b, y, relu);
}

void WinogradConv::forward(const float* x, const float* w, const float* b, float* pooled, uint8_t* argmax) {
  transform_forward_filters(w);
  prepare_scratch(s_.in_c, s_.out_c);
  const Pass p{geometry(s_.n, s_.in_c, s_.h, s_.w, s_.pad), s_.out_c, u_.data(), v_ptrs_.data(), m_ptrs_.data()};
  KD_SIMD_DISPATCH(path_, forward_pooled)(p, x, b, pooled, argmax);
}

void WinogradConv::conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db) {
  backward_from(x, w, dy, nullptr, dx, dw, db);
}

void WinogradConv::backward(const float* x, const float* w, const float* dpooled, const float* pooled,
                            const uint8_t* argmax, float* dx, float* dw, float* db) {
  const int ph = s_.out_h() / 2, pw = s_.out_w() / 2;
  dy_pooled_.resize(size_t(s_.n) * s_.out_c * ph * pw);
  KD_SIMD_DISPATCH(path_, mask_pooled_gradient)(dpooled, pooled, dy_pooled_.data(), s_.n, s_.out_c, ph, pw);
  backward_from(x, w, dy_pooled_.data(), argmax, dx, dw, db);
}

void WinogradConv::backward_from(const float* x, const float* w, const float* dy, const uint8_t* argmax, float* dx,
                                 float* dw, float* db) {
  prepare_scratch(std::max(s_.in_c, s_.out_c), std::max(s_.in_c, s_.out_c));
  const int threads = omp_get_max_threads();
  // Filter gradient: per-thread partials, summed in thread order.
  const size_t s_floats = size_t(kPoints) * s_.out_c * s_.in_c;
  std::vector<float*> s_ptrs(threads), db_ptrs(threads);
  for (int t = 0; t < threads; ++t) {
    if (s_part_[size_t(t)].size() < s_floats) s_part_[size_t(t)].resize(s_floats);
    if (db_part_[size_t(t)].size() < size_t(s_.out_c)) db_part_[size_t(t)].resize(size_t(s_.out_c));
    s_ptrs[size_t(t)] = s_part_[size_t(t)].data();
    db_ptrs[size_t(t)] = db_part_[size_t(t)].data();
  }
  // The partials and their sum are split over threads too: serial, they cost ~1 ms at 16 threads.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < threads; ++t) {
    std::fill_n(s_ptrs[size_t(t)], s_floats, 0.0f);
    std::fill_n(db_ptrs[size_t(t)], s_.out_c, 0.0f);
  }
  const Pass fp{geometry(s_.n, s_.in_c, s_.h, s_.w, s_.pad), s_.out_c, u_.data(), v_ptrs_.data(), m_ptrs_.data()};
  KD_SIMD_DISPATCH(path_, filter_gradient)(fp, x, dy, argmax, s_ptrs.data(), db_ptrs.data());
#pragma omp parallel for schedule(static)
  for (int co = 0; co < s_.out_c; ++co) {
    double bias = 0;
    for (int t = 0; t < threads; ++t) bias += db_part_[size_t(t)][size_t(co)];
    db[co] = float(bias);
    for (int ci = 0; ci < s_.in_c; ++ci) {
      double sp[6][6], t3[3][6], g3[3];
      for (int p = 0; p < kPoints; ++p) {
        double sum = 0;
        for (int t = 0; t < threads; ++t) sum += s_part_[size_t(t)][(size_t(p) * s_.out_c + co) * s_.in_c + ci];
        sp[p / 6][p % 6] = sum;
      }
#pragma GCC unroll 24
      for (int j = 0; j < 6; ++j) {
        double col[6];
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) col[i] = sp[i][j];
        filter_adjoint_1d(col, g3);
        for (int a = 0; a < 3; ++a) t3[a][j] = g3[a];
      }
      for (int a = 0; a < 3; ++a) {
        filter_adjoint_1d(t3[a], g3);
        for (int b = 0; b < 3; ++b) dw[(size_t(co) * s_.in_c + ci) * 9 + a * 3 + b] = float(g3[b]);
      }
    }
  }
  if (!dx) return;
  // Data gradient: the forward pass over dy with the rotated, transposed filters and the
  // complementary padding (2 - pad), which gives back (h, w).
  transform_filters(w, u_back_.data(), s_.out_c, s_.in_c, true);
  const Pass dp{geometry(s_.n, s_.out_c, s_.out_h(), s_.out_w(), 2 - s_.pad), s_.in_c, u_back_.data(), v_ptrs_.data(),
                m_ptrs_.data()};
  KD_SIMD_DISPATCH(path_, data_gradient)(dp, dy, argmax, dx, s_.h, s_.w);
}

}  // namespace kd::fast

#else  // neither x86-64 nor ARM64: no vector kernels; the fast ops use oneDNN for every convolution.

namespace kd::fast {
bool WinogradConv::supports(const ref::ConvShape&, CpuPath) { return false; }
WinogradConv::WinogradConv(const ref::ConvShape& s, CpuPath path) : s_(s), path_(path) {
  fail(
      "WinogradConv: needs an x86-64 CPU with AVX2+FMA or AVX-512, or an ARM64 one; the fast ops use oneDNN on "
      "this one");
}
WinogradConv::~WinogradConv() = default;
void WinogradConv::conv_forward(const float*, const float*, const float*, float*, bool) {}
void WinogradConv::conv_backward(const float*, const float*, const float*, float*, float*, float*) {}
void WinogradConv::forward(const float*, const float*, const float*, float*, uint8_t*) {}
void WinogradConv::backward(const float*, const float*, const float*, const float*, const uint8_t*, float*, float*,
                            float*) {}
}  // namespace kd::fast

#endif
