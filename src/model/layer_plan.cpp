// LayerPlan: the fusion and buffer decisions both engines share (kd/layer_plan.h).
#include "kd/layer_plan.h"

#include <algorithm>

namespace kd {

LayerPlan::LayerPlan(const Arch& arch) : input_size_(arch.input.size()) {
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const Layer& l = arch.layers[i];
    const LayerKindInfo& info = layer_info(l.kind);
    const bool after_conv_or_dense =
        i > 0 && (arch.layers[i - 1].kind == LayerKind::Conv || arch.layers[i - 1].kind == LayerKind::Dense);
    layers_.push_back(
        {l.kind == LayerKind::Relu && after_conv_or_dense, info.view, info.needs_mask, l.out_shape.size()});
  }
}

bool LayerPlan::is_view(size_t i, bool training) const {
  const Entry& e = layers_[i];
  return e.relu_fused || e.view == ViewRule::Always || (e.view == ViewRule::InInference && !training);
}

bool LayerPlan::keeps_mask(size_t i, bool training) const { return layers_[i].needs_mask && !is_view(i, training); }

int64_t LayerPlan::activation_bytes(int batch, bool training) const {
  int64_t floats = input_size_, mask_bytes = 0;
  if (training) {
    int64_t widest = input_size_;
    for (size_t i = 0; i < layers_.size(); ++i) {
      widest = std::max(widest, layers_[i].out_size);
      if (!is_view(i, true)) floats += layers_[i].out_size;
      if (keeps_mask(i, true)) mask_bytes += layers_[i].out_size;
    }
    floats += 2 * widest;  // the gradient buffers
  } else {
    int64_t widest = 0;
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (!is_view(i, false)) widest = std::max(widest, layers_[i].out_size);
      if (keeps_mask(i, false)) mask_bytes = std::max(mask_bytes, layers_[i].out_size);
    }
    floats += 2 * widest;  // the two alternating buffers
  }
  return int64_t(batch) * (floats * int64_t(sizeof(float)) + mask_bytes);
}

}  // namespace kd
