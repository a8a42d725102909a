// The fast CPU ops (kd/cpu_ops.h): fp32, multithreaded. Convolutions on
// oneDNN (OnednnConv, one per shape), except those WinogradConv takes (3x3,
// stride 1, channels in sixteens, Nchw16c on both sides, a vector path), which
// also fuse a following ReLU and max-pool; dense layers on oneDNN's SGEMM, except
// forwards of 16 rows or more on a vector path, which take the engine's own GEMM
// (dense_gemm.h); the cheap ops as OpenMP loops over the same thread pool oneDNN uses.
//
// Determinism: every loop here, and the own Winograd forwards and dense GEMM, is
// elementwise or has a fixed per-element order of summation, so its result does
// not depend on the thread count; oneDNN's
// convolutions and SGEMM split their reductions by thread count, so results
// are bit-identical across runs with the same --threads and agree within fp32
// rounding across thread counts (tests/fast_cpu_test.cpp checks both).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include "kd/cpu_ops.h"
#include "kd/error.h"
#include "cpu_kernels.h"
#include "dense_gemm.h"
#include "onednn_conv.h"
#include "cpu_path.h"
#include "omp_waits.h"
#include "winograd_conv.h"

namespace kd {

int resolve_cpu_threads(int threads) {
  if (threads < 0) fail("--threads: must be >= 0 (0 = every hardware thread), got " + std::to_string(threads));
  if (threads > 0) return threads;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

namespace fast {
namespace {

// A path forced with $KD_CPU_PATH caps oneDNN's ISA the same way (avx512: AVX-512 core,
// avx2: AVX2, scalar: SSE4.1), so the whole engine runs as it would on a CPU with only that
// path, unless oneDNN's own DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA says otherwise. oneDNN
// accepts the cap only before its first kernel is generated; afterwards (a second engine in
// one process) its kernels keep the ISA they were generated for. The cap is x86's: on ARM64
// neon is the only vector path, and oneDNN answers a cap with "unimplemented" and runs as it
// would (so scalar there turns off only the engine's own kernels).
void cap_onednn_isa() {
  const char* env = std::getenv("KD_CPU_PATH");
  if (!env || !*env || std::getenv("DNNL_MAX_CPU_ISA") || std::getenv("ONEDNN_MAX_CPU_ISA")) return;
  dnnl::cpu_isa isa = dnnl::cpu_isa::sse41;  // scalar
  switch (cpu_path()) {
    case CpuPath::Avx512: isa = dnnl::cpu_isa::avx512_core; break;
    case CpuPath::Avx2: isa = dnnl::cpu_isa::avx2; break;
    case CpuPath::Scalar: break;
    case CpuPath::Neon: return;
  }
  // Returns invalid_arguments, without throwing, when it comes too late in this process (see above).
  (void)dnnl::set_max_cpu_isa(isa);
}

// The own dense GEMM pads x's rows to a multiple of 16 (one vector of y^T's columns): below 16 rows
// most of its work would be padding, and oneDNN's SGEMM (a GEMV at one row) is as fast.
constexpr int kDenseGemmMinRows = 16;

// GEMMs and convolutions of fewer multiply-adds than this run on one thread (use_threads_for): 2^21
// with passive waits; 2^19 where threads spin (omp_waits.h), which puts the teacher's fc1 at batch 1
// (1.2 M, a GEMV bound by memory) on two threads: 0.17-0.18 -> 0.12-0.13 ms per batch-1 teacher
// forward on the AVX2 path, 0.12-0.14 -> 0.09-0.10 on AVX-512, with the Winograd's change (idle VM,
// bench/RESULTS.md).
int64_t gemm_parallel_min() { return omp_waits_spin() ? int64_t(1) << 19 : int64_t(1) << 21; }
// The same for the own dense GEMM's forward, higher, and by path and waits. AVX-512 with passive
// waits: the student's first layer at batch 64 (12.8 M) runs faster on one thread than on two (0.170
// against 0.194-0.210 ms per forward at load ~10 on the 2-core VM; idle, 0.171-0.182 against
// 0.176-0.193 ms); the teacher's fc1 at batch 64 (75 M) gains from two. With spinning threads two pay
// there too (idle: 0.156-0.165 -> 0.138-0.142 ms). AVX2, half the work per instruction: two threads
// pay from the student's first layer up on the idle VM (0.265-0.31 against 0.31-0.33 ms,
// bench/RESULTS.md), though not under heavy load. Threads do not change the GEMM's results.
int64_t dense_gemm_parallel_min(CpuPath path) {
  return path == CpuPath::Avx2 || omp_waits_spin() ? int64_t(1) << 23 : int64_t(1) << 24;
}

// Loops shorter than this run on the calling thread: waking the pool costs
// microseconds, which is the whole budget of a batch-1 student forward.
constexpr int64_t kParallelMin = 1 << 15;

std::string shape_text(const ref::ConvShape& s) {
  return "n=" + std::to_string(s.n) + " " + std::to_string(s.in_c) + "->" + std::to_string(s.out_c) + " " +
         std::to_string(s.h) + "x" + std::to_string(s.w) + " k=" + std::to_string(s.k) +
         " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad);
}

// Runs a oneDNN call, turning its exception into a kd::Error that names the call.
template <class F>
void onednn_call(const std::string& what, F&& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    fail("oneDNN " + what + " failed: " + e.what() + " (status " + std::to_string(int(e.status)) +
         "); check that the CPU supports the oneDNN build (libdnnl-dev) and that memory is available");
  }
}

void sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
           float beta, float* c, int64_t ldc) {
  // Row-major C = op(A) . op(B) + beta C.
  const dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    fail("oneDNN dnnl_sgemm(" + std::string(1, ta) + std::string(1, tb) + ", m=" + std::to_string(m) +
         ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ") failed with status " + std::to_string(int(st)));
}

class FastOps final : public CpuOps {
 public:
  explicit FastOps(int threads) : threads_(resolve_cpu_threads(threads)) {
    omp_set_num_threads(threads_);
    cap_onednn_isa();
    onednn_call("engine creation", [&] {
      engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
      stream_ = dnnl::stream(engine_);
    });
  }

  std::string describe() const override {
    const dnnl_version_t* v = dnnl_version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
           " fp32, " + std::to_string(threads_) + (threads_ == 1 ? " thread" : " threads");
  }
  bool is_reference() const override { return false; }

  // oneDNN's AVX-512 convolutions compute in nChw16c (bench/RESULTS.md): handing
  // them that layout saves a reorder in and out of every call.
  ActLayout conv_output_layout(const ref::ConvShape& s) const override {
    return s.out_c % 16 == 0 ? ActLayout::Nchw16c : ActLayout::Nchw;
  }
  void conv_forward(const float* x, const float* w, const float* b, float* y, const ref::ConvShape& s, bool relu,
                    ActLayout xl, ActLayout yl) override {
    if (WinogradConv* conv = yl == ActLayout::Nchw16c ? winograd(s, xl) : nullptr)
      return conv->conv_forward(x, w, b, y, relu);
    OnednnConv& conv = plan(s, xl, yl);
    use_threads_for(int64_t(s.n) * s.out_c * s.in_c * s.k * s.k * s.out_h() * s.out_w());  // batch 1: one thread
    onednn_call("convolution forward (" + shape_text(s) + ")", [&] { conv.forward(stream_, x, w, b, y, relu); });
  }
  void conv_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const ref::ConvShape& s, ActLayout xl, ActLayout yl) override {
    if (WinogradConv* conv = yl == ActLayout::Nchw16c ? winograd(s, xl) : nullptr)
      return conv->conv_backward(x, w, dy, dx, dw, db);
    OnednnConv& conv = plan(s, xl, yl);
    onednn_call("convolution backward (" + shape_text(s) + ")", [&] { conv.backward(stream_, x, w, dy, dx, dw, db); });
  }

  ConvReluPool* conv_relu_pool(const ref::ConvShape& s, ActLayout xl) override { return winograd(s, xl); }

  // y = x . w^T + bias. From kDenseGemmMinRows rows on a vector path: the engine's own GEMM
  // (dense_gemm.h), thread-count independent. Below, and on the scalar path, oneDNN's SGEMM: on one
  // thread it writes y directly (rows start as the bias, beta = 1); on more it splits y = x . w^T
  // (m = b = 64 rows) badly (no faster on 2 threads than on 1 for the teacher's fc1, 2.3 vs 2.1 ms),
  // while the transposed product y^T = w . x^T (m = out) took 1.2 ms; so it computes y^T and
  // transposes it while adding the bias.
  void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out,
                     bool relu) override {
    if (b >= kDenseGemmMinRows && dense_gemm_supports(cpu_path())) {
      use_threads_for(int64_t(b) * in * out, dense_gemm_parallel_min(cpu_path()));
      return dense_forward_gemm(x, w, bias, y, b, in, out, relu, omp_get_max_threads(), dense_scratch_);
    }
    use_threads_for(int64_t(b) * in * out);
    if (omp_get_max_threads() == 1) {
      for (int i = 0; i < b; ++i) std::copy(bias, bias + out, y + size_t(i) * out);
      sgemm('N', 'T', b, out, in, x, in, w, in, 1.0f, y, out);
    } else {
      dense_scratch_.resize(size_t(b) * out);
      sgemm('N', 'T', out, b, in, w, in, x, in, 0.0f, dense_scratch_.data(), b);  // (out, b)
      for (int i = 0; i < b; ++i)
        for (int j = 0; j < out; ++j) y[size_t(i) * out + j] = dense_scratch_[size_t(j) * b + i] + bias[j];
    }
    if (relu) relu_forward(y, y, int64_t(b) * out);
  }
  void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b, int in,
                      int out) override {
    use_threads_for(int64_t(b) * in * out);
    if (dx) sgemm('N', 'N', b, in, out, dy, out, w, in, 0.0f, dx, in);  // dx: (b, in) = dy . w
    sgemm('T', 'N', out, in, b, dy, out, x, in, 0.0f, dw, in);          // dw: (out, in) = dy^T . x
    // db: column sums of dy, each in row order in double (thread-count independent).
#pragma omp parallel for schedule(static) if (int64_t(b) * out >= kParallelMin)
    for (int j = 0; j < out; ++j) {
      double sum = 0;
      for (int i = 0; i < b; ++i) sum += dy[size_t(i) * out + j];
      db[j] = float(sum);
    }
  }

  void relu_forward(const float* x, float* y, int64_t n) override {
    parallel_ranges(n, [&](int64_t lo, int64_t hi) { relu_forward_kernel(x + lo, y + lo, hi - lo); });
  }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t n) override {
    parallel_ranges(n, [&](int64_t lo, int64_t hi) { relu_backward_kernel(y + lo, dy + lo, dx + lo, hi - lo); });
  }

  // Threads take whole (h, w) planes, or whole blocks of 16 planes in Nchw16c
  // (block b holds planes 16b..16b+15, in the same order as Nchw).
  void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w,
                          ActLayout xl) override {
    const size_t in_plane = size_t(h) * w, out_plane = size_t(h / 2) * (w / 2);
    if (xl == ActLayout::Nchw16c) {
      parallel_ranges(
          int64_t(n) * c / 16,
          [&](int64_t lo, int64_t hi) {
            maxpool_forward_blocked_kernel(x + lo * 16 * in_plane, y + lo * 16 * out_plane,
                                           argmax + lo * 16 * out_plane, hi - lo, h, w);
          },
          int64_t(16 * in_plane));
      return;
    }
    parallel_ranges(
        int64_t(n) * c,
        [&](int64_t lo, int64_t hi) {
          maxpool_forward_kernel(x + lo * in_plane, y + lo * out_plane, argmax + lo * out_plane, hi - lo, h, w);
        },
        int64_t(in_plane));
  }
  void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                           ActLayout xl) override {
    const size_t in_plane = size_t(h) * w, out_plane = size_t(h / 2) * (w / 2);
    if (xl == ActLayout::Nchw16c) {
      parallel_ranges(
          int64_t(n) * c / 16,
          [&](int64_t lo, int64_t hi) {
            maxpool_backward_blocked_kernel(dy + lo * 16 * out_plane, argmax + lo * 16 * out_plane,
                                            dx + lo * 16 * in_plane, hi - lo, h, w);
          },
          int64_t(16 * in_plane));
      return;
    }
    parallel_ranges(
        int64_t(n) * c,
        [&](int64_t lo, int64_t hi) {
          maxpool_backward_kernel(dy + lo * out_plane, argmax + lo * out_plane, dx + lo * in_plane, hi - lo, h, w);
        },
        int64_t(in_plane));
  }

  // The mask of ref::dropout_forward, bit for bit (same Philox counters).
  void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t step,
                       uint64_t first) override {
    if (p == 0.0f) {
      std::copy(x, x + n, y);
      std::fill(mask, mask + n, uint8_t(1));
      return;
    }
    parallel_ranges(
        n, [&](int64_t lo, int64_t hi) { dropout_forward_kernel(x, y, mask, lo, hi, p, seed, step, int64_t(first)); });
  }
  void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) override {
    const float scale = 1.0f / (1.0f - p);
    parallel_ranges(
        n, [&](int64_t lo, int64_t hi) { dropout_backward_kernel(dy + lo, mask + lo, dx + lo, hi - lo, scale); });
  }

  // torch.optim.Adam's update in fp32 (as torch computes it for fp32 tensors):
  //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
  //   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc = 1 - beta^step
  // The reference evaluates the same formula in double; the two agree to fp32
  // rounding (tests/fast_cpu_test.cpp).
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
                 int64_t step) override {
    if (step < 1) fail("fast adam_step: step must be >= 1 (it counts this update), got " + std::to_string(step));
    const float step_size = float(double(a.lr) / (1.0 - std::pow(double(a.beta1), double(step))));
    const float inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(double(a.beta2), double(step))));
    parallel_ranges(n, [&](int64_t lo, int64_t hi) {
      adam_kernel(p + lo, g + lo, m + lo, v + lo, hi - lo, a, step_size, inv_sqrt_bc2);
    });
  }
  // torch.optim.SGD with momentum (dampening 0): buf = g (step 1) or momentum buf + g; p -= lr buf.
  void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                         int64_t step) override {
    if (step < 1)
      fail("fast sgd_momentum_step: step must be >= 1 (it counts this update), got " + std::to_string(step));
    parallel_ranges(n, [&](int64_t lo, int64_t hi) {
      sgd_kernel(p + lo, g + lo, buf + lo, hi - lo, a.lr, a.momentum, a.weight_decay, step == 1);
    });
  }

 private:
  // Each call re-asserts this object's thread count: two FastOps with different
  // counts may live in one process (tests), and the OpenMP setting is global.
  void use_threads() const {
    if (omp_get_max_threads() != threads_) omp_set_num_threads(threads_);
  }
  // One thread for a GEMM of fewer than `parallel_min` multiply-adds: with
  // passive waiting, waking a sleeping worker costs tens of microseconds, more
  // than such a GEMM (a batch-1 student forward went from 106 to ~20 us).
  void use_threads_for(int64_t multiply_adds, int64_t parallel_min = gemm_parallel_min()) const {
    const int want = multiply_adds < parallel_min ? 1 : threads_;
    if (omp_get_max_threads() != want) omp_set_num_threads(want);
  }

  // Splits [0, n) into one contiguous range per thread (OpenMP static order)
  // and runs f(lo, hi) on each; small loops run on the calling thread.
  // `weight` is the work per item, for the threshold.
  template <class F>
  void parallel_ranges(int64_t n, F&& f, int64_t weight = 1) {
    use_threads();
    if (n * weight < kParallelMin || threads_ == 1) {
      if (n > 0) f(int64_t(0), n);
      return;
    }
#pragma omp parallel
    {
      const int64_t parts = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t per = (n + parts - 1) / parts;
      const int64_t lo = std::min(n, t * per), hi = std::min(n, lo + per);
      if (lo < hi) f(lo, hi);
    }
  }

  OnednnConv& plan(const ref::ConvShape& s, ActLayout xl, ActLayout yl) {
    use_threads();
    const auto key = std::make_tuple(s.n, s.in_c, s.h, s.w, s.out_c, s.k, s.stride, s.pad, xl, yl);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      std::unique_ptr<OnednnConv> conv;
      onednn_call("convolution set-up (" + shape_text(s) + ")",
                  [&] { conv = std::make_unique<OnednnConv>(engine_, s, xl, yl); });
      it = plans_.emplace(key, std::move(conv)).first;
    }
    return *it->second;
  }

  // The Winograd convolution of shape s, when it takes s with x in layout xl (outputs are Nchw16c); else null.
  WinogradConv* winograd(const ref::ConvShape& s, ActLayout xl) {
    if (xl != ActLayout::Nchw16c || !WinogradConv::supports(s)) return nullptr;
    use_threads();
    auto& conv = winograd_[std::make_tuple(s.n, s.in_c, s.h, s.w, s.out_c, s.pad)];
    if (!conv) conv = std::make_unique<WinogradConv>(s);
    return conv.get();
  }

  int threads_;
  std::vector<float> dense_scratch_;  // dense_forward's packed x^T and y^T
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<std::tuple<int, int, int, int, int, int, int, int, ActLayout, ActLayout>, std::unique_ptr<OnednnConv>>
      plans_;
  std::map<std::tuple<int, int, int, int, int, int>, std::unique_ptr<WinogradConv>> winograd_;
};

}  // namespace
}  // namespace fast

std::unique_ptr<CpuOps> make_fast_ops(int threads) { return std::make_unique<fast::FastOps>(threads); }

std::string fast_conv_path() {
  const fast::CpuPath path = fast::cpu_path();
  const std::string forced = std::getenv("KD_CPU_PATH") && *std::getenv("KD_CPU_PATH") ? " (KD_CPU_PATH)" : "";
  switch (path) {
    case fast::CpuPath::Avx512:
      return "AVX-512" + forced + ": own fused Winograd for 3x3 convolutions, oneDNN for the rest";
    case fast::CpuPath::Avx2: return "AVX2" + forced + ": own fused Winograd for 3x3 convolutions, oneDNN for the rest";
    case fast::CpuPath::Neon: return "NEON" + forced + ": own fused Winograd for 3x3 convolutions, oneDNN for the rest";
    case fast::CpuPath::Scalar: break;
  }
  return "scalar" + forced + ": oneDNN does every convolution (the own Winograd needs AVX2+FMA, AVX-512 or NEON)";
}

std::string fast_thread_waits() {
  return fast::omp_waits_spin() ? "threads spin between ops" : "threads wait passively between ops";
}

}  // namespace kd
