// CpuEngine: the Engine interface on the CPU, with the ops chosen at
// construction (kd/cpu_ops.h): the reference ops (`--device reference`, the
// twin the GPU engine is tested against) or the fast ops (`--device cpu`).
// Same batch gathering, loss, optimiser formulas and dropout counters either way.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <thread>

#include "kd/augment.h"
#include "kd/cpu_ops.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/cpu_model.h"
#include "kd/cpu_engine.h"

namespace kd {
namespace {

// "AMD EPYC 9B14" from /proc/cpuinfo, or "unknown CPU".
std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// MemAvailable of /proc/meminfo in bytes: what the kernel can hand out
// without swapping. INT64_MAX when the file or the line is missing.
int64_t host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return std::numeric_limits<int64_t>::max();
}

// The batch the CPU model's buffers are sized for: one set serves training
// and evaluation; latency at a larger batch runs in slices of it.
int buffer_rows(const TrainSettings& s) { return std::max(s.batch_size, s.eval_batch_size); }

// Bytes of CpuModelEngine's own per-row buffers (batch_x_, batch_y_,
// partner_y_, dlogits_, teacher_rows_) for `rows` rows.
int64_t engine_row_bytes(const Arch& arch, int rows) {
  return int64_t(rows) * (arch.input.size() * int64_t(sizeof(float)) + 2 * int64_t(sizeof(int32_t)) +
                          2 * int64_t(arch.output.size()) * int64_t(sizeof(float)));
}

// An allowance for the fast ops' oneDNN buffers: every convolution keeps its
// input and output in oneDNN's blocked layout, once per batch size it runs
// at (forward only at the evaluation batch; forward and backward, about three
// copies, at the training batch). Library scratchpads come on top and are
// small next to these at the default shapes.
int64_t onednn_staging_bytes(const Arch& arch, const TrainSettings& s) {
  int64_t per_row = 0;
  for (const Layer& l : arch.layers)
    if (l.kind == LayerKind::Conv) per_row += l.in.size() + l.out_shape.size();
  return (int64_t(s.eval_batch_size) + 3 * int64_t(s.batch_size)) * per_row * int64_t(sizeof(float));
}

class CpuEngine;

class CpuModelEngine final : public ModelEngine {
 public:
  CpuModelEngine(const CpuEngine& engine, const Arch& arch, const std::vector<float>& params,
                 const TrainSettings& settings);
  // logits: (n, classes) of every image of `split` in inference mode.
  std::vector<float> infer_all(SplitId split);
  // x: (b, input size) normalised -> logits: (b, classes) in inference mode,
  // valid until this model's next forward.
  const float* infer_batch(const float* x, int b) { return model_.forward(x, b, /*training=*/false, 0, 0); }
  // The last infer_batch's features (kd/hint.h): (b, hint_feature_width), valid until the next forward.
  const float* last_features() const { return model_.last_layer_input(); }
  // The engine whose data this model reads.
  const CpuEngine& engine() const { return engine_; }

 private:
  int64_t train_images() const override;
  void begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) override;
  void train_step_impl(int64_t begin, int b, const LossConfig& loss) override;
  TrainStats end_epoch_impl() override;
  void set_data_parallel_impl(Comm& comm) override {
    comm_ = &comm;
    reduced_.resize(model_.params().size() + 3);
  }
  EvalResult evaluate_impl(SplitId split) override;
  LatencyRecord measure_latency_impl(int batch, int repeats) override;
  std::vector<float> get_params_impl() override { return model_.params(); }
  void set_params_impl(const std::vector<float>& params) override { model_.params() = params; }
  OptimState get_optim_state_impl() override { return optim_; }
  void set_optim_state_impl(const OptimState& state) override { optim_ = state; }
  HintMapState get_hint_map_impl() override { return hint_map_; }
  void set_hint_map_impl(const HintMapState& state) override { hint_map_ = state; }
  void keep_best_impl() override { best_ = model_.params(); }
  void restore_best_impl() override { model_.params() = best_; }
  std::vector<float> get_best_impl() override { return best_; }
  void set_best_impl(const std::vector<float>& params) override { best_ = params; }

  // Gathers rows idx[0..b) of `data` into batch_x_ (normalised) and batch_y_;
  // `augment`: through this epoch's augmentation (training batches).
  void gather(const Dataset& data, const int32_t* idx, int b, bool augment = false);
  // The hint of one step (kd/hint.h) on this step's `rows` rows: maps the
  // model's features, measures them against teacher_features: (rows, teacher
  // width), and leaves the map's gradient in hint_grads_ and the features'
  // in hint_dfeatures_. Returns the unweighted batch mean distance.
  double hint_step(const float* teacher_features, int rows);
  // One optimiser update of params: (n) with grads and moments m, v (v unused by SGD), at the 1-based step.
  void optimizer_update(float* params, const float* grads, float* m, float* v, int64_t n, int64_t step);
  // Rows [lo, lo + rows) of the training batch order_[begin, begin + b),
  // augmented and mixed by `draw` (ref::mixup_gather_normalize), into
  // batch_x_; their labels into batch_y_ and their partners' into partner_y_.
  void gather_mixed(int64_t begin, int b, int lo, int rows, const MixupDraw& draw);
  // Inference over all of `data` in slices of max_batch rows: sink(begin, b, logits (b, classes))
  // per slice, with batch_y_ holding the slice's labels.
  template <class Sink>
  void for_each_slice(const Dataset& data, Sink&& sink);

  const CpuEngine& engine_;
  TrainSettings settings_;
  CpuModel model_;
  OptimState optim_;
  std::vector<float> best_;  // (param_count) once keep_best was called, else empty
  std::vector<int32_t> order_;
  int64_t epoch_number_ = 0;  // 1-based, keys the augmentation
  std::vector<float> batch_x_, dlogits_, teacher_rows_;
  std::vector<int32_t> batch_y_, partner_y_;  // partner_y_: mixup's second label per row
  TrainStats epoch_;
  double loss_sum_ = 0, kl_sum_ = 0, hint_sum_ = 0;
  // The hint map (settings_.hint on; else all empty): its state, its gradient,
  // and one step's mapped features, their gradient (rows, teacher width each)
  // and the features' gradient (rows, hint_width_).
  int hint_width_ = 0;
  HintMapState hint_map_;
  std::vector<float> hint_grads_, hint_mapped_, hint_dmapped_, hint_dfeatures_;
  Comm* comm_ = nullptr;  // set_data_parallel's ranks, or none
  // Data-parallel: (param_count) gradient sum, then the step's loss and KL,
  // then how many ranks were asked to stop (kd/interrupt.h).
  std::vector<float> reduced_;
};

class CpuEngine final : public Engine {
 public:
  // fast = false: the reference ops (threads ignored: they run on one).
  CpuEngine(bool fast, int threads) : fast_(fast), threads_(fast ? resolve_cpu_threads(threads) : 1) {}
  std::string device_description() const override {
    const std::string hw =
        cpu_model_name() + " (" + std::to_string(std::thread::hardware_concurrency()) + " hardware threads)";
    if (!fast_) return "CPU reference, one thread of " + hw;
    return "CPU fast engine, " + std::to_string(threads_) + (threads_ == 1 ? " thread of " : " threads of ") + hw +
           "; " + fast_conv_path() + (threads_ > 1 ? "; " + fast_thread_waits() : "");
  }
  std::string versions() const override { return make_ops()->describe(); }
  bool is_reference_cpu() const override { return !fast_; }
  std::unique_ptr<CpuOps> make_ops() const { return fast_ ? make_fast_ops(threads_) : make_reference_ops(); }
  void load(const Splits& splits) override {
    check_normalization(splits);
    splits_ = splits;
  }
  // An online teacher (`online_teacher`) needs nothing more: it runs each
  // student batch through its own buffers, which hold buffer_rows >= the
  // training batch, and the fast ops' staging allowance counts three copies
  // at the training batch whether it trains or not.
  MemoryNeed memory_need(const Arch& arch, const TrainSettings& settings, bool /*online_teacher*/) override {
    MemoryNeed need;
    const int64_t f = sizeof(float);
    const int64_t moments = settings.optimizer == OptimizerKind::Adam ? 2 : 1;
    // parameters, gradients, moments, the best epoch's copy
    need.state = (3 + moments) * arch.param_count * f;
    const int rows = buffer_rows(settings);
    int64_t activations = CpuModel::activation_bytes(arch, rows) + engine_row_bytes(arch, rows);
    if (settings.hint.on()) {
      // The hint map of a student of width ds to a teacher of width dt: its
      // (dt*ds + dt) parameters, gradient and moments, 4 bytes each; and per
      // buffer row the mapped features and their gradient (dt floats each)
      // and the features' gradient (ds floats): rows * (2*dt + ds) * 4 bytes.
      const int64_t dt = settings.hint.teacher_width, ds = hint_feature_width(arch, "student");
      need.state += (2 + moments) * hint_map_param_count(int(ds), int(dt)) * f;
      activations += int64_t(rows) * (2 * dt + ds) * f;
    }
    // One set of buffers: it counts against the flag that sizes it.
    if (rows == settings.batch_size) need.train_activations = activations;
    else need.eval_activations = activations;
    // Latency runs in slices of those buffers; it adds the normalised copy of its batch.
    need.latency_activations = int64_t(settings.max_latency_batch) * arch.input.size() * int64_t(sizeof(float));
    if (fast_) need.workspace = onednn_staging_bytes(arch, settings);
    return need;
  }
  int64_t available_memory() override { return host_available_bytes(); }
  std::unique_ptr<ModelEngine> create_model(const Arch& arch, const std::vector<float>& params,
                                            const TrainSettings& settings) override {
    return std::make_unique<CpuModelEngine>(*this, arch, params, settings);
  }
  void compute_soft_targets(ModelEngine& teacher) override {
    // Another engine's model would read that engine's training split.
    auto* model = dynamic_cast<CpuModelEngine*>(&teacher);
    if (model == nullptr || &model->engine() != this)
      fail(
          "compute_soft_targets: the teacher was not created by this CPU engine; create it with this engine's "
          "create_model");
    soft_targets_ = model->infer_all(SplitId::Train);
  }
  void use_online_teacher(ModelEngine& teacher) override {
    auto* model = dynamic_cast<CpuModelEngine*>(&teacher);
    if (model == nullptr || &model->engine() != this)
      fail(
          "use_online_teacher: the teacher was not created by this CPU engine; create it with this engine's "
          "create_model");
    online_teacher_ = model;
  }
  // Null unless use_online_teacher was called.
  CpuModelEngine* online_teacher() const { return online_teacher_; }

  const Dataset& split(SplitId id) const {
    switch (id) {
      case SplitId::Train: return splits_.train;
      case SplitId::Val: return splits_.val;
      case SplitId::Test: return splits_.test;
    }
    fail("unknown split");
  }
  const std::vector<float>& soft_targets() const { return soft_targets_; }
  const Normalization& normalization() const { return splits_.normalization; }

 private:
  bool fast_;
  int threads_;
  Splits splits_;
  std::vector<float> soft_targets_;  // (train_n, classes) teacher logits
  CpuModelEngine* online_teacher_ = nullptr;
};

CpuModelEngine::CpuModelEngine(const CpuEngine& engine, const Arch& arch, const std::vector<float>& params,
                               const TrainSettings& settings)
    : ModelEngine(arch, settings),
      engine_(engine),
      settings_(settings),
      model_(arch, buffer_rows(settings), engine.make_ops()) {
  set_params(params);
  optim_.m.assign(params.size(), 0.0f);
  if (settings.optimizer == OptimizerKind::Adam) optim_.v.assign(params.size(), 0.0f);
  const size_t rows = size_t(model_.max_batch());  // engine_row_bytes counts these
  batch_x_.resize(rows * arch.input.size());
  batch_y_.resize(rows);
  partner_y_.resize(rows);
  dlogits_.resize(rows * arch.output.size());
  teacher_rows_.resize(rows * arch.output.size());
  if (settings.hint.on()) {
    const int dt = settings.hint.teacher_width;
    hint_width_ = hint_feature_width(arch, "student");
    hint_map_.params = init_hint_map(hint_width_, dt, settings.seed);
    hint_map_.m.assign(hint_map_.params.size(), 0.0f);
    if (settings.optimizer == OptimizerKind::Adam) hint_map_.v.assign(hint_map_.params.size(), 0.0f);
    hint_grads_.resize(hint_map_.params.size());
    hint_mapped_.resize(rows * dt);
    hint_dmapped_.resize(rows * dt);
    hint_dfeatures_.resize(rows * size_t(hint_width_));
  }
}

int64_t CpuModelEngine::train_images() const { return engine_.split(SplitId::Train).n; }

// The augmented gather is the reference's on both CPU engines, one thread
// (0.34 ms per batch of 64 MNIST images, ~2% of a fast training step), so the
// views are bit-identical across engines and --threads.
void CpuModelEngine::gather(const Dataset& data, const int32_t* idx, int b, bool augment) {
  if (augment && settings_.augment.enabled) {
    ref::augment_gather_normalize(data.images.data(), idx, batch_x_.data(), b, data.h, data.w, engine_.normalization(),
                                  settings_.augment, settings_.seed, uint64_t(epoch_number_));
  } else {
    ref::gather_normalize(data.images.data(), idx, batch_x_.data(), b, data.pixels(), engine_.normalization());
  }
  for (int i = 0; i < b; ++i) batch_y_[i] = data.labels[idx[i]];
}

// One thread, as gather: the mixed views are the same on both CPU engines and at any --threads.
void CpuModelEngine::gather_mixed(int64_t begin, int b, int lo, int rows, const MixupDraw& draw) {
  const Dataset& train = engine_.split(SplitId::Train);
  const int32_t* batch = order_.data() + begin;
  ref::mixup_gather_normalize(train.images.data(), batch, batch_x_.data(), b, lo, rows, train.h, train.w,
                              engine_.normalization(), settings_.augment, settings_.seed, uint64_t(epoch_number_),
                              draw);
  for (int i = 0; i < rows; ++i) {
    batch_y_[i] = train.labels[batch[lo + i]];
    partner_y_[i] = train.labels[batch[mixup_partner(lo + i, draw, b)]];
  }
}

void CpuModelEngine::begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) {
  order_ = order;
  epoch_number_ = epoch;
  epoch_ = TrainStats{};
  loss_sum_ = kl_sum_ = hint_sum_ = 0;
}

// One step on order[begin, begin + b); data-parallel (kd/engine.h), on this
// rank's rows [lo, hi) of it, with the shares summed before the optimiser.
void CpuModelEngine::train_step_impl(int64_t begin, int b, const LossConfig& loss) {
  const Dataset& train = engine_.split(SplitId::Train);
  const int ranks = comm_ ? comm_->size() : 1, rank = comm_ ? comm_->rank() : 0;
  const int lo = int(int64_t(b) * rank / ranks), rows = int(int64_t(b) * (rank + 1) / ranks) - lo;
  const int32_t* idx = order_.data() + begin + lo;
  const int classes = int(model_.arch().output.size());
  // The whole batch's draw (begin, b): every data-parallel rank mixes its rows by the same one.
  const MixupDraw draw = mixup_draw(settings_.mixup, settings_.seed, uint64_t(epoch_number_), begin, b);
  if (settings_.mixup > 0) gather_mixed(begin, b, lo, rows, draw);
  else gather(train, idx, rows, /*augment=*/true);
  const uint64_t step = uint64_t(optim_.step) + 1;  // 1-based count of this update
  const float* logits = model_.forward(batch_x_.data(), rows, /*training=*/true, settings_.seed, step, lo);

  const bool hint = settings_.hint.on();
  CpuModelEngine* const online = loss.alpha > 0 || hint ? engine_.online_teacher() : nullptr;
  if (hint && online == nullptr)
    fail("--hint: the teacher's features come from its run on each training batch; add --soft-targets online");
  const float* teacher = nullptr;
  if (online != nullptr) {
    if (online->arch().input.size() != model_.arch().input.size() ||
        online->arch().output.size() != model_.arch().output.size())
      fail("online soft targets: the teacher '" + online->arch().text +
           "' does not take this student's inputs and classes");
    const float* online_logits = online->infer_batch(batch_x_.data(), rows);  // the student's own (augmented) batch
    if (loss.alpha > 0) teacher = online_logits;
  } else if (loss.alpha > 0) {
    const std::vector<float>& soft = engine_.soft_targets();
    if (soft.empty()) fail("distillation step without soft targets: compute_soft_targets was not called");
    for (int i = 0; i < rows; ++i)
      std::copy_n(soft.data() + size_t(idx[i]) * classes, classes, teacher_rows_.data() + size_t(i) * classes);
    teacher = teacher_rows_.data();
  }
  const ref::HardTargetMix mix{settings_.mixup > 0 ? partner_y_.data() : nullptr, draw.lambda, draw.partner_weight};
  ref::LossSums sums = ref::softmax_kl(logits, teacher, batch_y_.data(), dlogits_.data(), nullptr, rows, classes,
                                       loss.temperature, loss.alpha, mix);
  const float* dfeatures = nullptr;  // the hint's gradient with respect to the student's features
  double hint_distance = 0;
  if (hint) {
    if (hint_feature_width(online->arch(), "teacher") != settings_.hint.teacher_width)
      fail("--hint: the online teacher '" + online->arch().text + "' does not have the " +
           std::to_string(settings_.hint.teacher_width) + " features this student's hint map was made for");
    hint_distance = hint_step(online->last_features(), rows);
    sums.loss += double(settings_.hint.weight) * hint_distance;
    dfeatures = hint_dfeatures_.data();
  }
  const float* grads = model_.grads().data();
  if (comm_) {
    // softmax_kl took the mean over this rank's rows; its share of the global
    // batch's mean is rows / b of that. (One process divides by b once: the
    // extra rounding of this scaling and of the rank-order sum is what
    // separates the two, ~1e-7 relative per step.)
    const float share = float(rows) / float(b);
    for (int64_t i = 0; i < int64_t(rows) * classes; ++i) dlogits_[size_t(i)] *= share;
    model_.backward(dlogits_.data(), rows);
    const size_t n = model_.params().size();
    std::copy_n(model_.grads().data(), n, reduced_.data());
    reduced_[n] = float(sums.loss * share);
    reduced_[n + 1] = float(sums.kl * share);
    reduced_[n + 2] = interrupted() ? 1.0f : 0.0f;
    comm_->sum_in_rank_order(reduced_.data(), int64_t(reduced_.size()));
    grads = reduced_.data();
    sums.loss = reduced_[n], sums.kl = reduced_[n + 1];  // the global batch's, the same on every rank
    // A stop asked of any rank (mpirun passes a signal on to each at its own
    // moment) is every rank's after this step: all stop at the same step,
    // and rank 0's checkpoint is the job's.
    if (reduced_[n + 2] > 0 && !interrupted()) request_interrupt();
  } else {
    model_.backward(dlogits_.data(), rows, dfeatures);
  }
  if (!std::isfinite(sums.loss) && epoch_.finite) {
    epoch_.finite = false;
    epoch_.first_bad_step = optim_.step;
  }
  std::vector<float>& p = model_.params();
  optimizer_update(p.data(), grads, optim_.m.data(), optim_.v.data(), int64_t(p.size()), int64_t(step));
  if (hint)  // the same optimiser, schedule and step as the model's
    optimizer_update(hint_map_.params.data(), hint_grads_.data(), hint_map_.m.data(), hint_map_.v.data(),
                     int64_t(hint_map_.params.size()), int64_t(step));
  optim_.step = int64_t(step);
  loss_sum_ += sums.loss;
  kl_sum_ += sums.kl;
  hint_sum_ += hint_distance;
  ++epoch_.steps;
}

void CpuModelEngine::optimizer_update(float* params, const float* grads, float* m, float* v, int64_t n, int64_t step) {
  if (settings_.optimizer == OptimizerKind::Adam) {
    ref::AdamParams adam = settings_.adam;
    adam.lr = scheduled_lr(adam.lr, step, settings_.lr_schedule);
    model_.ops().adam_step(params, grads, m, v, n, adam, step);
  } else {
    ref::SgdParams sgd = settings_.sgd;
    sgd.lr = scheduled_lr(sgd.lr, step, settings_.lr_schedule);
    model_.ops().sgd_momentum_step(params, grads, m, n, sgd, step);
  }
}

// The map runs on the model's ops (the fast engine's SGEMM or the reference);
// the distance is the reference's on both CPU engines (O(rows x width), next
// to nothing beside the map's GEMMs).
double CpuModelEngine::hint_step(const float* teacher_features, int rows) {
  const int ds = hint_width_, dt = settings_.hint.teacher_width;
  const float* features = model_.last_layer_input();
  const float* w = hint_map_.params.data();
  const float* bias = w + int64_t(dt) * ds;
  model_.ops().dense_forward(features, w, bias, hint_mapped_.data(), rows, ds, dt, /*relu=*/false);
  const double distance = ref::hint_loss(hint_mapped_.data(), teacher_features, hint_dmapped_.data(), nullptr, rows, dt,
                                         settings_.hint.kind, settings_.hint.weight);
  model_.ops().dense_backward(features, w, hint_dmapped_.data(), hint_dfeatures_.data(), hint_grads_.data(),
                              hint_grads_.data() + int64_t(dt) * ds, rows, ds, dt);
  return distance;
}

TrainStats CpuModelEngine::end_epoch_impl() {
  TrainStats s = epoch_;
  if (s.steps > 0) {
    s.loss = loss_sum_ / double(s.steps);
    s.kl = kl_sum_ / double(s.steps);
    s.hint = hint_sum_ / double(s.steps);
  }
  return s;
}

EvalResult CpuModelEngine::evaluate_impl(SplitId split) {
  const Dataset& data = engine_.split(split);
  const int classes = int(model_.arch().output.size());
  EvalResult r;
  double loss_sum = 0;
  for_each_slice(data, [&](int64_t, int b, const float* logits) {
    loss_sum += ref::softmax_kl(logits, nullptr, batch_y_.data(), nullptr, nullptr, b, classes, 1.0f, 0.0f).loss * b;
    r.correct += ref::count_correct(logits, batch_y_.data(), b, classes);
    r.n += b;
  });
  r.loss = r.n ? loss_sum / double(r.n) : 0;
  return r;
}

std::vector<float> CpuModelEngine::infer_all(SplitId split) {
  const Dataset& data = engine_.split(split);
  const int classes = int(model_.arch().output.size());
  std::vector<float> out(size_t(data.n) * classes);
  for_each_slice(data, [&](int64_t begin, int b, const float* logits) {
    std::copy_n(logits, size_t(b) * classes, out.data() + size_t(begin) * classes);
  });
  return out;
}

template <class Sink>
void CpuModelEngine::for_each_slice(const Dataset& data, Sink&& sink) {
  const int batch = settings_.eval_batch_size;
  std::vector<int32_t> idx(static_cast<size_t>(batch));
  for (int64_t begin = 0; begin < data.n && !interrupted(); begin += batch) {
    const int b = int(std::min<int64_t>(batch, data.n - begin));
    std::iota(idx.begin(), idx.begin() + b, int32_t(begin));
    gather(data, idx.data(), b);
    sink(begin, b, model_.forward(batch_x_.data(), b, /*training=*/false, 0, 0));
  }
}

// Times one inference forward of `batch` test images, already normalised in
// memory (as a deployed model receives them). A batch larger than the model's
// buffers (max(batch size, eval batch size) rows) runs as consecutive slices
// of that size: on a CPU wider slices only spill the caches (throughput per
// CPU-second is flat from batch 16 to 1000, bench/RESULTS.md), and the slices
// bound the activation memory (a teacher at batch 10,000 would need ~6 GB).
// Timed by time_forwards (kd/engine.h), the rule ONNX Runtime in-process is timed by too.
LatencyRecord CpuModelEngine::measure_latency_impl(int batch, int repeats) {
  const Dataset& data = engine_.split(SplitId::Test);
  const int b = latency_batch(batch, repeats, data.n);
  const int64_t values = data.values_per_image();
  std::vector<int32_t> idx(b);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<float> x(size_t(b) * values);
  ref::gather_normalize(data.images.data(), idx.data(), x.data(), b, data.pixels(), engine_.normalization());
  return time_forwards(b, repeats, [&] {
    for (int begin = 0; begin < b; begin += model_.max_batch())
      model_.forward(x.data() + size_t(begin) * values, std::min(model_.max_batch(), b - begin), false, 0, 0);
  });
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine() { return std::make_unique<CpuEngine>(/*fast=*/false, 1); }
std::unique_ptr<Engine> make_fast_cpu_engine(int threads) {
  return std::make_unique<CpuEngine>(/*fast=*/true, threads);
}

}  // namespace kd
