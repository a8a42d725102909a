// Latency statistics shared by every engine's measure_latency (kd/engine.h).
#include <algorithm>
#include <cmath>
#include <string>

#include "kd/engine.h"
#include "kd/error.h"

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

}  // namespace kd
