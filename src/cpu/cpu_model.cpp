// CpuModel: an Arch run layer by layer with its CpuOps (reference or fast).
// Each layer reads the previous layer's output buffer and writes its own, so
// the backward pass has every input it needs without recomputation. A ReLU
// that directly follows a conv or dense layer is applied by that layer in its
// own output buffer (fused: one pass over the activations fewer), and the
// ReLU layer shares the buffer: no layer's backward needs the pre-ReLU values.
// Flatten shares its input's buffer too ((C, H, W) is already contiguous in
// flatten order), and inference skips dropout; neither copies anything
// (these fusions and views are kd/layer_plan.h's, shared with the GPU engine).
// A conv output that only a conv or max-pool reads stays in the layout the
// ops compute convolutions in (Nchw16c for oneDNN), so no activation is
// reordered between layers; the max-pool writes plain NCHW for what follows.
// The backward pass moves a ReLU's backward that feeds a max-pool past the
// pool: max-pool(ReLU(z)) = ReLU(max-pool(z)), so masking the pooled gradient
// by the pooled output > 0 gives the same dz, bit for bit, on a quarter of
// the elements.
// Every kind's arithmetic is one case in forward's switch and one in
// backward's: a CpuOps op where the fast ops have their own version, else the
// kd::ref op, called directly (kd/cpu_ops.h).
#include "kd/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "kd/error.h"
#include "kd/reference.h"

namespace kd {

float* CpuModel::output(size_t i) { return storage_[i] < 0 ? input_.data() : acts_[size_t(storage_[i])].data(); }

namespace {
// Layer i (a conv) hands its output, through a fused ReLU if any, only to a conv or a max-pool.
bool feeds_conv_or_pool(const Arch& arch, const LayerPlan& plan, size_t i) {
  size_t next = i + 1;
  if (next < arch.layers.size() && plan.relu_fused(next)) ++next;
  if (next >= arch.layers.size()) return false;
  const LayerKind k = arch.layers[next].kind;
  return k == LayerKind::Conv || k == LayerKind::MaxPool;
}
// Layer i is a max-pool whose input is a ReLU's output (all >= 0).
bool pools_a_relu(const Arch& arch, size_t i) {
  return arch.layers[i].kind == LayerKind::MaxPool && i > 0 && arch.layers[i - 1].kind == LayerKind::Relu;
}

// Layer i is a conv whose output goes through a fused ReLU into a max-pool.
bool conv_relu_pool_chain(const Arch& arch, const LayerPlan& plan, size_t i) {
  return arch.layers[i].kind == LayerKind::Conv && i + 2 < arch.layers.size() && plan.relu_fused(i + 1) &&
         pools_a_relu(arch, i + 2);
}

ref::ConvShape conv_shape(const Layer& l, int b) {
  return ref::conv_shape(b, l.in.c, l.in.h, l.in.w, l.out, l.kernel, l.stride, l.pad);
}
}  // namespace

CpuModel::CpuModel(const Arch& arch, int max_batch, std::unique_ptr<CpuOps> ops)
    : arch_(arch),
      max_batch_(max_batch),
      ops_(std::move(ops)),
      params_(arch.param_count),
      grads_(arch.param_count),
      plan_(arch) {
  if (max_batch < 1) fail("CpuModel: max_batch must be >= 1");
  int64_t widest = arch.input.size();
  acts_.resize(arch.layers.size());
  masks_.resize(arch.layers.size());
  pool_fused_.assign(arch.layers.size(), false);
  storage_.assign(arch.layers.size(), 0);
  layout_.assign(arch.layers.size(), ActLayout::Nchw);
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const Layer& l = arch.layers[i];
    if (l.kind == LayerKind::Conv && feeds_conv_or_pool(arch, plan_, i))
      layout_[i] = ops_->conv_output_layout(conv_shape(l, max_batch));
    if (plan_.relu_fused(i)) layout_[i] = layout_[i - 1];  // the conv's buffer
    pool_fused_[i] = conv_relu_pool_chain(arch, plan_, i) &&
                     ops_->conv_relu_pool(conv_shape(l, max_batch), input_layout(i)) != nullptr;
    const bool shares = plan_.is_view(i, true);
    storage_[i] = !shares ? int(i) : i == 0 ? -1 : storage_[i - 1];
    if (!shares && !pool_fused_[i]) acts_[i].resize(size_t(max_batch) * l.out_shape.size());
    if (plan_.keeps_mask(i, true)) masks_[i].resize(size_t(max_batch) * l.out_shape.size());
    widest = std::max(widest, l.out_shape.size());
  }
  input_.resize(size_t(max_batch) * arch.input.size());
  grad_a_.resize(size_t(max_batch) * widest);
  grad_b_.resize(size_t(max_batch) * widest);
}

// The constructor above sizes LayerPlan's training buffers, less a fused conv's output buffer.
int64_t CpuModel::activation_bytes(const Arch& arch, int max_batch) {
  return LayerPlan(arch).activation_bytes(max_batch, true);
}

const float* CpuModel::forward(const float* x, int b, bool training, uint64_t seed, uint64_t step, int64_t first_row) {
  if (b < 1 || b > max_batch_)
    fail("CpuModel::forward: batch " + std::to_string(b) + " outside [1, " + std::to_string(max_batch_) + "]");
  last_b_ = b;
  last_training_ = training;
  // Training keeps its own copy of x for backward. Inference reads x in place: at batch 1,000 the
  // student's 3.1 MB copy took 0.3 of its 1.9 ms forward (bench/RESULTS.md). A view of the input that
  // inference writes (a ReLU first) then writes input_, which output() names for it.
  const float* in = x;
  if (training) {
    std::copy(x, x + size_t(b) * arch_.input.size(), input_.begin());
    in = input_.data();
  }
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const Layer& l = arch_.layers[i];
    float* out = output(i);  // the same buffer as `in` for a fused ReLU and for flatten
    const bool relu_next = i + 1 < arch_.layers.size() && plan_.relu_fused(i + 1);
    const int64_t n_out = int64_t(b) * l.out_shape.size();
    const float* w = params_.data() + l.param_offset;
    if (i + 1 == arch_.layers.size()) last_input_ = in;
    switch (l.kind) {
      case LayerKind::Conv:
        if (pool_fused_[i]) {  // this conv, its ReLU and the max-pool in one op, writing the pool's output
          out = output(i + 2);
          ops_->conv_relu_pool(conv_shape(l, b), input_layout(i))
              ->forward(in, w, w + l.weight_count, out, masks_[i + 2].data());
          i += 2;
          break;
        }
        ops_->conv_forward(in, w, w + l.weight_count, out, conv_shape(l, b), relu_next, input_layout(i), layout_[i]);
        break;
      case LayerKind::Dense: ops_->dense_forward(in, w, w + l.weight_count, out, b, l.in.c, l.out, relu_next); break;
      case LayerKind::Relu:
        if (!plan_.relu_fused(i)) ops_->relu_forward(in, out, n_out);  // fused: applied by the previous layer
        break;
      case LayerKind::MaxPool:
        ops_->maxpool2x2_forward(in, out, masks_[i].data(), b, l.in.c, l.in.h, l.in.w, input_layout(i));
        break;
      case LayerKind::Dropout:
        if (training)
          ops_->dropout_forward(in, out, masks_[i].data(), n_out, l.drop, dropout_seed(seed, int(i)), step,
                                uint64_t(first_row * l.out_shape.size()));
        else out = const_cast<float*>(in);  // identity in inference; backward never follows an inference forward
        break;
      case LayerKind::Flatten:
        out = const_cast<float*>(in);  // not output(i): in inference `in` may be a skipped dropout's input
        break;
    }
    in = out;
  }
  return in;
}

void CpuModel::backward(const float* dlogits, int b, const float* dlast_input) {
  if (b != last_b_)
    fail("CpuModel::backward: batch " + std::to_string(b) + " != last forward's " + std::to_string(last_b_));
  if (!last_training_)
    fail(
        "CpuModel::backward: the last forward was an inference one (training = false), which keeps no copy of "
        "its input; backward needs a training forward");
  // grads_ needs no clearing: every conv and dense backward overwrites its dw and db.
  float* dy = grad_a_.data();
  float* dx = grad_b_.data();
  const int64_t n_logits = int64_t(b) * arch_.output.size();
  std::copy(dlogits, dlogits + n_logits, dy);
  bool relu_done = false;  // the ReLU before a max-pool had its backward applied at the pool
  for (size_t i = arch_.layers.size(); i-- > 0;) {
    const Layer& l = arch_.layers[i];
    const float* x = i == 0 ? input_.data() : output(i - 1);
    const int64_t n_in = int64_t(b) * l.in.size();
    const bool need_dx = i > 0;  // no gradient w.r.t. the input images
    float* w = params_.data() + l.param_offset;
    float* dw = grads_.data() + l.param_offset;
    switch (l.kind) {
      case LayerKind::Conv:
        ops_->conv_backward(x, w, dy, need_dx ? dx : nullptr, dw, dw + l.weight_count, conv_shape(l, b),
                            input_layout(i), layout_[i]);
        break;
      case LayerKind::Dense:
        ops_->dense_backward(x, w, dy, need_dx ? dx : nullptr, dw, dw + l.weight_count, b, l.in.c, l.out);
        break;
      case LayerKind::Relu:
        if (relu_done) {
          relu_done = false;
          continue;  // dy already is the gradient w.r.t. its input
        }
        ops_->relu_backward(output(i), dy, dx, n_in);
        break;
      case LayerKind::MaxPool:
        if (i >= 2 && pool_fused_[i - 2]) {  // the pool, the ReLU and the conv before them in one op
          const size_t c = i - 2;
          const Layer& conv = arch_.layers[c];
          float* cdw = grads_.data() + conv.param_offset;
          ops_->conv_relu_pool(conv_shape(conv, b), input_layout(c))
              ->backward(c == 0 ? input_.data() : output(c - 1), params_.data() + conv.param_offset, dy, output(i),
                         masks_[i].data(), c > 0 ? dx : nullptr, cdw, cdw + conv.weight_count);
          i = c;
          break;
        }
        if (pools_a_relu(arch_, i)) {
          ops_->relu_backward(output(i), dy, dy, int64_t(b) * l.out_shape.size());  // in place
          relu_done = true;
        }
        ops_->maxpool2x2_backward(dy, masks_[i].data(), dx, b, l.in.c, l.in.h, l.in.w, input_layout(i));
        break;
      case LayerKind::Dropout:
        // Backward only follows a training forward, which drew the mask.
        ops_->dropout_backward(dy, masks_[i].data(), dx, n_in, l.drop);
        break;
      case LayerKind::Flatten: continue;  // the gradient passes through unchanged, in place
    }
    if (dlast_input != nullptr && i + 1 == arch_.layers.size() && need_dx)
      for (int64_t k = 0; k < n_in; ++k) dx[k] += dlast_input[k];
    std::swap(dx, dy);
  }
}

}  // namespace kd
