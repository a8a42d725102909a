// The flat parameter buffer: its named views, PyTorch's initialisation and
// the dropout layers' Philox keys (kd/params.h).
#include "kd/params.h"

#include <cmath>
#include <random>

#include "kd/seed.h"

namespace kd {

std::vector<ParamTensor> param_tensors(const Arch& arch) {
  std::vector<ParamTensor> out;
  for (const Layer& l : arch.layers) {
    if (l.param_count() == 0) continue;
    const std::vector<int64_t> weight_shape = layer_info(l.kind).weight_shape(l);
    out.push_back({l.name + ".weight", weight_shape, l.param_offset, l.weight_count});
    out.push_back({l.name + ".bias", {l.out}, l.param_offset + l.weight_count, l.bias_count});
  }
  return out;
}

void init_params(const Arch& arch, uint64_t seed, float* params) {
  std::mt19937_64 rng(seed);
  for (const Layer& l : arch.layers) {
    if (l.param_count() == 0) continue;
    // PyTorch: kaiming_uniform(a=sqrt(5)) on the weight reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    // and the bias uses the same bound.
    const float bound = float(1.0 / std::sqrt(double(l.fan_in())));
    std::uniform_real_distribution<float> dist(-bound, bound);
    for (int64_t i = 0; i < l.param_count(); ++i) params[l.param_offset + i] = dist(rng);
  }
}

uint64_t dropout_seed(uint64_t run_seed, int layer_index) {
  return mix_seed(run_seed, uint64_t(layer_index));  // decorrelates the masks of different layers
}

}  // namespace kd
