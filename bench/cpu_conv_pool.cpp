// The teacher's conv2 -> ReLU -> max-pool on the fast CPU engine, three ways,
// side by side in one run: oneDNN's convolution (jit_wino_4x3 at this shape)
// followed by the engine's max-pool, as the engine ran it before; the engine's
// own Winograd (src/cpu/fast/winograd_conv.h) unfused, followed by the same pool;
// and the engine's own Winograd with the ReLU and pool fused, as it runs now.
//
// Each round times one call of every variant in turn, so all see the same
// machine load; wall time per call, median over the rounds after warm-ups.
//
// Usage: build/cpu_conv_pool [threads (default 1)] [rounds (default 30)] [batch (default 64)]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "../src/cpu/fast/onednn_conv.h"
#include "../src/cpu/fast/winograd_conv.h"
#include "kd/cpu_ops.h"

namespace kd {
namespace {

struct Variant {
  const char* name;
  std::function<void()> run;
  std::vector<double> ms = {};
};

int run(int threads, int rounds, int batch) {
  const ref::ConvShape s = ref::conv_shape(batch, 32, 26, 26, 64, 3);
  if (!fast::WinogradConv::supports(s)) {
    std::printf("cpu_conv_pool: skipped: the engine's Winograd needs an AVX-512 CPU\n");
    return 0;
  }
  auto ops = make_fast_ops(threads);  // sets the OpenMP thread count both variants use
  const int oh = s.out_h(), ow = s.out_w();
  const size_t nx = size_t(batch) * 32 * 26 * 26, ny = size_t(batch) * 64 * oh * ow, np = ny / 4;
  std::vector<float> x(nx), w(size_t(64) * 32 * 9), b(64), y(ny), pooled(np), dpooled(np), masked(np), dy(ny), dx(nx),
      dw(w.size()), db(64);
  std::vector<uint8_t> argmax(np);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (float& e : x) e = std::max(0.0f, u(rng));  // conv1's output is ReLU'd
  for (float& e : w) e = 0.06f * u(rng);
  for (float& e : b) e = 0.1f * u(rng);
  for (float& e : dpooled) e = u(rng);

  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  fast::OnednnConv onednn(engine, s, ActLayout::Nchw16c, ActLayout::Nchw16c);
  fast::WinogradConv own(s);
  // Forward: conv + ReLU, then the pool (pooled, argmax); backward: ReLU mask at the pooled
  // gradient, the pool's backward into dy, the conv's backward. Only the fused variant differs.
  const auto pool_forward = [&] {
    ops->maxpool2x2_forward(y.data(), pooled.data(), argmax.data(), batch, 64, oh, ow, ActLayout::Nchw16c);
  };
  const auto pool_backward = [&] {
    ops->relu_backward(pooled.data(), dpooled.data(), masked.data(), int64_t(np));
    ops->maxpool2x2_backward(masked.data(), argmax.data(), dy.data(), batch, 64, oh, ow, ActLayout::Nchw16c);
  };
  std::vector<Variant> variants = {
      {"oneDNN Winograd, then pool: forward",
       [&] {
         onednn.forward(stream, x.data(), w.data(), b.data(), y.data(), true);
         pool_forward();
       }},
      {"oneDNN Winograd, then pool: backward",
       [&] {
         pool_backward();
         onednn.backward(stream, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
       }},
      {"own Winograd, then pool: forward",
       [&] {
         own.conv_forward(x.data(), w.data(), b.data(), y.data(), true);
         pool_forward();
       }},
      {"own Winograd, then pool: backward",
       [&] {
         pool_backward();
         own.conv_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
       }},
      {"own Winograd fused: forward", [&] { own.forward(x.data(), w.data(), b.data(), pooled.data(), argmax.data()); }},
      {"own Winograd fused: backward",
       [&] {
         own.backward(x.data(), w.data(), dpooled.data(), pooled.data(), argmax.data(), dx.data(), dw.data(),
                      db.data());
       }},
  };
  // The fused forward writes argmax in its own order: each backward runs right after its
  // own variant's forward, so a round is forward A, backward A, forward B, ...
  for (int r = 0; r < rounds + 3; ++r)
    for (size_t i = 0; i < variants.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      variants[i].run();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r >= 3) variants[i].ms.push_back(ms);
    }
  std::printf("teacher conv2 (%d x 32x26x26 -> 64x24x24) + ReLU + 2x2 max-pool, %s, %s; median of %d rounds\n", batch,
              onednn.describe().c_str(), ops->describe().c_str(), rounds);
  for (Variant& v : variants) {
    std::sort(v.ms.begin(), v.ms.end());
    std::printf("  %-40s %7.2f ms\n", v.name, v.ms[v.ms.size() / 2]);
  }
  const auto med = [&](size_t i) { return variants[i].ms[variants[i].ms.size() / 2]; };
  for (size_t v : {size_t(2), size_t(4)})
    std::printf("  speed-up over oneDNN of %-22s forward %.2fx, backward %.2fx, both %.2fx\n",
                v == 2 ? "own Winograd unfused:" : "own Winograd fused:", med(0) / med(v), med(1) / med(v + 1),
                (med(0) + med(1)) / (med(v) + med(v + 1)));
  return 0;
}

}  // namespace
}  // namespace kd

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 30;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 64;
  if (threads < 1 || rounds < 1 || batch < 1) {
    std::fprintf(stderr, "usage: cpu_conv_pool [threads >= 1] [rounds >= 1] [batch >= 1]\n");
    return 1;
  }
  return kd::run(threads, rounds, batch);
}
