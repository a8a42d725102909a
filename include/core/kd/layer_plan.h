// kd/layer_plan.h: what both engines' layer loops (src/cpu/cpu_model.cpp,
// src/gpu/cuda_network.cu) decide once from the layer list: which ReLUs run
// in the conv or dense layer before them, which layers store no output of
// their own, which keep a mask, and the activation memory that takes. One
// definition, so the engines' buffers and their memory checks cannot drift
// apart. Choices only one engine makes (the CPU's fused conv-ReLU-pool and
// activation layouts, the GPU's ReLU backward as a dense dx mask) stay in its
// own loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kd/arch.h"

namespace kd {

class LayerPlan {
 public:
  explicit LayerPlan(const Arch& arch);

  // Layer i is a ReLU right after a conv or dense layer: that layer applies it
  // to its own output (no layer's backward needs the pre-ReLU values), and the
  // ReLU computes nothing in the forward pass.
  bool relu_fused(size_t i) const { return layers_[i].relu_fused; }
  // Layer i's output is its input's buffer: a fused ReLU, or a kind whose row
  // in the table says so (flatten; dropout in inference).
  bool is_view(size_t i, bool training) const;
  // Layer i keeps one byte per output element in this mode (max-pool's argmax,
  // dropout's keep mask; a view keeps none).
  bool keeps_mask(size_t i, bool training) const;
  // Bytes of the buffers sized by the batch for `batch` samples, parameters excluded:
  //   training: the input (batch, input size), every non-view layer's output
  //     and every mask (the backward pass reads them all), and two gradient
  //     buffers as wide as the widest layer or the input;
  //   inference: the input, two buffers as wide as the widest non-view layer,
  //     which the layers alternate between, and one mask scratch as wide as the
  //     widest masked layer (no backward reads the masks).
  int64_t activation_bytes(int batch, bool training) const;

 private:
  struct Entry {
    bool relu_fused;
    ViewRule view;
    bool needs_mask;
    int64_t out_size;  // per sample
  };
  int64_t input_size_;  // per sample
  std::vector<Entry> layers_;
};

}  // namespace kd
