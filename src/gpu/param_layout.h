// ParamLayout: where each parameter tensor of an Arch sits in the CUDA
// engine's flat parameter buffer (and its gradient and optimiser buffers).
//
// Same order as the packed layout of kd/model.h (layer by layer, weight then
// bias), but every tensor starts at a multiple of kParamAlignFloats floats
// (16 bytes), with zeros in the gaps. Packed, an architecture like
// "conv:3:3,..." puts conv1.bias at float 27 and every later tensor at an odd
// offset; cuDNN, cuBLAS(Lt) and the float4 paths of the custom kernels all
// receive these pointers, and 16-byte alignment is what they are fastest
// with and what is tested. Files, the CPU engine and get_params() keep the
// packed layout: the engine converts at its boundary (to_device / to_packed).
// The gaps stay exactly 0: their gradients are never written (zeroed once),
// so Adam and SGD leave them at 0.
#pragma once

#include <cstdint>
#include <vector>

#include "kd/arch.h"

namespace kd::cuda {

constexpr int64_t kParamAlignFloats = 4;  // 16 bytes

class ParamLayout {
 public:
  explicit ParamLayout(const Arch& arch);

  // Offsets into the device buffer of layer i's weight and bias (layers
  // without parameters: 0, unused).
  int64_t weight_offset(size_t layer) const { return weight_[layer]; }
  int64_t bias_offset(size_t layer) const { return bias_[layer]; }
  // Floats in the device buffer (>= arch.param_count).
  int64_t count() const { return count_; }

  // packed: (arch.param_count) -> (count()), gaps 0.
  std::vector<float> to_device(const std::vector<float>& packed) const;
  // device: (count()) -> (arch.param_count). An empty vector stays empty (SGD has no second moments).
  std::vector<float> to_packed(const std::vector<float>& device) const;

 private:
  struct Segment {
    int64_t packed, device, count;  // one tensor: its offsets in both layouts and its length
  };
  std::vector<int64_t> weight_, bias_;
  std::vector<Segment> segments_;
  int64_t packed_count_ = 0, count_ = 0;
};

}  // namespace kd::cuda
