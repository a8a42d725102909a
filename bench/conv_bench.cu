// The teacher's two convolutions through kernels/conv.cu (cuDNN, fp32 FMA
// math): forward with bias and ReLU, backward data, backward filter (with the
// bias gradient), at the training batch (64) and a large batch (1024), with the
// algorithms chosen by timing and under --deterministic. The label names the
// algorithms the plan chose.
//
// "TFLOP/s" counts 2 * n * out_c * oh * ow * in_c * k * k flops, the same for
// all three directions (the bias, ReLU and bias-gradient work is ignored).
// Each launch uses its own rotation set of inputs so L2 does not flatter the
// small shapes.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::bench::RotatingPool;
using kd::bench::SetLayout;
using kd::ref::ConvShape;

enum class Direction { Forward, BackwardData, BackwardFilter };

const char* direction_name(Direction d) {
  switch (d) {
    case Direction::Forward: return "forward_bias_relu";
    case Direction::BackwardData: return "backward_data";
    case Direction::BackwardFilter: return "backward_filter_bias";
  }
  return "?";
}

struct NamedShape {
  const char* name;
  ConvShape shape;
};

ConvShape teacher_conv(int batch, int in_c, int size, int out_c) {
  ConvShape s;
  s.n = batch;
  s.in_c = in_c;
  s.h = s.w = size;
  s.out_c = out_c;
  s.k = 3;
  return s;
}

// One plan per (shape, mode), shared by its three directions: the algorithm
// search runs once, as in the trainer, not once per benchmark. main() empties
// the cache before returning, so no cuDNN or CUDA object outlives the runtime.
std::map<std::tuple<int, int, int, int, bool>, std::unique_ptr<kd::cuda::ConvPlan>>& plan_cache() {
  static std::map<std::tuple<int, int, int, int, bool>, std::unique_ptr<kd::cuda::ConvPlan>> plans;
  return plans;
}

kd::cuda::ConvPlan& plan_for(const ConvShape& s, bool deterministic) {
  std::unique_ptr<kd::cuda::ConvPlan>& plan = plan_cache()[{s.n, s.in_c, s.h, s.out_c, deterministic}];
  if (!plan) plan = std::make_unique<kd::cuda::ConvPlan>(s, deterministic);
  return *plan;
}

void BM_conv(benchmark::State& state, ConvShape s, Direction direction, bool deterministic) {
  kd::cuda::ConvPlan& plan = plan_for(s, deterministic);
  const size_t x_count = size_t(s.n) * s.in_c * s.h * s.w;
  const size_t y_count = size_t(s.n) * s.out_c * s.out_h() * s.out_w();
  const size_t w_count = size_t(s.out_c) * s.in_c * s.k * s.k;
  SetLayout layout;
  const size_t x_at = layout.add<float>(x_count), w_at = layout.add<float>(w_count),
               bias_at = layout.add<float>(size_t(s.out_c)), y_at = layout.add<float>(y_count),
               dy_at = layout.add<float>(y_count), dx_at = layout.add<float>(x_count),
               dw_at = layout.add<float>(w_count), db_at = layout.add<float>(size_t(s.out_c));
  RotatingPool pool(layout.bytes(), "convolution benchmark buffers");
  for (int set = 0; set < pool.sets(); ++set) {
    kd::bench::fill_uniform(pool.get<float>(set, x_at), x_count, -1.0f, 1.0f, 4 * set + 0);
    kd::bench::fill_uniform(pool.get<float>(set, w_at), w_count, -0.3f, 0.3f, 4 * set + 1);
    kd::bench::fill_uniform(pool.get<float>(set, bias_at), size_t(s.out_c), -0.3f, 0.3f, 4 * set + 2);
    kd::bench::fill_uniform(pool.get<float>(set, dy_at), y_count, -1e-3f, 1e-3f, 4 * set + 3);
  }

  const kd::bench::Timing timing = kd::bench::time_launches(state, nullptr, [&](int64_t i) {
    const float* x = pool.get<float>(i, x_at);
    const float* w = pool.get<float>(i, w_at);
    const float* dy = pool.get<float>(i, dy_at);
    switch (direction) {
      case Direction::Forward:
        plan.forward(x, w, pool.get<float>(i, bias_at), pool.get<float>(i, y_at), /*relu=*/true, nullptr);
        break;
      case Direction::BackwardData: plan.backward_data(dy, w, pool.get<float>(i, dx_at), nullptr); break;
      case Direction::BackwardFilter:
        plan.backward_filter(x, dy, pool.get<float>(i, dw_at), pool.get<float>(i, db_at), nullptr);
        break;
    }
  });
  const double flops = 2.0 * double(y_count) * double(s.in_c) * s.k * s.k;
  state.counters["TFLOP/s"] = flops / timing.median_s / 1e12;
  state.SetLabel(plan.describe());
}

void register_benchmarks() {
  std::vector<NamedShape> shapes;
  for (const int batch : {64, 1024}) {
    shapes.push_back({"conv1_1x28x28_to_32", teacher_conv(batch, 1, 28, 32)});
    shapes.push_back({"conv2_32x26x26_to_64", teacher_conv(batch, 32, 26, 64)});
  }
  for (const NamedShape& named : shapes) {
    for (const Direction direction : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter}) {
      for (const bool deterministic : {false, true}) {
        const std::string name = std::string("conv/") + named.name + "/b" + std::to_string(named.shape.n) + "/" +
                                 direction_name(direction) + (deterministic ? "/deterministic" : "/timed");
        benchmark::RegisterBenchmark(name.c_str(), BM_conv, named.shape, direction, deterministic)
            ->Apply(kd::bench::manual_time);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int status = kd::bench::bench_main(argc, argv, register_benchmarks);
  plan_cache().clear();
  return status;
}
