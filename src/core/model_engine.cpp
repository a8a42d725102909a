// The checks every engine's models share (kd/engine.h): arguments and call
// order, once, before the engine's implementation runs.
#include <cmath>
#include <string>

#include "kd/engine.h"
#include "kd/error.h"

namespace kd {

ModelEngine::ModelEngine(const Arch& arch, const TrainSettings& settings)
    : arch_(arch), batch_capacity_(settings.batch_size), optimizer_(settings.optimizer) {
  if (settings.batch_size < 1) fail("--batch-size must be >= 1, got " + std::to_string(settings.batch_size));
  // Inference passes advance by this much: below 1 they would never end.
  if (settings.eval_batch_size < 1)
    fail("--eval-batch-size must be >= 1, got " + std::to_string(settings.eval_batch_size));
  if (settings.hint.on()) {
    if (!(settings.hint.weight >= 0.0f) || !std::isfinite(settings.hint.weight))
      fail("--hint-weight must be a finite number >= 0, got " + std::to_string(settings.hint.weight));
    if (settings.hint.teacher_width < 1)
      fail("--hint: the teacher's feature width must be >= 1, got " + std::to_string(settings.hint.teacher_width));
    hint_map_size_ = hint_map_param_count(hint_feature_width(arch, "student"), settings.hint.teacher_width);
  }
}

void ModelEngine::begin_epoch(const std::vector<int32_t>& order, int64_t epoch) {
  if (epoch < 1) fail("begin_epoch: epoch must be >= 1 (1-based), got " + std::to_string(epoch));
  const int64_t train_n = train_images();
  for (size_t i = 0; i < order.size(); ++i)
    if (order[i] < 0 || order[i] >= train_n)
      fail("begin_epoch: order[" + std::to_string(i) + "] = " + std::to_string(order[i]) +
           " is not an index into the training split of " + std::to_string(train_n) + " images");
  begin_epoch_impl(order, epoch);
  in_epoch_ = true;
  order_size_ = int64_t(order.size());
  next_begin_ = -1;
}

void ModelEngine::train_step(int64_t begin, int b, const LossConfig& loss) {
  if (!in_epoch_) fail("train_step: no epoch begun; call begin_epoch with the epoch's order first");
  if (b < 1 || b > batch_capacity_)
    fail("train_step: batch of " + std::to_string(b) + " samples; this model was built for 1 to " +
         std::to_string(batch_capacity_));
  if (begin < 0 || begin + b > order_size_)
    fail("train_step: samples [" + std::to_string(begin) + ", " + std::to_string(begin + b) +
         ") are outside this epoch's order of " + std::to_string(order_size_));
  // The CUDA engine's captured step takes its samples from a device cursor
  // that only ever advances by b; every engine keeps the same contract.
  if (next_begin_ >= 0 && begin != next_begin_)
    fail("train_step: begin = " + std::to_string(begin) + ", but the epoch's previous step ended at " +
         std::to_string(next_begin_) + "; steps within an epoch must take consecutive ranges of the order");
  if (!(loss.temperature > 0.0f) || !std::isfinite(loss.temperature) || !(loss.alpha >= 0.0f && loss.alpha <= 1.0f))
    fail("train_step: need temperature > 0 and alpha in [0, 1], got T = " + std::to_string(loss.temperature) +
         ", alpha = " + std::to_string(loss.alpha));
  if (b < data_parallel_ranks_)
    fail("train_step: a batch of " + std::to_string(b) + " samples cannot be shared by " +
         std::to_string(data_parallel_ranks_) + " data-parallel ranks (each needs at least one)");
  train_step_impl(begin, b, loss);
  next_begin_ = begin + b;
}

void ModelEngine::set_data_parallel(Comm& comm) {
  if (in_epoch_) fail("set_data_parallel: call it before the first begin_epoch, not within an epoch");
  // The ranks' shares would need the map's gradient summed with the model's.
  if (hint_map_size_ > 0) fail("--data-parallel: the hint map does not train data-parallel yet; use --hint off");
  set_data_parallel_impl(comm);
  data_parallel_ranks_ = comm.size();
}

void ModelEngine::set_data_parallel_impl(Comm&) {
  fail(
      "--data-parallel: this engine does not train data-parallel (the CUDA engine waits for NCCL, docs/mpi.md); "
      "use --device cpu or --device reference");
}

TrainStats ModelEngine::end_epoch() { return end_epoch_impl(); }

void ModelEngine::set_params(const std::vector<float>& params) {
  if (int64_t(params.size()) != arch_.param_count)
    fail("set_params: " + std::to_string(params.size()) + " values for a model of " +
         std::to_string(arch_.param_count) + " parameters");
  set_params_impl(params);
}

void ModelEngine::set_optim_state(const OptimState& state) {
  const size_t n = size_t(arch_.param_count);
  const size_t v_expected = optimizer_ == OptimizerKind::Adam ? n : 0;
  if (state.m.size() != n || state.v.size() != v_expected)
    fail("optimiser state does not match the model (" + std::to_string(state.m.size()) + " moments for " +
         std::to_string(n) + " parameters): was it saved with another --optimizer or arch?");
  if (state.step < 0) fail("optimiser state has a negative step count (" + std::to_string(state.step) + ")");
  set_optim_state_impl(state);
}

void ModelEngine::set_hint_map(const HintMapState& state) {
  if (hint_map_size_ == 0) fail("set_hint_map: this model trains no hint (created with --hint off)");
  const size_t n = size_t(hint_map_size_);
  const size_t v_expected = optimizer_ == OptimizerKind::Adam ? n : 0;
  if (state.params.size() != n || state.m.size() != n || state.v.size() != v_expected)
    fail("hint map state does not match the model (" + std::to_string(state.params.size()) + " values for a map of " +
         std::to_string(n) + "): was it saved with another --student-arch, teacher or --optimizer?");
  set_hint_map_impl(state);
}

void ModelEngine::keep_best() {
  keep_best_impl();
  has_best_ = true;
}

void ModelEngine::restore_best() {
  if (!has_best_) fail("restore_best: no parameters were kept (keep_best was never called)");
  restore_best_impl();
}

std::vector<float> ModelEngine::get_best() { return has_best_ ? get_best_impl() : std::vector<float>{}; }

void ModelEngine::set_best(const std::vector<float>& params) {
  if (int64_t(params.size()) != arch_.param_count)
    fail("set_best: " + std::to_string(params.size()) + " values for a model of " + std::to_string(arch_.param_count) +
         " parameters");
  set_best_impl(params);
  has_best_ = true;
}

}  // namespace kd
