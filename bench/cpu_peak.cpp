// How close the fast CPU engine comes to the core's fp32 peak, on the SIMD path
// it runs ($KD_CPU_PATH, or the widest this CPU has; src/cpu/fast/cpu_path.h):
//  - the peak: a register-only loop of independent FMAs on that path's vectors
//    (AVX-512: 16 floats, AVX2: 8; scalar: the AVX2 loop is not allowed, so the
//    scalar line reports no peak), measured, not taken from a datasheet;
//  - the default teacher's training step at batch 64 (forward with dropout,
//    backward, Adam) and the teacher's and student's inference forward at batch 1,
//    in GFLOP/s of the layers' direct arithmetic (a convolution counts
//    2 * out_h * out_w * out_c * in_c * 9 per image, whatever algorithm runs it:
//    the Winograd does fewer multiplies, so its "effective" rate may pass the
//    peak's share it actually uses).
// One thread, CPU time of the calling thread (robust to the other programs on a
// shared machine), median over rounds. One line per measurement, prefixed by the path.
//
// Usage: build/cpu_peak [rounds (default 20)]; bench/cpu_peak.sh runs it for every path.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "../src/cpu/fast/cpu_path.h"
#include "kd/arch.h"
#include "kd/cpu_model.h"
#include "kd/cpu_ops.h"

namespace kd {
namespace {

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Median CPU seconds of f() over `rounds` calls after two warm-ups.
double median_s(int rounds, const std::function<void()>& f) {
  f();
  f();
  std::vector<double> s;
  for (int r = 0; r < rounds; ++r) {
    const double t0 = thread_cpu_s();
    f();
    s.push_back(thread_cpu_s() - t0);
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

// kAcc independent FMA chains (more than latency x ports on current x86 cores) of V: Lanes floats, n iterations: 2 *
// kAcc * Lanes * n flops. Inlined into a caller with the path's target, whose instructions it is compiled with; a * b +
// c becomes one FMA there because this file is compiled with -ffp-contract=fast (CMakeLists.txt). Returns a sum so the
// loop stays.
constexpr int kAcc = 12;
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
template <class V, int Lanes>
__attribute__((always_inline)) inline float fma_loop(long n) {
  V acc[kAcc];
  // Start values off the fixed point b / (1 - a) = 1, which GCC would see and drop from the loop.
  for (int i = 0; i < kAcc; ++i) acc[i] = V{} + (float(i) + 0.5f);
  const V a = V{} + 0.999f, b = V{} + 1e-3f;
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * a + b;
  float sum = 0;
  for (int i = 0; i < kAcc; ++i)
    for (int l = 0; l < Lanes; ++l) sum += acc[i][l];
  return sum;
}
__attribute__((target("avx512f"))) float fma_loop_avx512(long n) { return fma_loop<v16f, 16>(n); }
__attribute__((target("avx2,fma"))) float fma_loop_avx2(long n) { return fma_loop<v8f, 8>(n); }

// GFLOP/s of the path's FMA loop on one thread; 0 for scalar.
double peak_gflops(fast::CpuPath path, int rounds) {
  if (path == fast::CpuPath::Scalar) return 0;
  const int lanes = path == fast::CpuPath::Avx512 ? 16 : 8;
  const long n = 20'000'000;
  volatile float sink = 0;
  const double s = median_s(std::max(3, rounds / 4), [&] {
    sink = sink + (path == fast::CpuPath::Avx512 ? fma_loop_avx512(n) : fma_loop_avx2(n));
  });
  return 2.0 * kAcc * lanes * double(n) / s / 1e9;
}

// Direct-arithmetic flops per image: forward, and a training step's forward + backward
// (weights for every layer, data for every layer but the first).
struct Flops {
  double forward = 0, train = 0;
};
Flops flops_per_image(const Arch& arch) {
  Flops f;
  bool first = true;
  for (const Layer& l : arch.layers) {
    if (l.kind != LayerKind::Conv && l.kind != LayerKind::Dense) continue;
    const double fl = 2.0 * double(l.out_shape.size()) * double(l.fan_in());  // one multiply-add per weight use
    f.forward += fl;
    f.train += fl * (first ? 2 : 3);
    first = false;
  }
  return f;
}

int run(int rounds) {
  const fast::CpuPath path = fast::cpu_path();
  const char* name = fast::cpu_path_name(path);
  const double peak = peak_gflops(path, rounds);
  if (peak > 0) std::printf("%s: fp32 peak, 1 thread: %.1f GFLOP/s (measured: %d-chain FMA loop)\n", name, peak, kAcc);
  else std::printf("%s: fp32 peak: none (no vector FMA path)\n", name);
  auto line = [&](const char* what, double flops, double s) {
    const double gflops = flops / s / 1e9;
    std::printf("%s: %-38s %9.3f ms  %7.1f GFLOP/s", name, what, s * 1e3, gflops);
    if (peak > 0) std::printf("  %5.1f %% of peak", 100 * gflops / peak);
    std::printf("\n");
  };
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;

  const Arch teacher = parse_arch(kDefaultTeacherArch, Shape{1, 28, 28, false}, 10, "teacher");
  const Arch student = parse_arch(kDefaultStudentArch, Shape{1, 28, 28, false}, 10, "student");
  {
    constexpr int kBatch = 64;
    CpuModel model(teacher, kBatch, make_fast_ops(1));
    init_params(teacher, 1, model.params().data());
    std::vector<float> x(size_t(kBatch) * 784), dlogits(size_t(kBatch) * 10), m(size_t(teacher.param_count)),
        v(size_t(teacher.param_count));
    for (float& e : x) e = normal(rng);
    for (float& e : dlogits) e = 0.01f * normal(rng);
    int64_t step = 0;
    const double s = median_s(rounds, [&] {
      ++step;
      model.forward(x.data(), kBatch, /*training=*/true, 1, uint64_t(step));
      model.backward(dlogits.data(), kBatch);
      model.ops().adam_step(model.params().data(), model.grads().data(), m.data(), v.data(), teacher.param_count,
                            ref::AdamParams{}, step);
    });
    line("teacher training step, batch 64", kBatch * flops_per_image(teacher).train, s);
  }
  for (const Arch* arch : {&teacher, &student}) {
    CpuModel model(*arch, 1, make_fast_ops(1));
    init_params(*arch, 1, model.params().data());
    std::vector<float> x(784);
    for (float& e : x) e = normal(rng);
    // Many forwards per timing: one batch-1 student forward is ~10 us, near the clock's resolution.
    const int reps = 50;
    const double s = median_s(rounds,
                              [&] {
                                for (int r = 0; r < reps; ++r) model.forward(x.data(), 1, /*training=*/false, 0, 0);
                              }) /
                     reps;
    line(arch == &teacher ? "teacher inference, batch 1" : "student inference, batch 1", flops_per_image(*arch).forward,
         s);
  }
  return 0;
}

}  // namespace
}  // namespace kd

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
  if (rounds < 1) {
    std::fprintf(stderr, "usage: cpu_peak [rounds >= 1]\n");
    return 1;
  }
  return kd::run(rounds);
}
