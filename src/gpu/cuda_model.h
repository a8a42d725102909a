// CudaModel: the ModelEngine of one model on the GPU, the twin of the CPU
// engine's model (same batch gathering, loss, optimiser and step counter).
//
// A training step is gather -> forward -> softmax_kl -> backward -> optimiser
// -> loss bookkeeping, all on the engine's stream. Under StepExecution::Graph
// it runs eagerly the first time for each (batch size, temperature, alpha,
// soft targets), is captured the second time and replayed from then on; what
// changes between steps lives in device memory: the step
// counter (Adam bias correction, dropout's Philox counter) and the epoch
// cursor (which samples to take, where to record the loss; epoch_cursor.h).
// Within an epoch the host only launches; end_epoch() reads the per-step
// losses back with one copy. If a capture fails (a library call that cannot be
// captured, say), the model warns once, with the capture status and the CUDA
// error, and runs that key's steps eagerly from then on: the same kernels in
// the same order, so the same bits, only more launches.
// The device buffers hold the parameters in ParamLayout's 16-byte-aligned
// layout; everything crossing the ModelEngine interface is packed.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "cuda_graph.h"
#include "cuda_network.h"
#include "engine_context.h"
#include "kd/engine.h"

namespace kd::cuda {

class CudaModel final : public ModelEngine {
 public:
  // params: (arch.param_count) initial parameters; optimiser state starts at zero.
  CudaModel(EngineContext& context, const Arch& arch, const std::vector<float>& params, const TrainSettings& settings);
  ~CudaModel() override;
  // What the constructor and the first training, evaluation and latency
  // calls allocate for (arch, settings), computed without allocating; with
  // `online_teacher`, prepare_online's buffers too (Engine::memory_need).
  static MemoryNeed memory_need(EngineContext& context, const Arch& arch, const TrainSettings& settings,
                                bool online_teacher);

  // Inference logits of every image of `split`, in order -> logits: (split n,
  // classes) device memory, written on the engine's stream.
  void infer_split(SplitId split, float* logits);
  // The engine state this model reads its data from and orders its work on.
  const EngineContext& context() const { return context_; }

  // Online soft targets (this model the teacher). prepare_online(b) allocates
  // the batch buffers and plans batch b, outside any capture;
  // enqueue_online_logits then runs inference on x: (b, input size), the
  // student's gathered batch, and returns the logits: (b, classes), written on
  // the stream. Capture-safe after prepare_online(b).
  void prepare_online(int b);
  const float* enqueue_online_logits(const float* x, int b, cudaStream_t stream);
  // The stable address of the online batch buffers (a captured student step reads them).
  const float* online_input() const { return online_acts_.input.data(); }
  // The last enqueue_online_logits' features (kd/hint.h): (b, hint_feature_width), a stable address.
  const float* online_features() const { return net_.last_layer_input(online_acts_); }

 private:
  int64_t train_images() const override { return input_split(SplitId::Train).n; }
  void begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) override;
  void train_step_impl(int64_t begin, int b, const LossConfig& loss) override;
  TrainStats end_epoch_impl() override;
  EvalResult evaluate_impl(SplitId split) override;
  LatencyRecord measure_latency_impl(int batch, int repeats) override;
  std::vector<float> get_params_impl() override;
  void set_params_impl(const std::vector<float>& params) override;
  OptimState get_optim_state_impl() override;
  void set_optim_state_impl(const OptimState& state) override;
  HintMapState get_hint_map_impl() override;
  void set_hint_map_impl(const HintMapState& state) override;
  void keep_best_impl() override;
  void restore_best_impl() override;
  std::vector<float> get_best_impl() override;
  void set_best_impl(const std::vector<float>& params) override;

  // Buffers of inference passes (evaluation, soft targets, latency), grown
  // to the largest batch asked for.
  struct InferenceBuffers {
    CudaNetwork::Activations acts;
    DeviceBuffer<int32_t> labels;  // (capacity)
    DeviceBuffer<float> row_loss;  // (capacity)
  };
  // (batch size, temperature, alpha, soft targets read) of a captured step.
  using GraphKey = std::tuple<int, float, float, const float*>;

  void enqueue_train_step(const CudaNetwork::BatchPlan& plan, int b, const LossConfig& loss);
  // The hint's part of a step (kd/hint.h): maps the student's features, adds
  // weight * distance to row_loss_, and leaves the map's gradient in
  // hint_grads_ and the features' in hint_dfeatures_. Capture-safe.
  void enqueue_hint(const float* teacher_features, int b, cudaStream_t stream);
  void reserve_epoch(size_t steps);
  void ensure_inference_capacity(int b);
  const DeviceSplit& input_split(SplitId split) const;
  // Gathers `split` in order in batches of up to settings.eval_batch_size and calls
  // visit(logits (b, classes), begin, b) after each batch's forward pass.
  // Returns the images visited: split.n, or fewer after a stop request.
  template <typename Visit>
  int64_t for_each_inference_batch(const DeviceSplit& split, Visit&& visit);

  EngineContext& context_;
  TrainSettings settings_;
  CudaNetwork net_;
  int classes_;

  // Flat (net_.layout().count()) buffers in the aligned device layout.
  DeviceBuffer<float> params_, grads_;
  DeviceBuffer<float> moment1_, moment2_;  // Adam m and v; SGD: momentum buffer and (empty)
  DeviceBuffer<float> best_;               // the best epoch's parameters; empty until keep_best
  DeviceBuffer<uint64_t> step_counter_;    // (1) updates applied; the graph increments it first
  int64_t step_ = 0;                       // host mirror of *step_counter_

  // Training batch (settings.batch_size).
  CudaNetwork::Activations train_acts_;
  DeviceBuffer<int32_t> train_samples_, train_labels_;  // (batch) training-split indices, labels
  DeviceBuffer<float> row_loss_, row_kl_;               // (batch)
  DeviceBuffer<float> step_means_;                      // (3) this step's mean loss, mean KL, mean hint
  DeviceBuffer<int32_t> partner_labels_;                // (batch) mixup: each row's partner's label
  DeviceBuffer<MixupDraw> step_draw_;                   // (1) mixup: this step's draw, taken in the graph

  // The epoch: order and device cursor, per-step losses, host bookkeeping.
  DeviceBuffer<int32_t> order_;                // (capacity) this epoch's sample order
  DeviceBuffer<float> epoch_loss_, epoch_kl_;  // (capacity) per step of the epoch
  DeviceBuffer<float> epoch_hint_;             // (capacity) per step of the epoch, with a hint only
  DeviceBuffer<int64_t> cursor_;               // (1) position in order_ of the next step's batch
  DeviceBuffer<int32_t> epoch_step_;           // (1) steps recorded this epoch
  DeviceBuffer<uint64_t> epoch_number_;        // (1) 1-based, keys the augmentation (read inside the graph)
  DeviceBuffer<MixupDraw> epoch_draws_;        // (batches of capacity) mixup: each batch's draw, by batch number
  bool cursor_placed_ = false;
  int64_t epoch_steps_ = 0, epoch_first_step_ = 0;
  std::set<GraphKey> ran_eagerly_;   // keys whose first step has run (Graph execution)
  std::set<GraphKey> uncapturable_;  // keys whose capture failed: always eager
  std::map<GraphKey, CudaGraph> graphs_;

  // The hint (settings_.hint on; else all empty): the map (packed as
  // kd/hint.h's HintMapState) with its gradient and moments, and one step's
  // mapped features and their gradient: (batch, teacher width) each, the
  // features' gradient: (batch, hint_width_), per-row distances: (batch).
  int hint_width_ = 0;
  DenseImpl hint_impl_ = DenseImpl::Cublas;  // the map's dense implementation at the step's batch size
  DeviceBuffer<float> hint_params_, hint_grads_, hint_m_, hint_v_;
  DeviceBuffer<float> hint_mapped_, hint_dmapped_, hint_dfeatures_, row_hint_;

  InferenceBuffers inference_;
  CudaNetwork::Activations online_acts_;           // (settings.batch_size) once prepare_online ran
  DeviceBuffer<float> eval_batch_mean_;            // (1)
  DeviceBuffer<double> eval_loss_sum_;             // (1) sum over batches of mean CE * b
  DeviceBuffer<unsigned long long> eval_correct_;  // (1)
};

}  // namespace kd::cuda
