// CudaNetwork: layer roles, activation buffers, per-batch-size plans, and the
// forward and backward passes (see cuda_network.h).
#include "cuda_network.h"

#include <algorithm>
#include <string>

#include "kd/params.h"

namespace kd::cuda {

CudaNetwork::CudaNetwork(const Arch& arch, const TrainSettings& settings, EngineContext& context)
    : arch_(arch),
      layout_(arch),
      layer_plan_(arch),
      settings_(settings),
      context_(context),
      roles_(arch.layers.size()) {
  const std::vector<Layer>& layers = arch_.layers;
  const auto has_params = [](const Layer& l) { return l.param_count() > 0; };
  first_param_layer_ = size_t(std::find_if(layers.begin(), layers.end(), has_params) - layers.begin());
  if (first_param_layer_ == layers.size())
    fail("CudaNetwork: architecture '" + arch_.text + "' has no conv or dense layer to train");
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    LayerRole& role = roles_[i];
    role.needs_dx = i > first_param_layer_;
    role.relu_in_epilogue = i + 1 < layers.size() && layer_plan_.relu_fused(i + 1);
    if (l.kind == LayerKind::Dense && role.needs_dx) {
      size_t producer = i - 1;  // i > first_param_layer_ >= 0
      while (producer > 0 && layers[producer].kind == LayerKind::Flatten) --producer;
      if (layers[producer].kind == LayerKind::Relu) {
        role.dx_masked = true;
        roles_[producer].backward_in_next = true;
      }
    }
    if (l.kind == LayerKind::Dropout) role.dropout_key = dropout_seed(settings_.seed, int(i));
    if (l.kind == LayerKind::MaxPool && l.kernel != 2)
      fail("CudaNetwork: layer '" + l.token + "': only 2x2 max pooling is implemented");
  }
}

CudaNetwork::Activations CudaNetwork::allocate_input(int capacity, bool training) const {
  if (capacity < 1) fail("CudaNetwork: batch capacity must be >= 1, got " + std::to_string(capacity));
  Activations a;
  a.training = training;
  a.capacity = capacity;
  a.input.allocate(size_t(capacity) * size_t(arch_.input.size()),
                   "input batch of " + std::to_string(capacity) + " images");
  a.out.assign(arch_.layers.size(), nullptr);
  a.mask.assign(arch_.layers.size(), nullptr);
  return a;
}

CudaNetwork::Activations CudaNetwork::training_activations(int capacity) const {
  Activations a = allocate_input(capacity, true);
  const std::string batch = " for batch " + std::to_string(capacity);
  int64_t widest = arch_.input.size();
  float* previous = a.input.data();
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const Layer& l = arch_.layers[i];
    const size_t count = size_t(capacity) * size_t(l.out_shape.size());
    const std::string layer = "layer " + std::to_string(i + 1) + " '" + l.token + "'";
    widest = std::max(widest, l.out_shape.size());
    if (layer_plan_.is_view(i, true)) {
      a.out[i] = previous;
    } else {
      a.owned_out.emplace_back(count, "training activations of " + layer + batch);
      a.out[i] = a.owned_out.back().data();
    }
    if (layer_plan_.keeps_mask(i, true)) {
      a.owned_mask.emplace_back(count, "training masks of " + layer + batch);
      a.mask[i] = a.owned_mask.back().data();
    }
    previous = a.out[i];
  }
  a.grad_a.allocate(size_t(capacity) * size_t(widest), "backward gradients (buffer A)" + batch);
  a.grad_b.allocate(size_t(capacity) * size_t(widest), "backward gradients (buffer B)" + batch);
  return a;
}

CudaNetwork::Activations CudaNetwork::inference_activations(int capacity) const {
  Activations a = allocate_input(capacity, false);
  const std::string batch = " for batch " + std::to_string(capacity);
  int64_t widest = 0, widest_mask = 0;
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const Layer& l = arch_.layers[i];
    if (!layer_plan_.is_view(i, false)) widest = std::max(widest, l.out_shape.size());
    if (layer_plan_.keeps_mask(i, false)) widest_mask = std::max(widest_mask, l.out_shape.size());
  }
  a.owned_out.emplace_back(size_t(capacity) * size_t(widest), "inference activations (buffer A)" + batch);
  a.owned_out.emplace_back(size_t(capacity) * size_t(widest), "inference activations (buffer B)" + batch);
  // Inference runs no backward: every masked layer (max-pool's argmax) can share one scratch.
  if (widest_mask > 0) a.owned_mask.emplace_back(size_t(capacity) * size_t(widest_mask), "max-pool positions" + batch);
  float* const buffer_a = a.owned_out[0].data();
  float* const buffer_b = a.owned_out[1].data();
  float* previous = a.input.data();
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    if (layer_plan_.is_view(i, false)) a.out[i] = previous;
    else a.out[i] = previous == buffer_a ? buffer_b : buffer_a;
    if (layer_plan_.keeps_mask(i, false)) a.mask[i] = a.owned_mask[0].data();
    previous = a.out[i];
  }
  return a;
}

// training_activations and inference_activations above allocate LayerPlan's buffers.
int64_t CudaNetwork::activation_bytes(int capacity, bool training) const {
  return layer_plan_.activation_bytes(capacity, training);
}

const CudaNetwork::BatchPlan& CudaNetwork::plan(int b, PlanUse use) {
  const auto known = plans_.find(b);
  if (known != plans_.end() && (known->second.use == PlanUse::Training || use == PlanUse::Inference))
    return known->second;
  // The searches time work on the GPU: what is still queued on the engine's
  // stream would run under them (and the plan replaced below may be in use).
  KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
  BatchPlan p;
  p.use = use;
  p.conv.resize(arch_.layers.size());
  p.dense.assign(arch_.layers.size(), DenseImpl::Cublas);
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const Layer& l = arch_.layers[i];
    if (l.kind == LayerKind::Conv) {
      const ref::ConvShape shape{b, l.in.c, l.in.h, l.in.w, l.out, l.kernel, l.stride, l.pad};
      p.conv[i] = std::make_unique<ConvPlan>(shape, settings_.deterministic, use);
    } else if (l.kind == LayerKind::Dense) {
      p.dense[i] = context_.dense_impl(settings_.dense_impl, settings_.deterministic, b, l.in.c, l.out,
                                       roles_[i].relu_in_epilogue, use);
    }
  }
  return plans_[b] = std::move(p);
}

const float* CudaNetwork::forward(const float* params, Activations& a, const BatchPlan& plan, int b,
                                  const uint64_t* step, cudaStream_t stream) const {
  if (b < 1 || b > a.capacity)
    fail("CudaNetwork::forward: batch " + std::to_string(b) + " outside [1, " + std::to_string(a.capacity) + "]");
  if (a.training && step == nullptr) fail("CudaNetwork::forward: a training pass needs the device step counter");
  const float* in = a.input.data();
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const Layer& l = arch_.layers[i];
    const LayerRole& role = roles_[i];
    float* out = a.out[i];
    const float* w = params + layout_.weight_offset(i);
    const float* bias = params + layout_.bias_offset(i);
    const int64_t n_out = int64_t(b) * l.out_shape.size();
    if (!layer_plan_.is_view(i, a.training)) {
      switch (l.kind) {
        case LayerKind::Conv: plan.conv[i]->forward(in, w, bias, out, role.relu_in_epilogue, stream); break;
        case LayerKind::Dense:
          dense_forward(context_.dense(), plan.dense[i], in, w, bias, out, b, l.in.c, l.out, role.relu_in_epilogue,
                        stream);
          break;
        case LayerKind::Relu: relu_forward(in, out, n_out, stream); break;
        case LayerKind::MaxPool: maxpool2x2_forward(in, out, a.mask[i], b, l.in.c, l.in.h, l.in.w, stream); break;
        case LayerKind::Dropout:
          dropout_forward(in, out, a.mask[i], n_out, l.drop, role.dropout_key, step, stream);
          break;
        case LayerKind::Flatten:  // always a view
          break;
      }
    }
    in = out;
  }
  return in;
}

void CudaNetwork::backward(const float* params, float* grads, Activations& a, const BatchPlan& plan, int b,
                           cudaStream_t stream, const float* dlast_input) const {
  if (!a.training) fail("CudaNetwork::backward: needs the activations of a training forward pass");
  float* dy = a.grad_a.data();
  for (size_t i = arch_.layers.size(); i-- > first_param_layer_;) {
    const Layer& l = arch_.layers[i];
    const LayerRole& role = roles_[i];
    if (l.kind == LayerKind::Flatten || (l.kind == LayerKind::Relu && role.backward_in_next)) continue;
    const float* x = i == 0 ? a.input.data() : a.out[i - 1];
    float* dx = dy == a.grad_a.data() ? a.grad_b.data() : a.grad_a.data();
    const int64_t n_in = int64_t(b) * l.in.size();
    const float* w = params + layout_.weight_offset(i);
    float* dw = grads + layout_.weight_offset(i);
    float* db = grads + layout_.bias_offset(i);
    switch (l.kind) {
      case LayerKind::Conv:
        plan.conv[i]->backward_filter(x, dy, dw, db, stream);
        if (role.needs_dx) plan.conv[i]->backward_data(dy, w, dx, stream);
        break;
      case LayerKind::Dense:
        dense_backward(context_.dense(), plan.dense[i], x, w, dy, role.needs_dx ? dx : nullptr, role.dx_masked, dw, db,
                       b, l.in.c, l.out, stream);
        break;
      case LayerKind::Relu: relu_backward(a.out[i], dy, dx, n_in, stream); break;
      case LayerKind::MaxPool: maxpool2x2_backward(dy, a.mask[i], dx, b, l.in.c, l.in.h, l.in.w, stream); break;
      case LayerKind::Dropout: dropout_backward(dy, a.mask[i], dx, n_in, l.drop, stream); break;
      case LayerKind::Flatten:  // skipped above
        break;
    }
    // A masked dx already went through the ReLU that produced x: the added gradient passes it too.
    if (dlast_input != nullptr && i + 1 == arch_.layers.size() && role.needs_dx)
      hint_add_gradient(dx, dlast_input, role.dx_masked ? x : nullptr, n_in, stream);
    dy = dx;
  }
}

}  // namespace kd::cuda
