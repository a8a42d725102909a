// Adam over one flat parameter buffer in one launch (kernels/optim.cu, what the
// trainer runs) against the same kernel launched once per parameter tensor (what
// a per-tensor optimiser loop does), at the teacher's and the student's layouts.
//
// Bytes that must move per parameter: read p, g, m, v and write p, m, v, 7
// floats = 28 bytes; "GB/s" counts those, "of_copy" divides by the measured
// device-to-device copy bandwidth (the practical ceiling). Inputs rotate across
// enough copies that each launch finds its data in device memory, not in L2.
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;

// Parameter tensor sizes in state_dict order (SPEC section 2).
const std::vector<int64_t> kTeacherTensors = {32 * 1 * 3 * 3, 32, 64 * 32 * 3 * 3, 64, 128 * 9216, 128, 10 * 128, 10};
const std::vector<int64_t> kStudentTensors = {256 * 784, 256, 128 * 256, 128, 10 * 128, 10};

constexpr double kBytesPerParameter = 7 * sizeof(float);

void BM_adam(benchmark::State& state, const std::vector<int64_t>& tensors, bool fused) {
  const int64_t n = std::accumulate(tensors.begin(), tensors.end(), int64_t(0));
  SetLayout layout;
  const size_t p_at = layout.add<float>(n), g_at = layout.add<float>(n), m_at = layout.add<float>(n),
               v_at = layout.add<float>(n);
  RotatingPool pool(layout.bytes(), "Adam benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, p_at), n, -0.1f, 0.1f, 4 * set + 0);
    kd::bench::fill_uniform(pool.get<float>(set, g_at), n, -0.1f, 0.1f, 4 * set + 1);
    kd::bench::fill_uniform(pool.get<float>(set, m_at), n, -0.01f, 0.01f, 4 * set + 2);
    kd::bench::fill_uniform(pool.get<float>(set, v_at), n, 1e-6f, 1e-4f, 4 * set + 3);
  }
  kd::cuda::DeviceBuffer<uint64_t> step(1, "Adam benchmark step");
  step.upload(std::vector<uint64_t>{100});
  const kd::ref::AdamParams params;  // the trainer's defaults

  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    float* p = pool.get<float>(i, p_at);
    const float* g = pool.get<float>(i, g_at);
    float* m = pool.get<float>(i, m_at);
    float* v = pool.get<float>(i, v_at);
    if (fused) {
      kd::cuda::adam_step(p, g, m, v, n, params, kd::LrSchedule{}, step.data(), nullptr);
      return;
    }
    int64_t offset = 0;
    for (const int64_t size : tensors) {
      kd::cuda::adam_step(p + offset, g + offset, m + offset, v + offset, size, params, kd::LrSchedule{}, step.data(),
                          nullptr);
      offset += size;
    }
  });
  state.counters["params"] = double(n);
  state.counters["launches"] = fused ? 1.0 : double(tensors.size());
  kd::bench::set_bandwidth_counters(state, kBytesPerParameter * double(n), timing);
}

BENCHMARK_CAPTURE(BM_adam, teacher_fused, kTeacherTensors, true)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_adam, teacher_per_tensor, kTeacherTensors, false)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_adam, student_fused, kStudentTensors, true)->Apply(kd::bench::manual_time);
BENCHMARK_CAPTURE(BM_adam, student_per_tensor, kStudentTensors, false)->Apply(kd::bench::manual_time);

}  // namespace

KD_BENCH_MAIN()
