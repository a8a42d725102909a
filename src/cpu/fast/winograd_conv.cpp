// WinogradConv (winograd_conv.h): F(4x4, 3x3) on 16-float vectors.
//
// Work is split into chunks of kChunk output tiles (a tile: one image, one
// 4x4 block of output positions, all channels). A chunk's transformed inputs
// (36 x kChunk x in_c) and GEMM outputs (36 x kChunk x out_c) stay in the
// core's L2; threads take whole chunks. Vectors run over 16 channels: the
// Nchw16c layout holds 16 channels of one position in one 64-byte line.
#include "winograd_conv.h"

#include "kd/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

// The kernels are compiled for AVX-512 only; supports() checks the CPU. The file is
// compiled with -ffp-contract=off (CMakeLists.txt) so that a transform rounds the same
// wherever it is inlined (the fused and unfused paths are tested for equality); the
// GEMM's multiply-adds are explicit FMAs.
#define KD_AVX512 __attribute__((target("avx512f,avx512bw,fma")))

namespace kd::fast {
namespace {

// GCC gives a vector type its element type's alias set, so v16 accesses to float
// arrays are well-defined. (Not may_alias: stores through it would then alias
// everything, and the kernels reload loop-invariant fields after every store;
// measured 1.6x slower.)
typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t i32x16 __attribute__((vector_size(64), aligned(4)));  // 16 lanes of int32

constexpr int kChunk = 24;  // tiles per chunk: divisible by every GEMM row block below
constexpr int kPoints = 36;  // 6x6 transform points

KD_AVX512 inline v16 load(const float* p) { return *reinterpret_cast<const v16*>(p); }
KD_AVX512 inline void store(float* p, v16 v) { *reinterpret_cast<v16*>(p) = v; }

// ------------------------------------------------------------ 1-D transforms
// The 2-D transforms apply these along rows, then along columns. Points 0, 1, -1, 2, -2, infinity.

// B^T d (input tile, 6 -> 6).
template <class T>
KD_AVX512 inline void input_1d(const T* d, T* r) {
  const T s12 = d[1] + d[2], s34 = d[3] + d[4], a12 = d[1] - d[2], a43 = d[4] - d[3];
  const T e = d[4] - d[2], f = d[3] - d[1];
  r[0] = 4 * d[0] - 5 * d[2] + d[4];
  r[1] = s34 - 4 * s12;
  r[2] = a43 + 4 * a12;
  r[3] = e + 2 * f;
  r[4] = e - 2 * f;
  r[5] = 4 * d[1] - 5 * d[3] + d[5];
}
// A^T m (transformed output, 6 -> 4).
template <class T>
KD_AVX512 inline void output_1d(const T* m, T* o) {
  const T a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
  o[0] = m[0] + a + c;
  o[1] = b + 2 * d;
  o[2] = a + 4 * c;
  o[3] = b + 8 * d + m[5];
}
// A o (output gradient into the transform space, 4 -> 6): the adjoint of output_1d.
template <class T>
KD_AVX512 inline void output_adjoint_1d(const T* o, T* m) {
  const T e = o[0] + o[2], f = o[1] + o[3], g = o[0] + 4 * o[2], h = 2 * o[1] + 8 * o[3];
  m[0] = o[0];
  m[1] = e + f;
  m[2] = e - f;
  m[3] = g + h;
  m[4] = g - h;
  m[5] = o[3];
}
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

// ------------------------------------------------------------ GEMM
// c[r][j] (+)= sum_k a(r, k) * b[k][j] for NR rows and NV vectors of 16 columns, all in
// registers (NR * NV <= 24 accumulators). a(r, k) = a[r * ars + k * aks], broadcast.
template <int NV, int NR>
KD_AVX512 inline void gemm_block(const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, float* c,
                                 int64_t ldc, int k_count, bool accumulate) {
  v16 acc[NR][NV];
#pragma GCC unroll 24
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 24
    for (int j = 0; j < NV; ++j) acc[r][j] = accumulate ? load(c + r * ldc + 16 * j) : v16{};
  for (int k = 0; k < k_count; ++k) {
    v16 bv[NV];
#pragma GCC unroll 24
    for (int j = 0; j < NV; ++j) bv[j] = load(b + k * ldb + 16 * j);
#pragma GCC unroll 24
    for (int r = 0; r < NR; ++r) {
      const v16 s = _mm512_set1_ps(a[r * ars + k * aks]);
#pragma GCC unroll 24
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_fmadd_ps(bv[j], s, acc[r][j]);
    }
  }
#pragma GCC unroll 24
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 24
    for (int j = 0; j < NV; ++j) store(c + r * ldc + 16 * j, acc[r][j]);
}

// All `rows` rows for NV column vectors: blocks of 24 / NV rows, the rest in halving blocks.
template <int NV, int NR = 24 / NV>
KD_AVX512 void gemm_rows(int rows, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, float* c,
                         int64_t ldc, int k_count, bool accumulate) {
  int r = 0;
  for (; r + NR <= rows; r += NR)
    gemm_block<NV, NR>(a + r * ars, ars, aks, b, ldb, c + r * ldc, ldc, k_count, accumulate);
  if constexpr (NR > 1) {
    if (r < rows)
      gemm_rows<NV, NR / 2>(rows - r, a + r * ars, ars, aks, b, ldb, c + r * ldc, ldc, k_count, accumulate);
  }
}

// c: (rows, 16 * vectors) (+)= a . b with b: (k_count, 16 * vectors), row strides ldb, ldc.
KD_AVX512 void gemm(int rows, int vectors, int k_count, const float* a, int64_t ars, int64_t aks, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int j = 0;
  for (; j + 4 <= vectors; j += 4) gemm_rows<4>(rows, a, ars, aks, b + 16 * j, ldb, c + 16 * j, ldc, k_count, accumulate);
  switch (vectors - j) {
    case 3: gemm_rows<3>(rows, a, ars, aks, b + 16 * j, ldb, c + 16 * j, ldc, k_count, accumulate); break;
    case 2: gemm_rows<2>(rows, a, ars, aks, b + 16 * j, ldb, c + 16 * j, ldc, k_count, accumulate); break;
    case 1: gemm_rows<1>(rows, a, ars, aks, b + 16 * j, ldb, c + 16 * j, ldc, k_count, accumulate); break;
    default: break;
  }
}

// ------------------------------------------------------------ sources and sinks
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

// An Nchw16c tensor (n, c/16, h, w, 16); zero outside the planes.
struct BlockedSource {
  const float* p;
  int blocks, h, w;
  KD_AVX512 v16 at(int n, int cb, int r, int c) const {
    if (r < 0 || r >= h || c < 0 || c >= w) return v16{};
    return load(p + ((int64_t(n * blocks + cb) * h + r) * w + c) * 16);
  }
  // count positions (r, c0..c0+count-1).
  KD_AVX512 void row(int n, int cb, int r, int c0, int count, v16* d) const {
    if (r >= 0 && r < h && c0 >= 0 && c0 + count <= w) {
      const float* q = p + ((int64_t(n * blocks + cb) * h + r) * w + c0) * 16;
      // The rows four below are the next tile row's: fetching them now hides the memory latency
      // (measured: the input transform of the teacher's conv2 went from ~1.4 to ~0.7 ms).
#pragma GCC unroll 24
      for (int j = 0; j < count; ++j) __builtin_prefetch(q + int64_t(4) * w * 16 + 16 * j);
#pragma GCC unroll 24
      for (int j = 0; j < count; ++j) d[j] = load(q + 16 * j);
    } else {
#pragma GCC unroll 24
      for (int j = 0; j < count; ++j) d[j] = at(n, cb, r, c0 + j);
    }
  }
};

// The gradient at the output of a conv -> ReLU -> 2x2 max-pool, rebuilt from the pooled
// gradient (masked, Nchw16c: (n, c/16, h/2, w/2, 16)) and the blocked argmax: position
// (r, c) gets its window's gradient when it is the window's winner, else 0.
struct PooledGradSource {
  const float* g;
  const uint8_t* arg;
  int blocks, h, w;  // the convolution's output
  KD_AVX512 v16 at(int n, int cb, int r, int c) const {
    const int ph = h / 2, pw = w / 2;
    if (r < 0 || c < 0 || (r >> 1) >= ph || (c >> 1) >= pw) return v16{};
    const int64_t cell = (int64_t(n * blocks + cb) * ph + (r >> 1)) * pw + (c >> 1);
    return winner_gradient(cell, (r & 1) * 2 + (c & 1));
  }
  // The gradient at slot (0 1 / 2 3) of window `cell`: its pooled gradient where the slot won.
  KD_AVX512 v16 winner_gradient(int64_t cell, int slot) const {
    return select_slot(winners(cell), slot, load(g + cell * 16));
  }
  // Window `cell`'s 16 winners, widened to 32-bit lanes. (The maskz forms of the conversions
  // here and in PoolSink: the plain ones start from an undefined vector, which GCC 12 warns of.)
  KD_AVX512 __m512i winners(int64_t cell) const {
    return _mm512_maskz_cvtepu8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(arg + cell * 16)));
  }
  // grad where the winner is `slot`, else 0 (intrinsics: GCC 12 widens and selects
  // generic vectors in several steps, which cost ~1.5 ms per teacher backward).
  KD_AVX512 static v16 select_slot(__m512i winner, int slot, v16 grad) {
    return _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(winner, _mm512_set1_epi32(slot)), grad);
  }
  // Rows starting at an even column (every tile of a pad-0 or pad-2 layer) take whole
  // windows: one load of the gradient and the argmax gives two positions.
  KD_AVX512 void row(int n, int cb, int r, int c0, int count, v16* d) const {
    const int ph = h / 2, pw = w / 2;
    if ((c0 & 1) || (count & 1)) {
#pragma GCC unroll 24
      for (int j = 0; j < count; ++j) d[j] = at(n, cb, r, c0 + j);
      return;
    }
    const bool row_in = r >= 0 && (r >> 1) < ph;
    const int64_t first_cell = (int64_t(n * blocks + cb) * ph + (r >> 1)) * pw + (c0 >> 1);
#pragma GCC unroll 24
    for (int j = 0; j < count; j += 2) {
      // Branch-free: a window outside the planes reads window 0 and matches no slot.
      const int pc = (c0 >> 1) + j / 2;
      const bool inside = row_in && pc >= 0 && pc < pw;
      const int64_t cell = inside ? first_cell + j / 2 : 0;
      const int left = inside ? (r & 1) * 2 : 4;
      const __m512i a = winners(cell);
      const v16 grad = load(g + cell * 16);
      d[j] = select_slot(a, left, grad);
      d[j + 1] = select_slot(a, left + 1, grad);
    }
  }
};

// Writes 4x4 output tiles to an Nchw16c tensor with the bias added, ReLU'd when asked.
struct TileSink {
  float* y;
  const float* bias;  // may be null
  bool relu;
  int blocks, h, w;
  KD_AVX512 void operator()(int n, int cb, int ty, int tx, v16 (&o)[4][4]) const {
    const v16 b = bias ? load(bias + 16 * cb) : v16{};
    float* base = y + int64_t(n * blocks + cb) * h * w * 16;
#pragma GCC unroll 24
    for (int i = 0; i < 4; ++i)
#pragma GCC unroll 24
      for (int j = 0; j < 4; ++j) {
        const int r = 4 * ty + i, c = 4 * tx + j;
        if (r >= h || c >= w) continue;
        v16 v = o[i][j] + b;
        if (relu) v = v > 0 ? v : v16{};
        store(base + (int64_t(r) * w + c) * 16, v);
      }
  }
};

// Bias, ReLU and 2x2 max-pool of 4x4 output tiles: pooled plain (n, c, h/2, w/2),
// argmax blocked (n, c/16, h/2, w/2, 16), as ref::maxpool2x2_forward picks them.
struct PoolSink {
  float* pooled;
  uint8_t* arg;
  const float* bias;
  int blocks, h, w;  // the convolution's output
  KD_AVX512 void operator()(int n, int cb, int ty, int tx, v16 (&o)[4][4]) const {
    const int ph = h / 2, pw = w / 2;
    const v16 b = load(bias + 16 * cb);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const int pr = 2 * ty + i, pc = 2 * tx + j;
        if (pr >= ph || pc >= pw) continue;
        v16 v[4];
#pragma GCC unroll 24
        for (int q = 0; q < 4; ++q) {
          v[q] = o[2 * i + q / 2][2 * j + q % 2] + b;
          v[q] = v[q] > 0 ? v[q] : v16{};
        }
        // The tournament of the reference scan (window order 0 1 / 2 3, strict >).
        const i32x16 right_top = -(v[1] > v[0]), right_bottom = -(v[3] > v[2]);
        const v16 best_top = right_top ? v[1] : v[0], best_bottom = right_bottom ? v[3] : v[2];
        const i32x16 bottom_wins = -(best_bottom > best_top);
        const v16 best = bottom_wins ? best_bottom : best_top;
        const i32x16 winner = right_top + bottom_wins * (2 + right_bottom - right_top);
        const int64_t cell = (int64_t(n * blocks + cb) * ph + pr) * pw + pc;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(arg + cell * 16), _mm512_maskz_cvtepi32_epi8(0xffff, __m512i(winner)));
        float* out = pooled + (int64_t(n) * blocks * 16 + 16 * cb) * ph * pw + int64_t(pr) * pw + pc;
#pragma GCC unroll 24
        for (int l = 0; l < 16; ++l) out[int64_t(l) * ph * pw] = best[l];
      }
  }
};

// ------------------------------------------------------------ chunks
// B^T d B of the 6x6 input tiles of tiles [first, first + kChunk) into v: (36, kChunk, channels);
// tiles past the end are zero. (This, the output transform in conv_chunk and the gradient
// transform in filter_chunk share their row-then-column shape; a shared helper measured
// 6-10 % slower, as loaded whole tiles or as lambdas, which GCC compiles without the
// AVX-512 target, so each keeps its own loops.)
template <class Src>
KD_AVX512 void transform_inputs(const Geometry& g, int64_t first, const Src& src, float* v) {
  const int blocks = g.channels / 16;
  for (int t = 0; t < kChunk; ++t) {
    if (first + t >= g.tiles()) {
      for (int p = 0; p < kPoints; ++p) std::memset(v + (size_t(p) * kChunk + t) * g.channels, 0, 4 * g.channels);
      continue;
    }
    int n, ty, tx;
    g.tile(first + t, n, ty, tx);
    const int r0 = 4 * ty - g.pad, c0 = 4 * tx - g.pad;
    for (int cb = 0; cb < blocks; ++cb) {
      v16 rows[6][6];
#pragma GCC unroll 24
      for (int i = 0; i < 6; ++i) {
        v16 d[6];
        src.row(n, cb, r0 + i, c0, 6, d);
        input_1d(d, rows[i]);
      }
      float* out = v + size_t(t) * g.channels + 16 * cb;
#pragma GCC unroll 24
      for (int j = 0; j < 6; ++j) {
        v16 col[6], r[6];
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) col[i] = rows[i][j];
        input_1d(col, r);
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) store(out + size_t(i * 6 + j) * kChunk * g.channels, r[i]);
      }
    }
  }
}

// One chunk of a convolution pass: inputs transformed, 36 GEMMs with u: (36, channels, out_c),
// outputs transformed back and handed to the sink tile by tile.
template <class Src, class Sink>
KD_AVX512 void conv_chunk(const Geometry& g, int out_c, int64_t first, const Src& src, const float* u, float* v,
                          float* m, const Sink& sink) {
  transform_inputs(g, first, src, v);
  for (int p = 0; p < kPoints; ++p)
    gemm(kChunk, out_c / 16, g.channels, v + size_t(p) * kChunk * g.channels, g.channels, 1,
         u + size_t(p) * g.channels * out_c, out_c, m + size_t(p) * kChunk * out_c, out_c, false);
  for (int t = 0; t < kChunk && first + t < g.tiles(); ++t) {
    int n, ty, tx;
    g.tile(first + t, n, ty, tx);
    for (int cb = 0; cb < out_c / 16; ++cb) {
      const float* in = m + size_t(t) * out_c + 16 * cb;
      v16 rows[6][4], o[4][4];
#pragma GCC unroll 24
      for (int i = 0; i < 6; ++i) {
        v16 d[6];
#pragma GCC unroll 24
        for (int j = 0; j < 6; ++j) d[j] = load(in + size_t(i * 6 + j) * kChunk * out_c);
        output_1d(d, rows[i]);
      }
#pragma GCC unroll 24
      for (int j = 0; j < 4; ++j) {
        v16 col[6], r[4];
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) col[i] = rows[i][j];
        output_1d(col, r);
#pragma GCC unroll 24
        for (int i = 0; i < 4; ++i) o[i][j] = r[i];
      }
      sink(n, cb, ty, tx, o);
    }
  }
}

// One chunk of the filter gradient: s: (36, out_c, in_c) += sum over the chunk's tiles of
// (A dy A^T)(point, co) * (B^T x B)(point, ci); db: (out_c) += sum of dy. g is the forward's geometry.
template <class DySrc>
KD_AVX512 void filter_chunk(const Geometry& g, int out_c, int64_t first, const BlockedSource& x, const DySrc& dy,
                            float* v, float* m, float* s, float* db) {
  transform_inputs(g, first, x, v);
  const int blocks = out_c / 16;
  for (int t = 0; t < kChunk; ++t) {
    if (first + t >= g.tiles()) {
      for (int p = 0; p < kPoints; ++p) std::memset(m + (size_t(p) * kChunk + t) * out_c, 0, 4 * out_c);
      continue;
    }
    int n, ty, tx;
    g.tile(first + t, n, ty, tx);
    for (int cb = 0; cb < blocks; ++cb) {
      v16 rows[4][6], sum = v16{};
#pragma GCC unroll 24
      for (int i = 0; i < 4; ++i) {
        v16 d[4];
        dy.row(n, cb, 4 * ty + i, 4 * tx, 4, d);
#pragma GCC unroll 24
        for (int j = 0; j < 4; ++j) sum += d[j];
        output_adjoint_1d(d, rows[i]);
      }
      store(db + 16 * cb, load(db + 16 * cb) + sum);
      float* out = m + size_t(t) * out_c + 16 * cb;
#pragma GCC unroll 24
      for (int j = 0; j < 6; ++j) {
        v16 col[4], r[6];
#pragma GCC unroll 24
        for (int i = 0; i < 4; ++i) col[i] = rows[i][j];
        output_adjoint_1d(col, r);
#pragma GCC unroll 24
        for (int i = 0; i < 6; ++i) store(out + size_t(i * 6 + j) * kChunk * out_c, r[i]);
      }
    }
  }
  // s(p)[co][ci] += sum_t m(p)[t][co] * v(p)[t][ci]
  for (int p = 0; p < kPoints; ++p)
    gemm(out_c, g.channels / 16, kChunk, m + size_t(p) * kChunk * out_c, 1, out_c, v + size_t(p) * kChunk * g.channels,
         g.channels, s + size_t(p) * out_c * g.channels, g.channels, true);
}

// The masked pooled gradient in Nchw16c: dpooled * (pooled > 0), both plain (n, c, ph, pw).
KD_AVX512 void block_pooled_gradient(const float* dpooled, const float* pooled, float* out, int n, int c, int ph,
                                     int pw) {
  const int64_t plane = int64_t(ph) * pw;
  for (int b = 0; b < c / 16; ++b)
#pragma GCC unroll 24
    for (int l = 0; l < 16; ++l) {
      const int64_t src = (int64_t(n) * c + 16 * b + l) * plane;
      float* dst = out + (int64_t(n) * c + 16 * b) * plane + l;
      for (int64_t i = 0; i < plane; ++i) dst[16 * i] = pooled[src + i] > 0.0f ? dpooled[src + i] : 0.0f;
    }
}

// Runs chunk(first_tile, thread) over every chunk of `tiles`, threads taking contiguous runs.
template <class F>
void for_each_chunk(int64_t tiles, F&& chunk) {
  const int64_t chunks = (tiles + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) chunk(c * kChunk, omp_get_thread_num());
}

}  // namespace

bool WinogradConv::cpu_has_kernels() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"); }

bool WinogradConv::supports(const ref::ConvShape& s) {
  return s.k == 3 && s.stride == 1 && s.pad >= 0 && s.pad <= 2 && s.in_c % 16 == 0 && s.out_c % 16 == 0 &&
         s.h + 2 * s.pad >= 3 && s.w + 2 * s.pad >= 3 && cpu_has_kernels();
}

WinogradConv::WinogradConv(const ref::ConvShape& s) : s_(s) {
  if (!supports(s))
    fail("WinogradConv: shape not supported (needs a 3x3 kernel, stride 1, padding <= 2, channels in multiples of 16 "
         "and an AVX-512 CPU); the fast ops use oneDNN for other shapes");
  u_.resize(size_t(kPoints) * s.in_c * s.out_c);
  u_back_.resize(u_.size());
}

float* WinogradConv::scratch(std::vector<std::vector<float>>& pool, size_t floats, int thread) {
  std::vector<float>& buf = pool[size_t(thread)];
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}

void WinogradConv::prepare_scratch() {
  const size_t threads = size_t(omp_get_max_threads());
  for (auto* pool : {&v_, &m_, &s_part_, &db_part_})
    if (pool->size() < threads) pool->resize(threads);
}

void WinogradConv::conv_forward(const float* x, const float* w, const float* b, float* y, bool relu) {
  forward_with(x, w, TileSink{y, b, relu, s_.out_c / 16, s_.out_h(), s_.out_w()});
}

void WinogradConv::forward(const float* x, const float* w, const float* b, float* pooled, uint8_t* argmax) {
  forward_with(x, w, PoolSink{pooled, argmax, b, s_.out_c / 16, s_.out_h(), s_.out_w()});
}

template <class Sink>
void WinogradConv::forward_with(const float* x, const float* w, const Sink& sink) {
  transform_filters(w, u_.data(), s_.in_c, s_.out_c, false);
  prepare_scratch();
  const Geometry g = geometry(s_.n, s_.in_c, s_.h, s_.w, s_.pad);
  const BlockedSource src{x, s_.in_c / 16, s_.h, s_.w};
  for_each_chunk(g.tiles(), [&](int64_t first, int t) {
    conv_chunk(g, s_.out_c, first, src, u_.data(), scratch(v_, size_t(kPoints) * kChunk * s_.in_c, t),
               scratch(m_, size_t(kPoints) * kChunk * s_.out_c, t), sink);
  });
}

void WinogradConv::conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                                 float* db) {
  backward_with(x, w, BlockedSource{dy, s_.out_c / 16, s_.out_h(), s_.out_w()}, dx, dw, db);
}

void WinogradConv::backward(const float* x, const float* w, const float* dpooled, const float* pooled,
                            const uint8_t* argmax, float* dx, float* dw, float* db) {
  const int ph = s_.out_h() / 2, pw = s_.out_w() / 2;
  dy_pooled_.resize(size_t(s_.n) * s_.out_c * ph * pw);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s_.n; ++n) block_pooled_gradient(dpooled, pooled, dy_pooled_.data(), n, s_.out_c, ph, pw);
  backward_with(x, w, PooledGradSource{dy_pooled_.data(), argmax, s_.out_c / 16, s_.out_h(), s_.out_w()}, dx, dw, db);
}

template <class DySrc>
void WinogradConv::backward_with(const float* x, const float* w, const DySrc& dy, float* dx, float* dw, float* db) {
  prepare_scratch();
  const int threads = omp_get_max_threads();
  // Filter gradient: per-thread partials, summed in thread order.
  const Geometry g = geometry(s_.n, s_.in_c, s_.h, s_.w, s_.pad);
  const BlockedSource xs{x, s_.in_c / 16, s_.h, s_.w};
  const size_t s_floats = size_t(kPoints) * s_.out_c * s_.in_c;
  // The partials and their sum are split over threads too: serial, they cost ~1 ms at 16 threads.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < threads; ++t) {
    std::fill_n(scratch(s_part_, s_floats, t), s_floats, 0.0f);
    std::fill_n(scratch(db_part_, size_t(s_.out_c), t), s_.out_c, 0.0f);
  }
  for_each_chunk(g.tiles(), [&](int64_t first, int t) {
    filter_chunk(g, s_.out_c, first, xs, dy, scratch(v_, size_t(kPoints) * kChunk * s_.in_c, t),
                 scratch(m_, size_t(kPoints) * kChunk * s_.out_c, t), s_part_[size_t(t)].data(),
                 db_part_[size_t(t)].data());
  });
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
  const Geometry gd = geometry(s_.n, s_.out_c, s_.out_h(), s_.out_w(), 2 - s_.pad);
  const TileSink sink{dx, nullptr, false, s_.in_c / 16, s_.h, s_.w};
  for_each_chunk(gd.tiles(), [&](int64_t first, int t) {
    conv_chunk(gd, s_.in_c, first, dy, u_back_.data(), scratch(v_, size_t(kPoints) * kChunk * s_.out_c, t),
               scratch(m_, size_t(kPoints) * kChunk * s_.in_c, t), sink);
  });
}

}  // namespace kd::fast

#else  // not x86-64: the kernels are AVX-512 code; the fast ops use oneDNN for every convolution.

namespace kd::fast {
bool WinogradConv::cpu_has_kernels() { return false; }
bool WinogradConv::supports(const ref::ConvShape&) { return false; }
WinogradConv::WinogradConv(const ref::ConvShape& s) : s_(s) {
  fail("WinogradConv: needs an x86-64 CPU with AVX-512; the fast ops use oneDNN on this one");
}
void WinogradConv::conv_forward(const float*, const float*, const float*, float*, bool) {}
void WinogradConv::conv_backward(const float*, const float*, const float*, float*, float*, float*) {}
void WinogradConv::forward(const float*, const float*, const float*, float*, uint8_t*) {}
void WinogradConv::backward(const float*, const float*, const float*, const float*, const uint8_t*, float*, float*,
                            float*) {}
}  // namespace kd::fast

#endif
