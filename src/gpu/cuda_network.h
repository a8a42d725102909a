// CudaNetwork: an Arch run layer by layer with the kernels of kd/ops.h, the
// GPU twin of kd::CpuModel's forward and backward (same layer order, same
// dropout keys, same gradients up to fp32 summation order).
//
// Fusions, decided once from the layer list (the first and the views are
// kd/layer_plan.h's, shared with the CPU engine):
//   conv/dense followed by relu   the ReLU runs in the conv/dense epilogue and
//                                 both layers share one output buffer;
//   relu (through flatten) into   the ReLU's backward runs as the dense dx mask
//   a dense layer                 (dx *= x > 0), its own backward is skipped;
//   flatten                       a view: NCHW is already in C, H, W order;
//   dropout in inference          a view: the identity.
// Layers before the first parameterised layer get no backward at all: no
// gradient with respect to the input images is needed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine_context.h"
#include "kd/arch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"
#include "kd/engine.h"
#include "kd/layer_plan.h"
#include "param_layout.h"

namespace kd::cuda {

class CudaNetwork {
 public:
  // Device buffers for batches of up to `capacity` samples. out[i] is layer
  // i's output (capacity, layers[i].out_shape.size()); a layer that runs as a
  // view aliases its input. mask[i] is layer i's maxpool argmax or dropout
  // keep mask (same shape), null for other layers.
  //   training: one buffer per layer (the backward pass reads them) and the
  //             two gradient buffers of the backward pass;
  //   inference: dropout is a view and the other layers alternate between
  //             two buffers, so a 10,000-image batch fits.
  struct Activations {
    bool training = false;
    int capacity = 0;
    DeviceBuffer<float> input;  // (capacity, arch.input.size()) normalised images
    std::vector<float*> out;
    std::vector<uint8_t*> mask;
    // training only, (capacity, widest layer) each: dL/dlogits on entry to
    // backward() in grad_a, then the layers' gradients alternate between them.
    DeviceBuffer<float> grad_a, grad_b;
    std::vector<DeviceBuffer<float>> owned_out;
    std::vector<DeviceBuffer<uint8_t>> owned_mask;
  };

  // What runs each conv and dense layer at one batch size: cuDNN plans
  // (algorithms searched on creation) and dense implementations, chosen for
  // training (forward and backward) or inference (forward only). Created
  // before any graph capture, since neither search can run inside one.
  struct BatchPlan {
    PlanUse use = PlanUse::Training;
    std::vector<std::unique_ptr<ConvPlan>> conv;  // per layer; null unless conv
    std::vector<DenseImpl> dense;                 // per layer; meaningful for dense
  };

  CudaNetwork(const Arch& arch, const TrainSettings& settings, EngineContext& context);

  const Arch& arch() const { return arch_; }
  // Where the parameters sit in the device buffers forward/backward read.
  const ParamLayout& layout() const { return layout_; }
  Activations training_activations(int capacity) const;
  Activations inference_activations(int capacity) const;
  // Bytes the two above allocate, without allocating them (the memory check).
  int64_t activation_bytes(int capacity, bool training) const;
  // The plan for exactly b samples, created on first use (never while
  // capturing) after the engine's stream has drained. A training plan also
  // serves inference; an inference plan is replaced when b comes to train.
  const BatchPlan& plan(int b, PlanUse use);

  // params: (layout().count()). Reads a.input (b samples) and returns the
  // logits (b, classes), which live in a. training activations apply dropout
  // keyed by dropout_seed(settings.seed, layer) with the Philox counter *step
  // (device); inference activations ignore `step` (may be null).
  const float* forward(const float* params, Activations& a, const BatchPlan& plan, int b, const uint64_t* step,
                       cudaStream_t stream) const;
  // Where forward() leaves the last layer's input in `a`: (b, last layer's
  // input size), a fixed address (the hint's features, kd/hint.h).
  const float* last_layer_input(const Activations& a) const {
    return arch_.layers.size() > 1 ? a.out[arch_.layers.size() - 2] : a.input.data();
  }
  // After forward() on the same training activations with dL/dlogits in
  // a.grad_a: overwrites grads (layout().count()) with dL/dparams (the gaps
  // between tensors are not written). dlast_input: (b, last layer's input
  // size) or null, a gradient with respect to last_layer_input() from outside
  // the network (the hint), added to the one flowing back from the logits.
  void backward(const float* params, float* grads, Activations& a, const BatchPlan& plan, int b, cudaStream_t stream,
                const float* dlast_input = nullptr) const;

 private:
  // How layer i runs; see the file comment.
  struct LayerRole {
    bool relu_in_epilogue = false;  // conv/dense: applies the ReLU that follows it
    bool dx_masked = false;         // dense: dx *= (x > 0), the backward of the ReLU that produced x
    bool backward_in_next = false;  // relu: its backward is the next dense layer's dx mask
    bool needs_dx = false;          // an earlier layer has parameters
    uint64_t dropout_key = 0;       // dropout: dropout_seed(settings.seed, i)
  };
  Activations allocate_input(int capacity, bool training) const;

  Arch arch_;
  ParamLayout layout_;
  LayerPlan layer_plan_;  // fused ReLUs, views, masks
  TrainSettings settings_;
  EngineContext& context_;
  std::vector<LayerRole> roles_;
  size_t first_param_layer_ = 0;
  std::map<int, BatchPlan> plans_;
};

}  // namespace kd::cuda
