// Which CPU library for the fast engine: the teacher's convolutions and its
// big dense layer at batch 64, on oneDNN (direct and Winograd, its own blocked
// layouts) and on OpenBLAS SGEMM with im2col (one image at a time, the
// textbook lowering), forward, backward-data and backward-weights, plus the
// dense layer's three GEMMs on both libraries' SGEMM.
//
// Timed in CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID) with one
// thread, so the numbers hold on a machine other programs share; median of
// 15 after 3 warm-ups (--quick: 3 after 1). Built and run by bench/cpu_libs.sh.
#include <cblas.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <dnnl.hpp>

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Warm-ups and timed calls per measurement; --quick (CI) takes 1 and 3.
int g_warmups = 3, g_repeats = 15;

double median_ms(const std::function<void()>& f) {
  for (int i = 0; i < g_warmups; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < g_repeats; ++i) {
    const double t0 = cpu_ms();
    f();
    ms.push_back(cpu_ms() - t0);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> random_vector(size_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Conv {
  int n, c, h, w, k, oc;  // x: (n, c, h, w), weights (oc, c, k, k), stride 1, no padding
  int oh() const { return h - k + 1; }
  int ow() const { return w - k + 1; }
};

// x: (c, h, w) one image -> col: (c*k*k, oh*ow)
void im2col(const float* x, float* col, const Conv& s) {
  for (int c = 0; c < s.c; ++c)
    for (int ky = 0; ky < s.k; ++ky)
      for (int kx = 0; kx < s.k; ++kx) {
        float* row = col + size_t((c * s.k + ky) * s.k + kx) * s.oh() * s.ow();
        for (int y = 0; y < s.oh(); ++y)
          std::copy_n(x + (size_t(c) * s.h + y + ky) * s.w + kx, s.ow(), row + size_t(y) * s.ow());
      }
}

// col: (c*k*k, oh*ow) -> dx: (c, h, w), summing overlapping windows
void col2im(const float* col, float* dx, const Conv& s) {
  std::fill(dx, dx + size_t(s.c) * s.h * s.w, 0.0f);
  for (int c = 0; c < s.c; ++c)
    for (int ky = 0; ky < s.k; ++ky)
      for (int kx = 0; kx < s.k; ++kx) {
        const float* row = col + size_t((c * s.k + ky) * s.k + kx) * s.oh() * s.ow();
        for (int y = 0; y < s.oh(); ++y) {
          float* d = dx + (size_t(c) * s.h + y + ky) * s.w + kx;
          for (int i = 0; i < s.ow(); ++i) d[i] += row[size_t(y) * s.ow() + i];
        }
      }
}

void openblas_conv(const Conv& s) {
  const int kk = s.c * s.k * s.k, p = s.oh() * s.ow();
  const size_t in = size_t(s.c) * s.h * s.w, out = size_t(s.oc) * p;
  auto x = random_vector(s.n * in), w = random_vector(size_t(s.oc) * kk), dy = random_vector(s.n * out);
  std::vector<float> y(s.n * out), dx(s.n * in), dw(size_t(s.oc) * kk), col(size_t(kk) * p);
  const double fwd = median_ms([&] {
    for (int i = 0; i < s.n; ++i) {
      im2col(x.data() + i * in, col.data(), s);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.oc, p, kk, 1, w.data(), kk, col.data(), p, 0,
                  y.data() + i * out, p);
    }
  });
  const double bwd_data = median_ms([&] {
    for (int i = 0; i < s.n; ++i) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, p, s.oc, 1, w.data(), kk, dy.data() + i * out, p, 0,
                  col.data(), p);
      col2im(col.data(), dx.data() + i * in, s);
    }
  });
  const double bwd_weights = median_ms([&] {
    for (int i = 0; i < s.n; ++i) {
      im2col(x.data() + i * in, col.data(), s);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.oc, kk, p, 1, dy.data() + i * out, p, col.data(), p,
                  i ? 1.0f : 0.0f, dw.data(), kk);
    }
  });
  std::printf("  %-28s fwd %7.2f  bwd-data %7.2f  bwd-weights %7.2f  total %7.2f ms\n", "OpenBLAS im2col + SGEMM", fwd,
              bwd_data, bwd_weights, fwd + bwd_data + bwd_weights);
}

void onednn_conv(const Conv& s, dnnl::algorithm alg, const char* name) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  const dnnl::memory::dims xd{s.n, s.c, s.h, s.w}, wd{s.oc, s.c, s.k, s.k}, bd{s.oc}, yd{s.n, s.oc, s.oh(), s.ow()},
      one{1, 1}, zero{0, 0};
  const dnnl::memory::desc xm(xd, dt::f32, tag::any), wm(wd, dt::f32, tag::any), bm(bd, dt::f32, tag::x),
      ym(yd, dt::f32, tag::any);
  dnnl::convolution_forward::primitive_desc fpd;
  try {
    fpd = {{dnnl::prop_kind::forward_training, alg, xm, wm, bm, ym, one, zero, zero}, eng};
  } catch (const dnnl::error&) {
    std::printf("  %-28s not available on this CPU\n", name);
    return;
  }
  const dnnl::convolution_backward_data::primitive_desc dpd({alg, xm, wm, ym, one, zero, zero}, eng, fpd);
  const dnnl::convolution_backward_weights::primitive_desc wpd({alg, xm, wm, bm, ym, one, zero, zero}, eng, fpd);
  // Data already in the primitives' layouts: what the engine pays on top (reorders) is measured in the engine.
  dnnl::memory x(fpd.src_desc(), eng), w(fpd.weights_desc(), eng), b(fpd.bias_desc(), eng), y(fpd.dst_desc(), eng);
  dnnl::memory dy(dpd.diff_dst_desc(), eng), w2(dpd.weights_desc(), eng), dx(dpd.diff_src_desc(), eng);
  dnnl::memory x3(wpd.src_desc(), eng), dy3(wpd.diff_dst_desc(), eng), dw(wpd.diff_weights_desc(), eng),
      db(wpd.diff_bias_desc(), eng);
  dnnl::convolution_forward f(fpd);
  dnnl::convolution_backward_data d(dpd);
  dnnl::convolution_backward_weights g(wpd);
  const double fwd = median_ms([&] {
    f.execute(st, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}});
    st.wait();
  });
  const double bwd_data = median_ms([&] {
    d.execute(st, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w2}, {DNNL_ARG_DIFF_SRC, dx}});
    st.wait();
  });
  const double bwd_weights = median_ms([&] {
    g.execute(st,
              {{DNNL_ARG_SRC, x3}, {DNNL_ARG_DIFF_DST, dy3}, {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, db}});
    st.wait();
  });
  std::printf("  %-28s fwd %7.2f  bwd-data %7.2f  bwd-weights %7.2f  total %7.2f ms  (%s)\n", name, fwd, bwd_data,
              bwd_weights, fwd + bwd_data + bwd_weights, fpd.impl_info_str());
}

// y: (b, out) = x: (b, in) . w^T; dx = dy . w; dw = dy^T . x, on both SGEMMs.
void dense(int b, int in, int out) {
  auto x = random_vector(size_t(b) * in), w = random_vector(size_t(out) * in), dy = random_vector(size_t(b) * out);
  std::vector<float> y(size_t(b) * out), dx(size_t(b) * in), dw(size_t(out) * in);
  const double ob = median_ms([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, out, in, 1, x.data(), in, w.data(), in, 0, y.data(), out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, in, out, 1, dy.data(), out, w.data(), in, 0, dx.data(),
                in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, b, 1, dy.data(), out, x.data(), in, 0, dw.data(), in);
  });
  const double od = median_ms([&] {
    dnnl_sgemm('N', 'T', b, out, in, 1, x.data(), in, w.data(), in, 0, y.data(), out);
    dnnl_sgemm('N', 'N', b, in, out, 1, dy.data(), out, w.data(), in, 0, dx.data(), in);
    dnnl_sgemm('T', 'N', out, in, b, 1, dy.data(), out, x.data(), in, 0, dw.data(), in);
  });
  std::printf("dense %d x %d -> %d, forward + both backward GEMMs: OpenBLAS %.2f ms, oneDNN sgemm %.2f ms\n", b, in,
              out, ob, od);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--quick") g_warmups = 1, g_repeats = 3;
  openblas_set_num_threads(1);
  for (const Conv s : {Conv{64, 1, 28, 28, 3, 32}, Conv{64, 32, 26, 26, 3, 64}}) {
    std::printf("conv %d->%d 3x3 on %dx%d, batch %d (CPU ms per call, 1 thread)\n", s.c, s.oc, s.h, s.w, s.n);
    openblas_conv(s);
    onednn_conv(s, dnnl::algorithm::convolution_direct, "oneDNN direct");
    onednn_conv(s, dnnl::algorithm::convolution_winograd, "oneDNN Winograd F(4x4,3x3)");
  }
  dense(64, 9216, 128);
  return 0;
}
