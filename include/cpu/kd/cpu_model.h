// kd/cpu_model.h: the CPU layer loop that runs an Arch with the reference or
// the fast ops (kd/cpu_ops.h), over the flat parameter buffer of kd/params.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/cpu_ops.h"
#include "kd/layer_plan.h"
#include "kd/params.h"

namespace kd {

// Runs an Arch on the CPU with `ops` (the reference ops unless given). Buffers
// are sized once for max_batch.
class CpuModel {
 public:
  CpuModel(const Arch& arch, int max_batch, std::unique_ptr<CpuOps> ops = make_reference_ops());
  CpuOps& ops() { return *ops_; }
  // Bytes of the buffers the constructor sizes by max_batch (activations,
  // masks, input, gradient scratch: LayerPlan's training buffers); the
  // parameters and gradients come on top. An upper bound where the ops fuse a
  // conv with its ReLU and max-pool.
  static int64_t activation_bytes(const Arch& arch, int max_batch);
  const Arch& arch() const { return arch_; }
  int max_batch() const { return max_batch_; }
  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  const std::vector<float>& grads() const { return grads_; }

  // x: (b, c*h*w) normalised input -> logits (b, classes), valid until the next call.
  // training: apply dropout with Philox key dropout_seed(seed, layer) and counter `step`,
  // x being rows first_row.. of the step's batch (a data-parallel shard; 0 otherwise).
  const float* forward(const float* x, int b, bool training, uint64_t seed, uint64_t step, int64_t first_row = 0);
  // The last forward's input to the last layer: (b, arch().layers.back().in.size()),
  // valid until the next forward (the hint's features, kd/hint.h).
  const float* last_layer_input() const { return last_input_; }
  // dlogits: (b, classes) for the last forward, a training one -> grads() overwritten.
  // dlast_input: (b, last layer's input size) or null, a gradient with respect
  // to last_layer_input() from outside the network (the hint), added to the
  // one flowing back from the logits.
  void backward(const float* dlogits, int b, const float* dlast_input = nullptr);

 private:
  Arch arch_;
  int max_batch_;
  std::unique_ptr<CpuOps> ops_;
  std::vector<float> params_, grads_;
  // Which ReLUs are fused, which layers are views and which keep a mask.
  LayerPlan plan_;
  // Layer i's output (b, layers[i].out_shape.size()): acts_[storage_[i]], or
  // input_ when storage_[i] is -1. A view in training (a fused ReLU, a
  // flatten) stores nothing of its own (acts_[i] stays empty) and shares the
  // buffer before it.
  float* output(size_t i);
  std::vector<std::vector<float>> acts_;
  std::vector<int> storage_;
  // Layer i is a conv that runs with the ReLU and max-pool after it as one op
  // (CpuOps::conv_relu_pool): it then has no output buffer (acts_[i] stays empty).
  std::vector<bool> pool_fused_;
  // The memory layout of layer i's output (a fused ReLU's is its conv's), chosen at
  // construction: Nchw16c for a conv output the ops compute in that layout and only
  // a conv or max-pool reads; Nchw everywhere else (kd/cpu_ops.h).
  std::vector<ActLayout> layout_;
  ActLayout input_layout(size_t i) const { return i == 0 ? ActLayout::Nchw : layout_[i - 1]; }
  std::vector<std::vector<uint8_t>> masks_;  // dropout keep masks / maxpool argmax, per layer
  std::vector<float> input_, grad_a_, grad_b_;
  int last_b_ = 0;
  bool last_training_ = false;
  const float* last_input_ = nullptr;
};

}  // namespace kd
