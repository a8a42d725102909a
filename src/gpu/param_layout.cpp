// ParamLayout (see param_layout.h): host-only, so its tests run without a GPU.
#include "param_layout.h"

#include <algorithm>
#include <string>

#include "kd/error.h"

namespace kd::cuda {

ParamLayout::ParamLayout(const Arch& arch)
    : weight_(arch.layers.size(), 0), bias_(arch.layers.size(), 0), packed_count_(arch.param_count) {
  const auto round_up = [](int64_t n) { return (n + kParamAlignFloats - 1) / kParamAlignFloats * kParamAlignFloats; };
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const Layer& l = arch.layers[i];
    if (l.param_count() == 0) continue;
    weight_[i] = count_;
    segments_.push_back({l.param_offset, count_, l.weight_count});
    count_ = round_up(count_ + l.weight_count);
    bias_[i] = count_;
    segments_.push_back({l.param_offset + l.weight_count, count_, l.bias_count});
    count_ = round_up(count_ + l.bias_count);
  }
}

std::vector<float> ParamLayout::to_device(const std::vector<float>& packed) const {
  if (int64_t(packed.size()) != packed_count_)
    fail("ParamLayout: " + std::to_string(packed.size()) + " parameters for a model of " +
         std::to_string(packed_count_));
  std::vector<float> device(size_t(count_), 0.0f);
  for (const Segment& s : segments_) std::copy_n(packed.begin() + s.packed, s.count, device.begin() + s.device);
  return device;
}

std::vector<float> ParamLayout::to_packed(const std::vector<float>& device) const {
  if (device.empty()) return {};
  if (int64_t(device.size()) != count_)
    fail("ParamLayout: " + std::to_string(device.size()) + " device values for a layout of " + std::to_string(count_));
  std::vector<float> packed(static_cast<size_t>(packed_count_));
  for (const Segment& s : segments_) std::copy_n(device.begin() + s.device, s.count, packed.begin() + s.packed);
  return packed;
}

}  // namespace kd::cuda
