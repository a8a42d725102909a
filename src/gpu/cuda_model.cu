// CudaModel: training steps as CUDA graphs, epoch bookkeeping on the device,
// evaluation, latency and state transfer (see cuda_model.h).
#include "cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "epoch_cursor.h"
#include "kd/cuda_timer.h"
#include "kd/data.h"
#include "kd/interrupt.h"

namespace kd::cuda {
namespace {

// Forward passes run before timing, so clocks, caches and lazy module loading settle.
constexpr int kLatencyWarmup = 5;
// The memory check's allowance for cuDNN workspaces: the cap kernels/conv.cu
// puts on one plan's workspace. An upper bound for one plan, not exact.
constexpr int64_t kConvWorkspaceAllowance = int64_t(512) << 20;

// Batches (hence mixup draws) of an epoch of `samples` samples, the partial last one included.
int64_t mixup_steps(int64_t samples, int batch_size) { return (samples + batch_size - 1) / batch_size; }

}  // namespace

CudaModel::CudaModel(EngineContext& context, const Arch& arch, const std::vector<float>& params,
                     const TrainSettings& settings)
    : ModelEngine(arch, settings),
      context_(context),
      settings_(settings),
      net_(arch, settings, context),
      classes_(int(arch.output.size())) {
  if (context.loaded() && classes_ < context.num_classes())
    fail("model '" + arch.text + "' has " + std::to_string(classes_) + " outputs but the data has " +
         std::to_string(context.num_classes()) + " classes");
  const size_t n = size_t(net_.layout().count());
  const bool adam = settings.optimizer == OptimizerKind::Adam;
  params_.allocate(n, "parameters");
  grads_.allocate(n, "parameter gradients");
  moment1_.allocate(n, adam ? "Adam first moments" : "SGD momentum buffer");
  if (adam) moment2_.allocate(n, "Adam second moments");
  step_counter_.allocate(1, "step counter");
  const cudaStream_t stream = context_.stream();
  // The gaps between tensors: their gradients are never written, so they stay 0 and so do the gaps' moments.
  KD_CUDA_CHECK(cudaMemsetAsync(grads_.data(), 0, grads_.bytes(), stream));
  KD_CUDA_CHECK(cudaMemsetAsync(moment1_.data(), 0, moment1_.bytes(), stream));
  if (adam) KD_CUDA_CHECK(cudaMemsetAsync(moment2_.data(), 0, moment2_.bytes(), stream));
  KD_CUDA_CHECK(cudaMemsetAsync(step_counter_.data(), 0, step_counter_.bytes(), stream));
  set_params(params);

  const size_t batch = size_t(settings.batch_size);
  train_acts_ = net_.training_activations(settings.batch_size);
  train_samples_.allocate(batch, "training batch sample indices");
  train_labels_.allocate(batch, "training batch labels");
  row_loss_.allocate(batch, "training batch row losses");
  row_kl_.allocate(batch, "training batch row KL terms");
  step_means_.allocate(3, "step loss means");
  if (settings.hint.on()) {
    const int dt = settings.hint.teacher_width;
    hint_width_ = hint_feature_width(arch, "student");
    const std::vector<float> map = init_hint_map(hint_width_, dt, settings.seed);
    hint_params_.allocate(map.size(), "hint map");
    hint_grads_.allocate(map.size(), "hint map gradients");
    hint_m_.allocate(map.size(), adam ? "hint map Adam first moments" : "hint map SGD momentum");
    if (adam) hint_v_.allocate(map.size(), "hint map Adam second moments");
    copy_to_device(hint_params_.data(), map.data(), map.size(), stream);
    KD_CUDA_CHECK(cudaMemsetAsync(hint_m_.data(), 0, hint_m_.bytes(), stream));
    if (adam) KD_CUDA_CHECK(cudaMemsetAsync(hint_v_.data(), 0, hint_v_.bytes(), stream));
    hint_mapped_.allocate(batch * dt, "hint mapped features");
    hint_dmapped_.allocate(batch * dt, "hint mapped-feature gradients");
    hint_dfeatures_.allocate(batch * size_t(hint_width_), "hint feature gradients");
    row_hint_.allocate(batch, "training batch row hint distances");
  }
  cursor_.allocate(1, "epoch cursor");
  epoch_step_.allocate(1, "epoch step count");
  epoch_number_.allocate(1, "epoch number");
  if (settings.mixup > 0) {
    partner_labels_.allocate(batch, "training batch partner labels (mixup)");
    step_draw_.allocate(1, "this step's mixup draw");
  }
  if (context.loaded()) reserve_epoch(size_t(context.split(SplitId::Train).n));
  eval_batch_mean_.allocate(1, "evaluation batch loss");
  eval_loss_sum_.allocate(1, "evaluation loss sum");
  eval_correct_.allocate(1, "evaluation correct count");
}

MemoryNeed CudaModel::memory_need(EngineContext& context, const Arch& arch, const TrainSettings& settings,
                                  bool online_teacher) {
  const CudaNetwork net(arch, settings, context);
  const int64_t f = sizeof(float), p = arch.param_count;
  const int64_t moments = settings.optimizer == OptimizerKind::Adam ? 2 : 1;
  const int64_t train_n = context.loaded() ? context.split(SplitId::Train).n : 0;
  MemoryNeed need;
  // params_, grads_, moments, best_; order_, epoch_loss_, epoch_kl_ (train n each); mixup's epoch_draws_
  need.state = (3 + moments) * p * f + train_n * (int64_t(sizeof(int32_t)) + 2 * f) +
               (settings.mixup > 0 ? mixup_steps(train_n, settings.batch_size) * int64_t(sizeof(MixupDraw)) : 0);
  const bool conv =
      std::any_of(arch.layers.begin(), arch.layers.end(), [](const Layer& l) { return l.kind == LayerKind::Conv; });
  need.workspace = conv ? kConvWorkspaceAllowance : 0;
  // + train_samples_, train_labels_, row_loss_, row_kl_ (4 bytes each per row), mixup's partner_labels_
  need.train_activations =
      net.activation_bytes(settings.batch_size, true) + int64_t(settings.batch_size) * (settings.mixup > 0 ? 20 : 16);
  if (settings.hint.on()) {
    // The map of student width ds to teacher width dt: its (dt*ds + dt)
    // parameters, gradient and moments, and epoch_hint_ (train n); per
    // training row the mapped features and their gradient (dt each), the
    // features' gradient (ds) and the row's distance: 4 bytes each.
    const int64_t dt = settings.hint.teacher_width, ds = hint_feature_width(arch, "student");
    need.state += (2 + moments) * hint_map_param_count(int(ds), int(dt)) * f + train_n * f;
    need.train_activations += int64_t(settings.batch_size) * (2 * dt + ds + 1) * f;
  }
  // The online teacher's inference set for the students' batches
  // (prepare_online): LayerPlan's inference bytes at the training batch,
  // batch * (4 * (input + 2 * widest stored layer) + widest max-pool mask).
  if (online_teacher) need.train_activations += net.activation_bytes(settings.batch_size, false);
  // One inference set, grown to the larger of the two batches (labels and row losses: 8 bytes per row).
  const int rows = std::max(settings.eval_batch_size, settings.max_latency_batch);
  const int64_t inference = net.activation_bytes(rows, false) + int64_t(rows) * 8;
  if (rows == settings.eval_batch_size) need.eval_activations = inference;
  else need.latency_activations = inference;
  return need;
}

CudaModel::~CudaModel() {
  cudaStreamSynchronize(context_.stream());  // queued steps may still use the buffers freed next
}

// order_, epoch_loss_, epoch_kl_ for epochs of up to `steps` samples (hence
// steps). Captured graphs hold their addresses, so they go when these move.
void CudaModel::reserve_epoch(size_t steps) {
  if (steps <= order_.size()) return;
  KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
  graphs_.clear();
  order_.allocate(steps, "epoch sample order");
  epoch_loss_.allocate(steps, "per-step losses of an epoch");
  epoch_kl_.allocate(steps, "per-step KL terms of an epoch");
  if (settings_.hint.on()) epoch_hint_.allocate(steps, "per-step hint distances of an epoch");
  if (settings_.mixup > 0)
    epoch_draws_.allocate(size_t(mixup_steps(int64_t(steps), settings_.batch_size)), "mixup draws of an epoch");
}

namespace {
// Whole-buffer copies in the packed layout of `layout`.
void upload_packed(const ParamLayout& layout, DeviceBuffer<float>& device, const std::vector<float>& packed,
                   cudaStream_t stream) {
  const std::vector<float> aligned = layout.to_device(packed);
  copy_to_device(device.data(), aligned.data(), aligned.size(), stream);
}
std::vector<float> download_packed(const ParamLayout& layout, const DeviceBuffer<float>& device, cudaStream_t stream) {
  std::vector<float> aligned(device.size());
  copy_to_host(aligned.data(), device.data(), aligned.size(), stream);
  return layout.to_packed(aligned);
}
}  // namespace

void CudaModel::set_params_impl(const std::vector<float>& params) {
  upload_packed(net_.layout(), params_, params, context_.stream());
}

std::vector<float> CudaModel::get_params_impl() { return download_packed(net_.layout(), params_, context_.stream()); }

void CudaModel::keep_best_impl() {
  if (best_.size() != params_.size()) {
    KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));  // allocating may not overtake queued steps
    best_.allocate(params_.size(), "best epoch's parameters (--select best)");
  }
  KD_CUDA_CHECK(
      cudaMemcpyAsync(best_.data(), params_.data(), params_.bytes(), cudaMemcpyDeviceToDevice, context_.stream()));
}

void CudaModel::restore_best_impl() {
  KD_CUDA_CHECK(
      cudaMemcpyAsync(params_.data(), best_.data(), params_.bytes(), cudaMemcpyDeviceToDevice, context_.stream()));
}

std::vector<float> CudaModel::get_best_impl() { return download_packed(net_.layout(), best_, context_.stream()); }

void CudaModel::set_best_impl(const std::vector<float>& params) {
  if (best_.size() != params_.size()) {
    KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
    best_.allocate(params_.size(), "best epoch's parameters (--select best)");
  }
  upload_packed(net_.layout(), best_, params, context_.stream());
}

OptimState CudaModel::get_optim_state_impl() {
  OptimState s;
  s.m = download_packed(net_.layout(), moment1_, context_.stream());
  s.v = download_packed(net_.layout(), moment2_, context_.stream());
  s.step = step_;
  return s;
}

void CudaModel::set_optim_state_impl(const OptimState& state) {
  const cudaStream_t stream = context_.stream();
  upload_packed(net_.layout(), moment1_, state.m, stream);
  if (!state.v.empty()) upload_packed(net_.layout(), moment2_, state.v, stream);
  const uint64_t step = uint64_t(state.step);
  copy_to_device(step_counter_.data(), &step, 1, stream);
  step_ = state.step;
}

HintMapState CudaModel::get_hint_map_impl() {
  HintMapState s;
  s.params.resize(hint_params_.size());
  s.m.resize(hint_m_.size());
  s.v.resize(hint_v_.size());
  copy_to_host(s.params.data(), hint_params_.data(), s.params.size(), context_.stream());
  copy_to_host(s.m.data(), hint_m_.data(), s.m.size(), context_.stream());
  copy_to_host(s.v.data(), hint_v_.data(), s.v.size(), context_.stream());
  return s;
}

void CudaModel::set_hint_map_impl(const HintMapState& state) {
  copy_to_device(hint_params_.data(), state.params.data(), state.params.size(), context_.stream());
  copy_to_device(hint_m_.data(), state.m.data(), state.m.size(), context_.stream());
  copy_to_device(hint_v_.data(), state.v.data(), state.v.size(), context_.stream());
}

// ------------------------------------------------------------------ training

void CudaModel::begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) {
  reserve_epoch(order.size());
  copy_to_device(order_.data(), order.data(), order.size(), context_.stream());
  const uint64_t number = uint64_t(epoch);
  copy_to_device(epoch_number_.data(), &number, 1, context_.stream());
  const int64_t batch = settings_.batch_size, samples = int64_t(order.size());
  if (settings_.mixup > 0) {  // every batch's draw, host-drawn (kd/augment.h); the step graph picks its own
    std::vector<MixupDraw> draws(size_t(mixup_steps(samples, settings_.batch_size)));
    for (size_t k = 0; k < draws.size(); ++k) {
      const int64_t begin = int64_t(k) * batch;
      draws[k] = mixup_draw(settings_.mixup, settings_.seed, number, begin, int(std::min(batch, samples - begin)));
    }
    copy_to_device(epoch_draws_.data(), draws.data(), draws.size(), context_.stream());
  }
  // Plans for the epoch's batch sizes (full, and the partial last one) are
  // made here: a cuDNN search or a dense timing inside the epoch would stall it.
  if (samples >= batch) net_.plan(int(batch), PlanUse::Training);
  if (samples % batch != 0) net_.plan(int(samples % batch), PlanUse::Training);
  cursor_placed_ = false;
  epoch_steps_ = 0;
}

void CudaModel::prepare_online(int b) {
  if (online_acts_.capacity < settings_.batch_size) {
    KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
    online_acts_ = net_.inference_activations(settings_.batch_size);
  }
  if (b > online_acts_.capacity)
    fail("online soft targets: a student batch of " + std::to_string(b) + " exceeds the teacher's " +
         std::to_string(online_acts_.capacity));
  net_.plan(b, PlanUse::Inference);
}

const float* CudaModel::enqueue_online_logits(const float* x, int b, cudaStream_t stream) {
  KD_CUDA_CHECK(cudaMemcpyAsync(online_acts_.input.data(), x, size_t(b) * net_.arch().input.size() * sizeof(float),
                                cudaMemcpyDeviceToDevice, stream));
  return net_.forward(params_.data(), online_acts_, net_.plan(b, PlanUse::Inference), b, nullptr, stream);
}

void CudaModel::train_step_impl(int64_t begin, int b, const LossConfig& loss) {
  const bool distill = loss.alpha > 0.0f, hint = settings_.hint.on();
  CudaModel* const online = distill || hint ? context_.online_teacher() : nullptr;
  if (hint) {
    if (online == nullptr)
      fail("--hint: the teacher's features come from its run on each training batch; add --soft-targets online");
    if (hint_feature_width(online->arch(), "teacher") != settings_.hint.teacher_width)
      fail("--hint: the online teacher '" + online->arch().text + "' does not have the " +
           std::to_string(settings_.hint.teacher_width) + " features this student's hint map was made for");
    // Timed (Auto) outside any capture, like the network's own dense layers.
    hint_impl_ = context_.dense_impl(settings_.dense_impl, settings_.deterministic, b, hint_width_,
                                     settings_.hint.teacher_width, false, PlanUse::Training);
  }
  if (online != nullptr) {
    if (online->arch().input.size() != net_.arch().input.size() || online->classes_ != classes_)
      fail("online soft targets: the teacher '" + online->arch().text +
           "' does not take this student's inputs and classes");
    online->prepare_online(b);  // allocation and algorithm choice, never inside a capture
  } else if (distill) {
    if (context_.soft_targets() == nullptr)
      fail("distillation step without soft targets: compute_soft_targets was not called");
    if (context_.soft_target_classes() != classes_)
      fail("distillation: the soft targets have " + std::to_string(context_.soft_target_classes()) +
           " classes, the student " + std::to_string(classes_));
  }

  const cudaStream_t stream = context_.stream();
  // Algorithm searches happen here, never inside a capture.
  const CudaNetwork::BatchPlan& plan = net_.plan(b, PlanUse::Training);
  if (!cursor_placed_) {
    if (settings_.mixup > 0 && begin % settings_.batch_size != 0)
      fail(
          "train_step: with mixup the CUDA engine reads each batch's draw by batch number, so an epoch must "
          "resume at a multiple of the batch size " +
          std::to_string(settings_.batch_size) + ", got begin = " + std::to_string(begin));
    start_epoch_cursor(cursor_.data(), epoch_step_.data(), begin, stream);
    cursor_placed_ = true;
    // Here, not in begin_epoch: set_optim_state may move the step count in
    // between, and the CPU engine numbers a bad step by the count at that step.
    epoch_first_step_ = step_;
  }
  const float* const targets = online != nullptr ? online->online_input() : context_.soft_targets();
  const GraphKey key{b, loss.temperature, loss.alpha, distill || hint ? targets : nullptr};
  const auto graph = graphs_.find(key);
  if (graph != graphs_.end()) {
    graph->second.launch(stream);
  } else if (context_.execution() == StepExecution::Eager || uncapturable_.count(key) != 0 ||
             ran_eagerly_.insert(key).second) {
    // A key's first step runs eagerly even under Graph, so that the libraries'
    // lazy set-up (cuBLASLt plans, module loading) happens outside a capture.
    enqueue_train_step(plan, b, loss);
  } else {
    std::string why;
    std::optional<CudaGraph> captured = CudaGraph::try_capture(
        stream, [&] { enqueue_train_step(plan, b, loss); }, why);
    if (captured) {
      graphs_.emplace(key, std::move(*captured)).first->second.launch(stream);
    } else {
      // Nothing of the failed capture ran: this step, and every later one of
      // this key, is enqueued eagerly instead.
      uncapturable_.insert(key);
      std::fprintf(stderr,
                   "kdtrain: warning: CUDA graph capture of the training step at batch %d (%s) failed: %s. Steps "
                   "at this batch size now run eagerly (same results, more launch overhead).\n",
                   b, net_.arch().text.c_str(), why.c_str());
      enqueue_train_step(plan, b, loss);
    }
  }
  ++step_;
  ++epoch_steps_;
}

// Everything a step does, in the CPU engine's order. Nothing here may
// allocate, synchronise or search: it is what a graph captures.
void CudaModel::enqueue_train_step(const CudaNetwork::BatchPlan& plan, int b, const LossConfig& loss) {
  const cudaStream_t stream = context_.stream();
  const DeviceSplit& train = context_.split(SplitId::Train);
  const bool distill = loss.alpha > 0.0f, hint = settings_.hint.on();
  increment_counter(step_counter_.data(), stream);  // *step = 1-based count of this update
  take_batch_indices(order_.data(), cursor_.data(), train_samples_.data(), b, stream);
  const Shape& in = net_.arch().input;  // begin_epoch checked (train_images) that it matches the data
  const bool mixup = settings_.mixup > 0;
  if (mixup) {
    take_step_draw(epoch_draws_.data(), cursor_.data(), settings_.batch_size, step_draw_.data(), stream);
    mixup_gather_normalize(train.images.data(), train.labels.data(), train_samples_.data(), train_acts_.input.data(),
                           train_labels_.data(), partner_labels_.data(), b, in.h, in.w, context_.normalization(),
                           settings_.augment, settings_.seed, epoch_number_.data(), step_draw_.data(), stream);
  } else {
    augment_gather_normalize(train.images.data(), train.labels.data(), train_samples_.data(), train_acts_.input.data(),
                             train_labels_.data(), b, in.h, in.w, context_.normalization(), settings_.augment,
                             settings_.seed, epoch_number_.data(), stream);
  }
  CudaModel* const online = distill || hint ? context_.online_teacher() : nullptr;
  // The teacher sees exactly the student's (augmented) batch; its rows are the batch's, in order.
  const float* online_logits =
      online != nullptr ? online->enqueue_online_logits(train_acts_.input.data(), b, stream) : nullptr;
  const float* logits = net_.forward(params_.data(), train_acts_, plan, b, step_counter_.data(), stream);

  SoftmaxKlArgs args;
  args.s = logits;
  args.t = !distill ? nullptr : online_logits != nullptr ? online_logits : context_.soft_targets();
  // cached soft targets are read by training-split index
  args.t_rows = distill && online_logits == nullptr ? train_samples_.data() : nullptr;
  args.labels = train_labels_.data();
  args.partner_labels = mixup ? partner_labels_.data() : nullptr;
  args.mix = mixup ? step_draw_.data() : nullptr;
  args.grad = train_acts_.grad_a.data();
  args.row_loss = row_loss_.data();
  args.row_kl = distill ? row_kl_.data() : nullptr;
  args.b = b;
  args.c = classes_;
  args.temperature = loss.temperature;
  args.alpha = loss.alpha;
  softmax_kl(args, stream);
  float* const mean_loss = step_means_.data();
  float* const mean_kl = step_means_.data() + 1;
  float* const mean_hint = step_means_.data() + 2;
  if (hint) enqueue_hint(online->online_features(), b, stream);
  mean_reduce(row_loss_.data(), b, mean_loss, stream);
  if (distill) mean_reduce(row_kl_.data(), b, mean_kl, stream);
  if (hint) mean_reduce(row_hint_.data(), b, mean_hint, stream);

  net_.backward(params_.data(), grads_.data(), train_acts_, plan, b, stream, hint ? hint_dfeatures_.data() : nullptr);
  const int64_t n = int64_t(params_.size());  // the gaps of the aligned layout too: their gradients are 0
  if (settings_.optimizer == OptimizerKind::Adam)
    adam_step(params_.data(), grads_.data(), moment1_.data(), moment2_.data(), n, settings_.adam, settings_.lr_schedule,
              step_counter_.data(), stream);
  else
    sgd_momentum_step(params_.data(), grads_.data(), moment1_.data(), n, settings_.sgd, settings_.lr_schedule,
                      step_counter_.data(), stream);
  if (hint && settings_.optimizer == OptimizerKind::Adam)  // the same optimiser, schedule and step as the model's
    adam_step(hint_params_.data(), hint_grads_.data(), hint_m_.data(), hint_v_.data(), int64_t(hint_params_.size()),
              settings_.adam, settings_.lr_schedule, step_counter_.data(), stream);
  else if (hint)
    sgd_momentum_step(hint_params_.data(), hint_grads_.data(), hint_m_.data(), int64_t(hint_params_.size()),
                      settings_.sgd, settings_.lr_schedule, step_counter_.data(), stream);
  finish_step(mean_loss, distill ? mean_kl : nullptr, hint ? mean_hint : nullptr, epoch_loss_.data(), epoch_kl_.data(),
              epoch_hint_.data(), epoch_step_.data(), cursor_.data(), b, stream);
}

void CudaModel::enqueue_hint(const float* teacher_features, int b, cudaStream_t stream) {
  const int ds = hint_width_, dt = settings_.hint.teacher_width;
  const float* features = net_.last_layer_input(train_acts_);
  const float* w = hint_params_.data();
  const float* bias = w + int64_t(dt) * ds;
  dense_forward(context_.dense(), hint_impl_, features, w, bias, hint_mapped_.data(), b, ds, dt, false, stream);
  hint_loss(hint_mapped_.data(), teacher_features, hint_dmapped_.data(), row_hint_.data(), row_loss_.data(), b, dt,
            settings_.hint.kind, settings_.hint.weight, stream);
  dense_backward(context_.dense(), hint_impl_, features, w, hint_dmapped_.data(), hint_dfeatures_.data(), false,
                 hint_grads_.data(), hint_grads_.data() + int64_t(dt) * ds, b, ds, dt, stream);
}

TrainStats CudaModel::end_epoch_impl() {
  // Drains the queue even when no step ran: callers read parameters next.
  KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
  TrainStats stats;
  stats.steps = epoch_steps_;
  if (epoch_steps_ == 0) return stats;
  const size_t steps = static_cast<size_t>(epoch_steps_);
  std::vector<float> losses(steps), kls(steps), hints(settings_.hint.on() ? steps : 0);
  copy_to_host(losses.data(), epoch_loss_.data(), losses.size(), context_.stream());
  copy_to_host(kls.data(), epoch_kl_.data(), kls.size(), context_.stream());
  copy_to_host(hints.data(), epoch_hint_.data(), hints.size(), context_.stream());
  double loss_sum = 0, kl_sum = 0, hint_sum = 0;
  for (float h : hints) hint_sum += h;
  stats.hint = hint_sum / double(epoch_steps_);
  for (size_t k = 0; k < losses.size(); ++k) {
    if (!std::isfinite(losses[k]) && stats.finite) {
      stats.finite = false;
      stats.first_bad_step = epoch_first_step_ + int64_t(k);
    }
    loss_sum += losses[k];
    kl_sum += kls[k];
  }
  stats.loss = loss_sum / double(epoch_steps_);
  stats.kl = kl_sum / double(epoch_steps_);
  return stats;
}

// ------------------------------------------------------------------ inference

const DeviceSplit& CudaModel::input_split(SplitId split) const {
  const DeviceSplit& data = context_.split(split);
  if (data.n > 0 && data.values_per_image != net_.arch().input.size())
    fail("model '" + net_.arch().text + "' takes " + std::to_string(net_.arch().input.size()) +
         " values per image, the data has " + std::to_string(data.values_per_image));
  return data;
}

void CudaModel::ensure_inference_capacity(int b) {
  if (inference_.acts.capacity >= b) return;
  KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));
  inference_ = InferenceBuffers{};  // free the smaller buffers before allocating the larger ones
  inference_.acts = net_.inference_activations(b);
  inference_.labels.allocate(size_t(b), "inference batch labels");
  inference_.row_loss.allocate(size_t(b), "inference batch row losses");
}

template <typename Visit>
int64_t CudaModel::for_each_inference_batch(const DeviceSplit& split, Visit&& visit) {
  const cudaStream_t stream = context_.stream();
  const int batch = int(std::min<int64_t>(settings_.eval_batch_size, split.n));
  ensure_inference_capacity(batch);
  int64_t begin = 0;
  for (; begin < split.n && !interrupted(); begin += batch) {
    const int b = int(std::min<int64_t>(batch, split.n - begin));
    const CudaNetwork::BatchPlan& plan = net_.plan(b, PlanUse::Inference);
    gather_normalize(split.images.data(), split.labels.data(), context_.identity_order() + begin,
                     inference_.acts.input.data(), inference_.labels.data(), b, split.plane, context_.normalization(),
                     stream);
    visit(net_.forward(params_.data(), inference_.acts, plan, b, nullptr, stream), begin, b);
  }
  return std::min(begin, split.n);
}

EvalResult CudaModel::evaluate_impl(SplitId split) {
  const DeviceSplit& data = input_split(split);
  EvalResult r;
  if (data.n == 0) return r;
  const cudaStream_t stream = context_.stream();
  KD_CUDA_CHECK(cudaMemsetAsync(eval_loss_sum_.data(), 0, eval_loss_sum_.bytes(), stream));
  KD_CUDA_CHECK(cudaMemsetAsync(eval_correct_.data(), 0, eval_correct_.bytes(), stream));
  r.n = for_each_inference_batch(data, [&](const float* logits, int64_t, int b) {
    SoftmaxKlArgs args;  // alpha = 0, T = 1: the per-row cross-entropy
    args.s = logits;
    args.labels = inference_.labels.data();
    args.row_loss = inference_.row_loss.data();
    args.b = b;
    args.c = classes_;
    softmax_kl(args, stream);
    mean_reduce(inference_.row_loss.data(), b, eval_batch_mean_.data(), stream);
    accumulate_scalar(eval_batch_mean_.data(), double(b), eval_loss_sum_.data(), stream);
    accumulate_correct(logits, inference_.labels.data(), b, classes_, eval_correct_.data(), stream);
  });
  double loss_sum = 0;
  unsigned long long correct = 0;
  copy_to_host(&loss_sum, eval_loss_sum_.data(), 1, stream);
  copy_to_host(&correct, eval_correct_.data(), 1, stream);
  r.loss = r.n ? loss_sum / double(r.n) : 0;
  r.correct = int64_t(correct);
  return r;
}

void CudaModel::infer_split(SplitId split, float* logits) {
  const DeviceSplit& data = input_split(split);
  const cudaStream_t stream = context_.stream();
  for_each_inference_batch(data, [&](const float* batch_logits, int64_t begin, int b) {
    KD_CUDA_CHECK(cudaMemcpyAsync(logits + begin * classes_, batch_logits, size_t(b) * classes_ * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream));
  });
}

LatencyRecord CudaModel::measure_latency_impl(int batch, int repeats) {
  const DeviceSplit& test = input_split(SplitId::Test);
  const int b = latency_batch(batch, repeats, test.n);
  const cudaStream_t stream = context_.stream();
  ensure_inference_capacity(b);
  const CudaNetwork::BatchPlan& plan = net_.plan(b, PlanUse::Inference);
  gather_normalize(test.images.data(), test.labels.data(), context_.identity_order(), inference_.acts.input.data(),
                   inference_.labels.data(), b, test.plane, context_.normalization(), stream);
  for (int i = 0; i < kLatencyWarmup; ++i) net_.forward(params_.data(), inference_.acts, plan, b, nullptr, stream);
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  // One forward at a time from an idle stream, as a single request would see it.
  EventTimer timer;
  std::vector<double> ms;
  for (int r = 0; r < repeats && !(r > 0 && interrupted()); ++r)
    ms.push_back(
        timer.milliseconds(stream, [&] { net_.forward(params_.data(), inference_.acts, plan, b, nullptr, stream); }));
  return latency_stats(b, std::move(ms));
}

}  // namespace kd::cuda
