// kd/reference.h: the CPU reference for every op the GPU runs.
//
// Plain, obviously-correct loops: float32 storage, double accumulation for
// every sum longer than a handful of terms. These are the oracle the CUDA
// kernels are tested against and the engine of `kdtrain --device cpu`.
// All tensors are contiguous row-major; shapes are stated per function.
// Outputs are fully overwritten (never accumulated into) unless stated.
#pragma once

#include <cstdint>

#include "kd/hint.h"
#include "kd/normalize.h"

namespace kd::ref {

// ---------------------------------------------------------------- conv (conv.cpp)
struct ConvShape {
  int n = 0, in_c = 0, h = 0, w = 0;  // input (n, in_c, h, w)
  int out_c = 0, k = 0;               // weight (out_c, in_c, k, k)
  int stride = 1, pad = 0;
  int out_h() const { return (h + 2 * pad - k) / stride + 1; }
  int out_w() const { return (w + 2 * pad - k) / stride + 1; }
};
inline ConvShape conv_shape(int n, int in_c, int h, int w, int out_c, int k, int stride = 1, int pad = 0) {
  ConvShape s;
  s.n = n;
  s.in_c = in_c;
  s.h = h;
  s.w = w;
  s.out_c = out_c;
  s.k = k;
  s.stride = stride;
  s.pad = pad;
  return s;
}
// x: (n, in_c, h, w), w: (out_c, in_c, k, k), b: (out_c) or null -> y: (n, out_c, out_h, out_w)
void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s);
// dy: (n, out_c, out_h, out_w), w -> dx: (n, in_c, h, w)
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s);
// x, dy -> dw: (out_c, in_c, k, k), db: (out_c) (db may be null)
void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s);

// ---------------------------------------------------------------- relu (dense.cpp)
// x, y: (n). y = max(x, 0); y may alias x.
void relu_forward(const float* x, float* y, int64_t n);
// y: the forward output, dy -> dx: (n). dx = dy where y > 0 else 0; dx may alias dy.
void relu_backward(const float* y, const float* dy, float* dx, int64_t n);

// ---------------------------------------------------------------- dense (dense.cpp)
// x: (b, in), w: (out, in) [nn.Linear layout], bias: (out) -> y: (b, out);
// y = x . w^T + bias, then max(., 0) when relu.
void dense_forward(const float* x, const float* w, const float* bias, float* y, int b, int in, int out, bool relu);
// dy: (b, out) (already multiplied by the ReLU mask if any), x: (b, in), w: (out, in)
// -> dx: (b, in) (skipped when null), dw: (out, in), db: (out)
void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int b, int in,
                    int out);

// ---------------------------------------------------------------- pool (pool.cpp)
// 2x2 max pooling, stride 2, floor mode. x: (n, c, h, w) -> y: (n, c, h/2, w/2),
// argmax: (n, c, h/2, w/2) index in [0, 4) of the winning input within its window
// (row-major in the window; first max wins on ties).
void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w);
// dy, argmax: (n, c, h/2, w/2) -> dx: (n, c, h, w) (zero except at winners)
void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w);

// ---------------------------------------------------------------- dropout (dropout.cpp)
// Inverted dropout: y = x * keep / (1 - p), keep = dropout_keep(seed, step, first + i, p)
// from kd/philox.h. x, y, mask: (n); mask[i] = 1 when kept. p = 0 copies x.
// `first`: where x starts in the step's whole tensor, so that a data-parallel
// shard (rows from `first / row size` on) draws the mask of those rows.
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t step,
                     uint64_t first = 0);
// dy, mask -> dx: (n); dx = dy * mask / (1 - p).
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p);

// ---------------------------------------------------------------- softmax_kl (softmax_kl.cpp)
// The distillation loss of SPEC section 2 and its gradient, for one batch:
//   L = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
// KL summed over classes, L averaged over the batch ("batchmean").
//   dL/ds = [alpha*T*(softmax(s/T) - softmax(t/T)) + (1-alpha)*(softmax(s) - onehot(y))] / b
// s: (b, c) student logits; t: (b, c) teacher logits (may be null when alpha == 0);
// labels: (b) in [0, c). Writes grad: (b, c) and row_loss: (b) (per-row L before /b;
// either may be null). Stable for logits of +-1e4 (log-sum-exp with max subtracted).
struct LossSums {
  double loss = 0;  // mean over the batch of the full loss
  double kl = 0;    // mean over the batch of KL(softmax(t/T) || softmax(s/T)) (unscaled)
  double ce = 0;    // mean over the batch of CE(s, y) at T = 1 (mixed, under a HardTargetMix)
};
// Mixup's hard targets (kd/augment.h): with partner_labels (b) set, row i's
// CE(s, y) above becomes
//   lambda * CE(s, labels[i]) + partner_weight * CE(s, partner_labels[i]),
// the cross-entropy against the mixed one-hot target q, and its gradient
// softmax(s) - q, q = lambda * onehot(labels[i]) + partner_weight * onehot(partner_labels[i]).
// The default is plain CE.
struct HardTargetMix {
  const int32_t* partner_labels = nullptr;  // (b) in [0, c), or null: no mixing
  float lambda = 1.0f, partner_weight = 0.0f;
};
LossSums softmax_kl(const float* s, const float* t, const int32_t* labels, float* grad, float* row_loss, int b, int c,
                    float temperature, float alpha, const HardTargetMix& mix = {});

// ---------------------------------------------------------------- hint (hint.cpp)
// The hint distance of kd/hint.h and its gradient, for one batch, in double:
//   cosine: r_i = 1 - <m_i, t_i> / (max(|m_i|, eps) * max(|t_i|, eps)), eps = 1e-8
//           (torch.nn.functional.cosine_similarity's clamp);
//   mse:    r_i = (1/d) sum_j (m_ij - t_ij)^2, whose batch mean is nn.MSELoss's mean.
// m: (b, d) mapped student features, t: (b, d) teacher features. Returns the
// batch mean of r_i (unweighted). Writes grad: (b, d) = weight * d(mean)/dm
// and row_loss: (b) = r_i; either may be null. kind must not be Off.
double hint_loss(const float* m, const float* t, float* grad, float* row_loss, int b, int d, HintKind kind,
                 float weight);
// The cosine distance's norm clamp.
constexpr double kHintCosineEps = 1e-8;

// ---------------------------------------------------------------- optim (optim.cpp)
// PyTorch Adam (no weight decay unless given):
//   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)
// Weight decay wd, as torch.optim.Adam's `decoupled_weight_decay` flag chooses:
//   false (torch.optim.Adam):  L2, g = g + wd * p before the update above;
//   true  (torch.optim.AdamW): decoupled, p = p * (1 - lr * wd) before the update
//                              above, which then uses g as given (Loshchilov & Hutter 2019).
// wd = 0 (the default) leaves either path bit-identical to plain Adam.
// p, g, m, v: (n); step is 1-based (the count including this update).
struct AdamParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled_weight_decay = false;
};
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a, int64_t step);
// PyTorch SGD with momentum (dampening 0, no nesterov):
//   buf = g (first step) or momentum * buf + g; p -= lr * buf
struct SgdParams {
  float lr = 1e-2f, momentum = 0.9f, weight_decay = 0.0f;
};
void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const SgdParams& a, int64_t step);

// ---------------------------------------------------------------- batch (batch.cpp)
// images: (N, norm.c, plane) u8, idx: (b) rows to take -> out: (b, norm.c, plane)
// float, out = (px / 255 - norm.mean[ch]) / norm.std[ch] for channel ch.
void gather_normalize(const uint8_t* images, const int32_t* idx, float* out, int b, int64_t plane,
                      const Normalization& norm);

// ---------------------------------------------------------------- metrics (metrics.cpp)
// x: (b, c) -> out: (b) index of the row maximum (first on ties).
void argmax_rows(const float* x, int32_t* out, int b, int c);
// Number of rows whose argmax equals the label. x: (b, c), labels: (b).
int64_t count_correct(const float* x, const int32_t* labels, int b, int c);

}  // namespace kd::ref
