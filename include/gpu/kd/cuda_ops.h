// kd/ops.h: the CUDA kernels of kdtrain (kernels/*.cu), one section per family.
//
// Every pointer is a device pointer unless named host_*; every function only
// enqueues work on `stream` (no host synchronisation) and checks its launch.
// Shapes and layouts match the CPU reference in kd/reference.h, which is the
// oracle each kernel is tested against (tests/<family>_gpu_test.cpp).
// Counters that change every step (step for Adam and dropout) are read from
// device memory so a captured CUDA graph can be replayed without recapture.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kd/augment.h"
#include "kd/lr_schedule.h"
#include "kd/reference.h"

namespace kd::cuda {

// ---------------------------------------------------------------- softmax_kl.cu
// Fused distillation loss forward + backward (SPEC section 2), one pass per row.
struct SoftmaxKlArgs {
  const float* s = nullptr;         // (b, c) student logits
  const float* t = nullptr;         // teacher logits: (b, c), or (N, c) when t_rows is set; may be null when alpha == 0
  const int32_t* t_rows = nullptr;  // (b) or null: row i uses t[t_rows[i]] (soft targets read by sample index)
  const int32_t* labels = nullptr;  // (b) in [0, c)
  float* grad = nullptr;            // (b, c) dL/ds, already divided by b
  float* row_loss = nullptr;        // (b) per-row loss before the /b mean
  float* row_kl = nullptr;          // (b) or null: per-row KL(softmax(t/T) || softmax(s/T))
  // Mixup's hard targets (ref::HardTargetMix), both set or both null: row i's
  // second label, and the draw whose lambda / partner_weight weigh the two,
  // read at run time (device (1)) so a captured step takes each step's draw.
  const int32_t* partner_labels = nullptr;  // (b) in [0, c)
  const MixupDraw* mix = nullptr;
  int b = 0, c = 0;
  float temperature = 1.0f, alpha = 0.0f;
};
// Chooses the small-class path (c <= 32, several rows per warp) or the
// large-class path (block per row, online max/log-sum-exp, float4 loads).
void softmax_kl(const SoftmaxKlArgs& args, cudaStream_t stream);
// Deterministic mean of x: (n) into out: (1), fixed-order tree in one block (no float atomics).
void mean_reduce(const float* x, int n, float* out, cudaStream_t stream);

// What a per-shape choice (conv algorithms, dense implementation) is made
// for: Training needs forward and backward; Inference (evaluation, soft
// targets and latency batch sizes, which never train) only the forward pass.
enum class PlanUse { Training, Inference };

// ---------------------------------------------------------------- dense.cu
enum class DenseImpl { Custom, Cublas };
const char* dense_impl_name(DenseImpl impl);

// Owns the cuBLAS / cuBLASLt handles and workspace used by the cuBLAS path.
class DenseContext {
 public:
  DenseContext();
  ~DenseContext();
  DenseContext(const DenseContext&) = delete;
  DenseContext& operator=(const DenseContext&) = delete;
  struct State;
  State& state() { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

// y = act(x . w^T + bias). x: (b, in), w: (out, in), bias: (out), y: (b, out) row-major.
void dense_forward(DenseContext& ctx, DenseImpl impl, const float* x, const float* w, const float* bias, float* y,
                   int b, int in, int out, bool relu, cudaStream_t stream);
// dy: (b, out) -> dx: (b, in) = dy . w, multiplied by (x > 0) when mask_dx_by_x
// (fuses the backward of a ReLU that produced x); dx may be null (first layer).
// dw: (out, in) = dy^T . x; db: (out) = column sums of dy in a fixed order.
void dense_backward(DenseContext& ctx, DenseImpl impl, const float* x, const float* w, const float* dy, float* dx,
                    bool mask_dx_by_x, float* dw, float* db, int b, int in, int out, cudaStream_t stream);
// The faster implementation for this layer shape: for Training one step's
// work (forward + backward with dx), for Inference the forward alone; timed
// once per shape and use with CUDA events (2 warm-up and 7 timed runs each,
// median) on random data after `stream` has drained, then cached in `ctx`.
// Synchronises `stream`: call it before capturing a CUDA graph (throws during capture).
DenseImpl dense_autoselect(DenseContext& ctx, int b, int in, int out, bool relu, cudaStream_t stream,
                           PlanUse use = PlanUse::Training);
// Elementwise ReLU backward where the mask cannot be fused: dx = dy * (y > 0). n elements.
void relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// Elementwise ReLU: y = max(x, 0), may alias. n elements.
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);

// ---------------------------------------------------------------- conv.cu
// How cuDNN's answer to a call is handled while choosing algorithms:
//   Success;
//   CannotDo     bad parameter, not supported, internal error (2xxx, 3xxx
//                except 3005-3009, 4xxx): this algorithm or the optional
//                fused conv+bias+ReLU cannot, so the next candidate (or the
//                unfused forward) is tried;
//   Environment  1xxx and 3005-3009 (driver, runtime, architecture,
//                sub-library): nothing can run, a fatal error saying so;
//   Fatal        execution failures and unknown codes.
enum class CudnnVerdict { Success, CannotDo, Environment, Fatal };
CudnnVerdict classify_cudnn_status(int status);

// A cuDNN convolution for one shape: descriptors, the algorithms chosen once
// (Find / _v7 search; deterministic algorithms only when `deterministic`),
// and one workspace sized for the largest of them, allocated once.
// Construction waits for all work on the device (cudaDeviceSynchronize), so
// the timed search does not share the GPU with queued work.
class ConvPlan {
 public:
  ConvPlan(const ref::ConvShape& shape, bool deterministic, PlanUse use = PlanUse::Training);
  ~ConvPlan();
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  // x: (n, in_c, h, w), w: (out_c, in_c, k, k), bias: (out_c) -> y: (n, out_c, oh, ow), ReLU fused when relu.
  void forward(const float* x, const float* w, const float* bias, float* y, bool relu, cudaStream_t stream);
  // dy: (n, out_c, oh, ow) -> dx: (n, in_c, h, w)
  void backward_data(const float* dy, const float* w, float* dx, cudaStream_t stream);
  // x, dy -> dw: (out_c, in_c, k, k), db: (out_c) (overwritten)
  void backward_filter(const float* x, const float* dy, float* dw, float* db, cudaStream_t stream);
  // "fwd=IMPLICIT_PRECOMP_GEMM bwd_data=ALGO_1 bwd_filter=ALGO_1 workspace=12.3 MiB"
  std::string describe() const;
  // Whether forward(relu = true, bias) runs cuDNN's fused conv+bias+ReLU call
  // (else cudnnConvolutionForward and this project's bias/ReLU kernel).
  bool fused_forward() const;
  // Tests: makes forward() take the unfused path from now on, so both paths
  // of a shape can be checked.
  void force_unfused_forward();
  struct State;

 private:
  void require_training(const char* call) const;
  std::unique_ptr<State> state_;
};

// ---------------------------------------------------------------- pool.cu
// Same contract as ref::maxpool2x2_forward / backward.
void maxpool2x2_forward(const float* x, float* y, uint8_t* argmax, int n, int c, int h, int w, cudaStream_t stream);
void maxpool2x2_backward(const float* dy, const uint8_t* argmax, float* dx, int n, int c, int h, int w,
                         cudaStream_t stream);

// ---------------------------------------------------------------- dropout.cu
// Same mask as ref::dropout_forward for (seed, *step, element). step: device (1).
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, const uint64_t* step,
                     cudaStream_t stream);
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p, cudaStream_t stream);

// ---------------------------------------------------------------- hint.cu
// ref::hint_loss on the device: m, t: (b, d) -> grad: (b, d) = weight *
// d(batch mean)/dm (skipped when null) and row_hint: (b) the per-row distance
// (skipped when null); row_total: (b), when not null, += weight * distance
// (the step's per-row loss, whose mean then includes the hint).
void hint_loss(const float* m, const float* t, float* grad, float* row_hint, float* row_total, int b, int d,
               HintKind kind, float weight, cudaStream_t stream);
// The hook of the network's backward pass: dx: (n) += g: (n), where mask_by:
// (n) is > 0 when given (the ReLU output the dense backward masked dx by, so
// the added gradient passes the same ReLU).
void hint_add_gradient(float* dx, const float* g, const float* mask_by, int64_t n, cudaStream_t stream);

// ---------------------------------------------------------------- optim.cu
// One launch over the flat parameter buffer. step: device (1), 1-based count
// of this update (read, not written, so the graph can be replayed). The rate
// is scheduled_lr(a.lr, *step, schedule), derived on the device from the step
// counter: a captured graph replays one launch with fixed arguments, and the
// rate still follows the schedule (the CPU engines call scheduled_lr on the host).
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const ref::AdamParams& a,
               const LrSchedule& schedule, const uint64_t* step, cudaStream_t stream);
void sgd_momentum_step(float* p, const float* g, float* buf, int64_t n, const ref::SgdParams& a,
                       const LrSchedule& schedule, const uint64_t* step, cudaStream_t stream);
// *counter += 1 (one thread), so a graph advances its own step.
void increment_counter(uint64_t* counter, cudaStream_t stream);

// ---------------------------------------------------------------- batch.cu
// images: (N, pixels) u8, labels: (N) u8, idx: (b) -> out: (b, pixels) normalised as
// ref::gather_normalize, out_labels: (b) int32 (skipped when null).
void gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out, int32_t* out_labels,
                      int b, int64_t plane, const Normalization& norm, cudaStream_t stream);
// out: (n) = 0, 1, ..., n-1 (identity order for evaluation).
void iota(int32_t* out, int n, cudaStream_t stream);

// ---------------------------------------------------------------- augment.cu
// images: (N, c, h, w) u8, labels: (N) u8, idx: (b) -> out: (b, c, h, w) as
// ref::augment_gather_normalize with epoch = *epoch, out_labels: (b) int32
// (skipped when null). epoch: device (1), read at run time so a captured graph
// replays into later epochs. !params.enabled is exactly gather_normalize above.
// Throws kd::Error (before enqueueing anything) for parameters validate_augment rejects.
void augment_gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out,
                              int32_t* out_labels, int b, int h, int w, const Normalization& norm,
                              const AugmentParams& params, uint64_t seed, const uint64_t* epoch, cudaStream_t stream);
// The whole mixed batch, as ref::mixup_gather_normalize(images, idx, out, b, 0, b, ...)
// with epoch = *epoch and the draw *draw (device (1), read at run time), and
// out_labels / out_partner_labels: (b) int32, row i's label and its partner's.
// Throws kd::Error (before enqueueing anything) for parameters validate_augment rejects.
void mixup_gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out,
                            int32_t* out_labels, int32_t* out_partner_labels, int b, int h, int w,
                            const Normalization& norm, const AugmentParams& params, uint64_t seed,
                            const uint64_t* epoch, const MixupDraw* draw, cudaStream_t stream);

// ---------------------------------------------------------------- metrics.cu
// x: (b, c) -> out: (b) argmax (first on ties).
void argmax_rows(const float* x, int32_t* out, int b, int c, cudaStream_t stream);
// *correct += number of rows whose argmax equals the label (integer atomics: deterministic).
void accumulate_correct(const float* x, const int32_t* labels, int b, int c, unsigned long long* correct,
                        cudaStream_t stream);
// *total += weight * (*value) in double, one thread (keeps epoch loss sums on device).
void accumulate_scalar(const float* value, double weight, double* total, cudaStream_t stream);

}  // namespace kd::cuda
