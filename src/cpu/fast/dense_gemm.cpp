// The dense-layer GEMM (dense_gemm.h): panels, packing and threads here, the
// vector kernels (simd_gemm.inc, dense_kernels.inc) compiled once per SIMD path.
//
// Two forms of one product, chosen by which operand is cheaper to pack:
//  - panels (b < out, or out not a multiple of 16; training's batch 64): y^T =
//    w . x^T, one panel of at most kPanel rows of x at a time: the panel is
//    packed as x^T (in, width) and w, in its own (out, in) layout, is the
//    GEMM's broadcast operand, so nothing the size of w is copied per call (w
//    is the large operand at these batch sizes: 0.8 MB for the student's first
//    layer, 4.7 MB for the teacher's, against 0.2 MB for a panel of 64 student
//    rows). Then y = (y^T)^T + bias, and ReLU.
//  - rows (b >= out, out a multiple of 16; large inference batches): y = x .
//    w^T with x, in its own layout, as the broadcast operand and w packed once
//    per call as w^T (in, out), which is then smaller than x; y's rows come out
//    in place, so no transpose back either. At batch 1,000 packing and
//    unpacking took 18 % of the student's forward in the panel form (`perf`,
//    bench/RESULTS.md).
// Both sum each y element as the same FMA chain over k in ascending order, so
// they give the same bits.
//
// Compiled with -ffp-contract=off (CMakeLists.txt) so that the bias add rounds
// on its own on every path; the GEMM's multiply-adds are explicit FMAs.
#include "dense_gemm.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "kd/error.h"
#include "simd_arch.h"

#if KD_HAS_SIMD_PATHS
#include <omp.h>

namespace kd::fast {
namespace {
constexpr int kPanel = 64;     // rows of x per panel: 4 AVX-512 vectors of columns of y^T
constexpr int kBlockK = 256;   // k per GEMM call: 64 KB of packed x^T (64, 128 and 256 measured alike)
constexpr int kRowAlign = 6;   // thread shares of w's rows: whole GEMM row blocks (6 rows on every path)
constexpr int kRowChunk = 96;  // rows of y per step of the rows form: x's and y's rows of a chunk stay in L2
}  // namespace

#define KD_SIMD_KERNELS "dense_kernels.inc"
#include "simd_paths.inc"

namespace {

// A sum's output: + bias (one rounding), then ReLU; the same in both forms.
inline float biased(float sum, float bias, bool relu) {
  const float v = sum + bias;
  return relu ? std::max(v, 0.0f) : v;
}

// y rows [0, rows) x columns [o_lo, o_hi) = c^T + bias, then ReLU; c: (out, width) row-major, y: (rows, out).
void unpack_panel(const float* c, int width, const float* bias, float* y, int rows, int out, int o_lo, int o_hi,
                  bool relu) {
  for (int j = 0; j < rows; ++j)
    for (int o = o_lo; o < o_hi; ++o) y[size_t(j) * out + o] = biased(c[size_t(o) * width + j], bias[o], relu);
}

// y rows [0, rows) += bias, then ReLU; y: (rows, out) row-major.
void add_bias_rows(const float* bias, float* y, int rows, int out, bool relu) {
  for (int j = 0; j < rows; ++j)
    for (int o = 0; o < out; ++o) y[size_t(j) * out + o] = biased(y[size_t(j) * out + o], bias[o], relu);
}

// Part `part` of `parts` of [0, n), whole multiples of `align` except the last.
std::pair<int, int> share(int n, int part, int parts, int align) {
  const int units = (n + align - 1) / align;
  const int lo = int(int64_t(units) * part / parts) * align, hi = int(int64_t(units) * (part + 1) / parts) * align;
  return {std::min(n, lo), std::min(n, hi)};
}

}  // namespace

bool dense_gemm_supports(CpuPath path) { return path != CpuPath::Scalar && cpu_supports(path); }

void dense_forward_gemm(const float* x, const float* w, const float* bias, float* y, int b, int in, int out, bool relu,
                        int threads, std::vector<float>& scratch, CpuPath path) {
  if (!dense_gemm_supports(path))
    fail(std::string("dense_forward_gemm: no kernel for the ") + cpu_path_name(path) + " path on this CPU");
  const auto pack = KD_SIMD_DISPATCH(path, pack_panel);
  const auto product = KD_SIMD_DISPATCH(path, panel_product);
  const int panels = (b + kPanel - 1) / kPanel;
  const auto rows_of = [&](int p) { return std::min(kPanel, b - p * kPanel); };
  const auto width_of = [&](int p) { return (rows_of(p) + 15) / 16 * 16; };
  const size_t c_size = size_t(out) * kPanel;  // one panel's y^T
  if (b <= 0) return;

  if (b >= out && out % 16 == 0) {
    // The rows form. scratch: w^T (in, out), packed by all threads (shares of k). Then each thread takes
    // whole 6-row blocks of y, kRowChunk rows at a time: k-blocks of x's rows and of w^T stay in cache while
    // the chunk's sums build up in y, then the chunk gets its bias and ReLU while it is still in cache.
    scratch.resize(size_t(in) * out);
    float* wt = scratch.data();
    const auto product_rows = KD_SIMD_DISPATCH(path, rows_product);
    const auto run_rows = [&](int t, int n) {  // thread t of n
      const auto [k_lo, k_hi] = share(in, t, n, 16);
      if (k_lo < k_hi) pack(w + k_lo, out, in, k_hi - k_lo, out, wt + size_t(k_lo) * out);
#pragma omp barrier
      const auto [r_lo, r_hi] = share(b, t, n, kRowAlign);
      for (int r = r_lo; r < r_hi; r += kRowChunk) {
        const int rows = std::min(kRowChunk, r_hi - r);
        product_rows(x + size_t(r) * in, in, wt, in, out, rows, y + size_t(r) * out);
        add_bias_rows(bias, y + size_t(r) * out, rows, out, relu);
      }
    };
    if (threads == 1) return run_rows(0, 1);
#pragma omp parallel num_threads(threads)
    run_rows(omp_get_thread_num(), omp_get_num_threads());
    return;
  }

  if (panels >= threads) {
    // Threads take runs of whole panels. k-blocks outermost: a block of w (out rows x kBlockK) stays in L2
    // while all the thread's panels use it, so w is read from memory once per thread, not once per panel.
    // scratch: every panel's y^T, then one packed block per thread.
    const size_t block_size = size_t(kBlockK) * kPanel;
    scratch.resize(panels * c_size + threads * block_size);
    const auto run_panels = [&](int t, int n) {  // thread t of n
      const auto [p_lo, p_hi] = share(panels, t, n, 1);
      float* xt = scratch.data() + panels * c_size + t * block_size;
      for (int k0 = 0; k0 < in; k0 += kBlockK)
        for (int p = p_lo; p < p_hi; ++p) {
          const int kc = std::min(kBlockK, in - k0);
          pack(x + size_t(p) * kPanel * in + k0, rows_of(p), in, kc, width_of(p), xt);
          product(w + k0, in, xt, kc, width_of(p), 0, out, scratch.data() + p * c_size, k0 > 0);
        }
      for (int p = p_lo; p < p_hi; ++p)
        unpack_panel(scratch.data() + p * c_size, width_of(p), bias, y + size_t(p) * kPanel * out, rows_of(p), out, 0,
                     out, relu);
    };
    if (threads == 1) return run_panels(0, 1);
#pragma omp parallel num_threads(threads)
    run_panels(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
  // Fewer panels than threads (b <= kPanel on 2 threads): per panel, the threads pack it together (shares of
  // k), then each multiplies its share of w's rows and writes those columns of y. scratch: x^T, then y^T.
  scratch.resize(size_t(in) * kPanel + c_size);
  float* xt = scratch.data();
  float* c = xt + size_t(in) * kPanel;
  for (int p = 0; p < panels; ++p) {
    const float* xp = x + size_t(p) * kPanel * in;
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const auto [k_lo, k_hi] = share(in, t, n, 16);
      if (k_lo < k_hi) pack(xp + k_lo, rows_of(p), in, k_hi - k_lo, width_of(p), xt + size_t(k_lo) * width_of(p));
#pragma omp barrier
      const auto [o_lo, o_hi] = share(out, t, n, kRowAlign);
      if (o_lo < o_hi) {
        product(w, in, xt, in, width_of(p), o_lo, o_hi, c, false);
        unpack_panel(c, width_of(p), bias, y + size_t(p) * kPanel * out, rows_of(p), out, o_lo, o_hi, relu);
      }
    }
  }
}

}  // namespace kd::fast

#else  // neither x86-64 nor ARM64: no kernels; the fast engine keeps oneDNN's SGEMM

namespace kd::fast {
bool dense_gemm_supports(CpuPath) { return false; }
void dense_forward_gemm(const float*, const float*, const float*, float*, int, int, int, bool, int, std::vector<float>&,
                        CpuPath) {
  fail("dense_forward_gemm: no kernel on this architecture");
}
}  // namespace kd::fast

#endif
