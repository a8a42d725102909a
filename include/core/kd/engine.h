// kd/engine.h: the contract every engine implements (the CPU reference, the
// fast CPU engine in kd_cpu, the CUDA engine in kd_gpu) and the training
// layer drives (kd/train.h).
//
// The training layer owns everything that is the same on every device:
// epochs, shuffling, validation, soft-target hand-off, checkpoints, stops.
// An Engine owns the device: the resident datasets, the soft targets and one
// ModelEngine per model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/augment.h"
#include "kd/data.h"
#include "kd/distributed.h"
#include "kd/hint.h"
#include "kd/lr_schedule.h"
#include "kd/reference.h"

namespace kd {

enum class SplitId { Train, Val, Test };
enum class OptimizerKind { Adam, Sgd };
enum class DenseImplChoice { Auto, Custom, Cublas };

// One latency measurement: `repeats` timed forwards at `batch`.
struct LatencyRecord {
  int batch = 0;
  double median_ms = 0, p90_ms = 0;
  int repeats = 0;
  double samples_per_s = 0;  // batch / median
};

// Median and 90th percentile of per-repeat timings `ms` (at least one) for
// `batch` samples each; samples_per_s = batch / median.
LatencyRecord latency_stats(int batch, std::vector<double> ms);
// The batch a measure_latency(batch, repeats) times on a test split of test_n
// images: batch, capped at test_n. Throws naming the problem when the split is
// empty or batch or repeats is below 1.
int latency_batch(int batch, int repeats, int64_t test_n);
// The host-side timing rule kdtrain's CPU engines and ONNX Runtime in-process
// share, so their numbers compare: one untimed warm-up call of forward(), then
// up to `repeats` timed calls (wall time each), stopping early once
// kLatencyBudgetS of timing has collected at least kLatencyMinRepeats, or on a
// stop request after the first (a CPU teacher forward at batch 10,000 takes seconds).
constexpr double kLatencyBudgetS = 3.0;
constexpr int kLatencyMinRepeats = 5;
LatencyRecord time_forwards(int batch, int repeats, const std::function<void()>& forward);

struct TrainSettings {
  int batch_size = 64;
  int eval_batch_size = 1000;  // inference passes (validation, test, soft targets)
  int max_latency_batch = 1;   // the largest batch measure_latency will be asked for
  OptimizerKind optimizer = OptimizerKind::Adam;
  ref::AdamParams adam;
  ref::SgdParams sgd;
  // Scales adam.lr / sgd.lr per update (scheduled_lr of the 1-based step);
  // the default is no schedule. Set per model: its total follows its epochs.
  LrSchedule lr_schedule;
  // Training batches (never inference) pass through the seeded random affine
  // of kd/augment.h: sample i of epoch e through augment_transform(augment,
  // seed, e, i), a pure function of those, so every engine, thread count and
  // resumed run sees the same views. Off by default.
  AugmentParams augment;
  // The hint loss (kd/hint.h), off by default: a model created with it on
  // holds the map, adds weight * distance to every training step's loss
  // (which then needs an online teacher, Engine::use_online_teacher), and
  // trains the map with its own optimiser settings and step.
  HintSettings hint;
  // Mixup of training batches after augmentation (kd/augment.h): the
  // Beta(mixup, mixup) concentration, 0 = off. One draw per batch, a pure
  // function of (seed, epoch, the batch's first position in the epoch's
  // order); an engine that tabulates an epoch's draws (CUDA) needs batches to
  // start at multiples of batch_size, as the training loop's do.
  float mixup = 0.0f;
  uint64_t seed = 0;
  bool deterministic = false;
  DenseImplChoice dense_impl = DenseImplChoice::Auto;
};

// alpha == 0: plain cross-entropy on hard labels (teacher, scratch baseline).
// alpha > 0: distillation against the engine's soft targets.
struct LossConfig {
  float temperature = 1.0f;
  float alpha = 0.0f;
};

struct TrainStats {
  double loss = 0;  // mean batch loss over the epoch's steps
  double kl = 0;    // mean batch KL term (0 unless distilling)
  double hint = 0;  // mean batch hint distance, unweighted (0 unless TrainSettings::hint is on)
  int64_t steps = 0;
  bool finite = true;           // false when any step's loss was NaN/Inf
  int64_t first_bad_step = -1;  // global step index of the first non-finite loss
};

// n is the number of images evaluated: the whole split, or fewer when a stop
// request (kd/interrupt.h) ended the pass at a batch boundary.
struct EvalResult {
  double loss = 0;  // mean cross-entropy
  int64_t correct = 0, n = 0;
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }
};

// Optimiser state for checkpoints: Adam m and v (SGD: m = momentum buffer, v empty).
struct OptimState {
  std::vector<float> m, v;
  int64_t step = 0;  // updates applied so far
};

// The bytes one model holds on its engine's device, by what sizes them, so
// that the pipeline can refuse a configuration before allocating it and name
// the flag to lower.
struct MemoryNeed {
  int64_t state = 0;                // parameters, gradients, optimiser state, best-epoch copy, per-epoch buffers
  int64_t workspace = 0;            // library workspaces (an upper-bound allowance on CUDA)
  int64_t train_activations = 0;    // sized by the training batch (--batch-size)
  int64_t eval_activations = 0;     // sized by the evaluation batch (--eval-batch-size)
  int64_t latency_activations = 0;  // sized by the largest latency batch (--latency-batches)
  int64_t total() const { return state + workspace + train_activations + eval_activations + latency_activations; }
};

// A model on an engine. The public entry points are non-virtual: each checks
// its arguments and the call order once, for every engine, then calls the
// engine's *_impl (as tiny-cuda-nn's forward() calls forward_impl()), so an
// engine implements only the arithmetic and every engine refuses the same
// misuse with the same message.
class ModelEngine {
 public:
  virtual ~ModelEngine() = default;
  const Arch& arch() const { return arch_; }
  // Fixes this epoch's order of training-split indices (uploaded once per
  // epoch) and its number (1-based), which keys the epoch's augmentation.
  void begin_epoch(const std::vector<int32_t>& order, int64_t epoch);
  // One optimiser step on order[begin, begin + b). May be asynchronous.
  // Within an epoch, calls come in order with consecutive ranges; the first
  // call after begin_epoch may start at begin > 0 (resuming mid-epoch).
  void train_step(int64_t begin, int b, const LossConfig& loss);
  // Waits for the epoch's steps and returns their loss statistics.
  TrainStats end_epoch();
  // Data-parallel training (--data-parallel, docs/mpi.md): from this call on,
  // train_step(begin, b, loss) is one step of the global batch order[begin,
  // begin + b) shared by `comm`'s ranks. Rank r of N computes the gradient
  // of rows [begin + b*r/N, begin + b*(r+1)/N) as its share of the batch
  // mean (dropout drawn as for those rows of the global batch); the shares
  // and their losses are summed in rank order (Comm::sum_in_rank_order), and
  // every rank applies the same optimiser step to the same sum, so the
  // weights stay identical on every rank. Each step then needs b >= N.
  // Engines that cannot refuse with one line (the CUDA engine, until NCCL).
  void set_data_parallel(Comm& comm);
  // Inference (no dropout) over a whole split, in large batches; stops early
  // at a batch boundary on a stop request (kd/interrupt.h).
  EvalResult evaluate(SplitId split) { return evaluate_impl(split); }
  // Forward-only latency at `batch` (data already on the device): median and
  // p90 over `repeats`, or over the repeats done when a stop request came.
  LatencyRecord measure_latency(int batch, int repeats) { return measure_latency_impl(batch, repeats); }

  // params: (arch().param_count), the flat layout of kd/params.h.
  std::vector<float> get_params() { return get_params_impl(); }
  void set_params(const std::vector<float>& params);
  OptimState get_optim_state() { return get_optim_state_impl(); }
  void set_optim_state(const OptimState& state);
  // The hint map (TrainSettings::hint on) with its optimiser moments, for
  // checkpoints: it trains with the model but is no part of its parameters,
  // so get_params, the best epoch's copy and exported models leave it out.
  // get_hint_map is empty for a model without a hint; set_hint_map refuses it.
  HintMapState get_hint_map() { return hint_map_size_ > 0 ? get_hint_map_impl() : HintMapState{}; }
  void set_hint_map(const HintMapState& state);

  // The best epoch's parameters (--select best): one more parameter buffer on
  // the model's device. keep_best copies the current parameters into it (a
  // device-to-device copy on the GPU, no host round trip); restore_best
  // copies them back. get_best / set_best move the copy to and from the host
  // for checkpoints; get_best is empty while nothing was kept.
  void keep_best();
  void restore_best();
  std::vector<float> get_best();
  void set_best(const std::vector<float>& params);

 protected:
  ModelEngine(const Arch& arch, const TrainSettings& settings);
  // Images in the engine's training split, which an epoch's order indexes
  // (asked at begin_epoch: a model may be created before the data is loaded).
  virtual int64_t train_images() const = 0;

  // Called only with arguments the entry points checked.
  virtual void begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) = 0;
  virtual void train_step_impl(int64_t begin, int b, const LossConfig& loss) = 0;
  virtual TrainStats end_epoch_impl() = 0;
  // Default: refuses (an engine that trains data-parallel overrides it).
  virtual void set_data_parallel_impl(Comm& comm);
  virtual EvalResult evaluate_impl(SplitId split) = 0;
  virtual LatencyRecord measure_latency_impl(int batch, int repeats) = 0;
  virtual std::vector<float> get_params_impl() = 0;
  virtual void set_params_impl(const std::vector<float>& params) = 0;
  virtual OptimState get_optim_state_impl() = 0;
  virtual void set_optim_state_impl(const OptimState& state) = 0;
  virtual HintMapState get_hint_map_impl() = 0;
  virtual void set_hint_map_impl(const HintMapState& state) = 0;
  virtual void keep_best_impl() = 0;
  virtual void restore_best_impl() = 0;
  virtual std::vector<float> get_best_impl() = 0;
  virtual void set_best_impl(const std::vector<float>& params) = 0;

 private:
  Arch arch_;
  int batch_capacity_;       // the largest training batch the buffers hold (settings.batch_size)
  OptimizerKind optimizer_;  // Adam keeps two moments per parameter, SGD one
  bool in_epoch_ = false, has_best_ = false;
  int64_t order_size_ = 0;
  int64_t next_begin_ = -1;  // where the epoch's next step must start; -1: anywhere (first step)
  int data_parallel_ranks_ = 1;
  int64_t hint_map_size_ = 0;  // hint_map_param_count of the model's hint; 0 without one
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string device_description() const = 0;
  virtual std::string versions() const = 0;
  // True for the CPU reference engine: the pipeline then times latency with
  // fewer repeats and only at batches <= 64 (a CPU teacher forward at batch
  // 10,000 takes minutes and says nothing about deployment on a GPU).
  virtual bool is_reference_cpu() const { return false; }
  // Makes the splits resident on the device (once per run).
  virtual void load(const Splits& splits) = 0;
  // What create_model(arch, ., settings) would allocate, without allocating
  // it: with settings.hint on, the hint map and its buffers; with
  // `online_teacher`, also what the model takes to serve as the online
  // teacher (use_online_teacher) of students trained at settings.batch_size,
  // counted in train_activations (the training batch sizes it).
  virtual MemoryNeed memory_need(const Arch& arch, const TrainSettings& settings, bool online_teacher) = 0;
  // Bytes still free on the device: MemAvailable of /proc/meminfo on the host,
  // cudaMemGetInfo's free bytes on a GPU. INT64_MAX when unknown.
  virtual int64_t available_memory() = 0;
  // A model with the given initial parameters; buffers sized for settings.batch_size.
  virtual std::unique_ptr<ModelEngine> create_model(const Arch& arch, const std::vector<float>& params,
                                                    const TrainSettings& settings) = 0;
  // Computes the teacher's inference logits for every training-split image and
  // keeps them on the device as the soft targets read by distillation steps.
  // A stop request (kd/interrupt.h) ends it at a batch boundary, the targets
  // then incomplete.
  virtual void compute_soft_targets(ModelEngine& teacher) = 0;
  // Online soft targets (--soft-targets online): from now on every
  // distillation step runs `teacher` in inference mode (no dropout) on exactly
  // the batch the student trains on, augmented view included, and distils
  // from those logits instead of cached rows (Beyer et al. 2022: a consistent
  // teacher). `teacher` must be this engine's model, take the same inputs as
  // the students, and outlive their training.
  virtual void use_online_teacher(ModelEngine& teacher) = 0;
};

}  // namespace kd
