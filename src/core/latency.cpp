// Latency statistics shared by every engine's measure_latency (kd/engine.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "kd/engine.h"
#include "kd/error.h"
#include "kd/interrupt.h"

namespace kd {

int latency_batch(int batch, int repeats, int64_t test_n) {
  if (test_n == 0) fail("measure_latency: the test split is empty; latency is timed on test images");
  if (batch < 1 || repeats < 1)
    fail("measure_latency: need batch >= 1 and repeats >= 1, got " + std::to_string(batch) + " and " +
         std::to_string(repeats));
  return int(std::min<int64_t>(batch, test_n));
}

LatencyRecord latency_stats(int batch, std::vector<double> ms) {
  if (ms.empty()) fail("latency_stats: no timings");
  std::sort(ms.begin(), ms.end());
  LatencyRecord r;
  r.batch = batch;
  r.repeats = int(ms.size());
  r.median_ms = ms[ms.size() / 2];
  r.p90_ms = ms[std::min(ms.size() - 1, size_t(std::ceil(0.9 * double(ms.size()))) - 1)];
  r.samples_per_s = r.median_ms > 0 ? batch / (r.median_ms / 1e3) : 0;
  return r;
}

LatencyRecord time_forwards(int batch, int repeats, const std::function<void()>& forward) {
  forward();  // warm-up: caches, page faults, primitive creation, ONNX Runtime's arena
  std::vector<double> ms;
  double spent_s = 0;
  for (int r = 0;
       r < repeats && !(r > 0 && interrupted()) && !(int(ms.size()) >= kLatencyMinRepeats && spent_s > kLatencyBudgetS);
       ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    forward();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    spent_s += ms.back() / 1000;
  }
  return latency_stats(batch, ms);
}

}  // namespace kd
