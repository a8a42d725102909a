// kd/params.h: a model's parameters as one flat float buffer.
//
// Parameters of all layers live in one flat float buffer, layer by layer in
// arch order, each layer's weight then bias (PyTorch state_dict order), so one
// optimiser launch updates them all and a checkpoint is a set of views.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/arch.h"

namespace kd {

// One named view into the flat parameter buffer ("fc1.weight" [128, 9216]).
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, count = 0;
};
std::vector<ParamTensor> param_tensors(const Arch& arch);

// PyTorch's default Conv2d/Linear init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// drawn from a std::mt19937_64 seeded with `seed`, layer by layer. params: (arch.param_count)
void init_params(const Arch& arch, uint64_t seed, float* params);

// The Philox key of the dropout layer at `layer_index` of a model trained with
// `run_seed`; the CPU and GPU engines both use it so their masks agree.
uint64_t dropout_seed(uint64_t run_seed, int layer_index);

}  // namespace kd
