// One training phase: the epoch loop, its sums, progress and the best-epoch
// rule (kd/phase_runner.h).
#include "kd/phase_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "kd/interrupt.h"

namespace kd {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double s) {
  char buf[32];
  if (s < 120) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}

}  // namespace

PhaseResult train_phase(RunState& state, const PhaseSettings& ps, Phase phase, ModelEngine& model,
                        const LossConfig& loss, int epochs, uint64_t seed) {
  PhaseResult result;
  const char* name = phase_name(phase);
  const int batch = ps.batch_size;
  int first_epoch = 1;
  int64_t resume_begin = 0;
  EpochSums carried;  // the interrupted epoch's steps before the resume
  BestEpoch& best = state.best();
  best = BestEpoch{};
  if (const TrainingCheckpoint* resume = state.resume(); resume && resume->phase == phase) {
    model.set_params(resume->params);
    model.set_optim_state(resume->optim);
    // A checkpoint's map only fits a model with a hint; one without would refuse it with a clear line.
    if (!resume->hint_map.params.empty()) model.set_hint_map(resume->hint_map);
    if (resume->best_epoch > 0) {
      model.set_best(resume->best_params);
      for (const EpochRecord& e : state.history_for(phase))
        if (e.epoch == resume->best_epoch) best = BestEpoch{e.epoch, e.val_acc, e.val_loss};
    }
    first_epoch = resume->epochs_done + 1;
    resume_begin = std::min<int64_t>(state.resume_batches_done() * int64_t(batch), ps.train_n);
    carried.loss = resume->epoch_loss_sum;
    carried.kl = resume->epoch_kl_sum;
    carried.hint = resume->epoch_hint_sum;
    carried.steps = resume->epoch_steps;
    result.curve = state.history_for(phase);
    if (!ps.quiet)
      std::cout << "resuming " << name << " at epoch " << first_epoch
                << (resume_begin ? ", sample " + std::to_string(resume_begin) : "") << std::endl;
  }
  const int64_t n = ps.train_n;
  const int64_t batches = (n + batch - 1) / batch;
  const auto phase_t0 = Clock::now();
  for (int epoch = first_epoch; epoch <= epochs; ++epoch) {
    const std::vector<int32_t> order = epoch_order(n, seed, phase, epoch);
    model.begin_epoch(order, epoch);
    const auto t0 = Clock::now();
    const int64_t start = epoch == first_epoch ? resume_begin : 0;
    EpochSums sums = epoch == first_epoch ? carried : EpochSums{};
    for (int64_t begin = start; begin < n; begin += batch) {
      const int b = int(std::min<int64_t>(batch, n - begin));
      model.train_step(begin, b, loss);
      const int64_t batch_index = begin / batch + 1;
      if (ps.tty && (batch_index % 50 == 0 || batch_index == batches)) {
        const double s = seconds_since(t0);
        const double rate = double(begin + b - start) / std::max(s, 1e-9);
        std::printf("\r[%s] epoch %d/%d  batch %lld/%lld  %.0f samples/s  ETA %s   ", name, epoch, epochs,
                    (long long)batch_index, (long long)batches, rate,
                    format_duration(double(n - begin - b) / std::max(rate, 1e-9)).c_str());
        std::fflush(stdout);
      }
      state.count_step();
      if (interrupted()) {
        sums.add(model.end_epoch());  // drains the device queue
        state.stop_in_epoch(phase, epoch, model, batch_index, sums, "after batch " + std::to_string(batch_index));
      }
    }
    sums.add(model.end_epoch());
    const double secs = seconds_since(t0);
    state.stop_if_not_finite(phase, epoch, sums);
    const EvalResult val = model.evaluate(SplitId::Val);
    // The epoch's steps are done; only its validation is redone on resume.
    if (interrupted()) state.stop_in_epoch(phase, epoch, model, batches, sums, "during validation");
    EpochRecord e;
    e.phase = phase;
    e.epoch = epoch;
    e.train_loss = sums.mean_loss();
    e.train_kl = sums.mean_kl();
    e.val_loss = val.loss;
    e.val_acc = val.accuracy();
    e.seconds = secs;
    e.samples_per_s = double(n - (epoch == first_epoch ? resume_begin : 0)) / std::max(secs, 1e-9);
    result.curve.push_back(e);
    state.history().push_back(e);
    if (ps.select_best && best.beaten_by(e)) {
      model.keep_best();
      best = BestEpoch{epoch, e.val_acc, e.val_loss};
    }
    if (ps.tty) std::printf("\r%*s\r", 100, "");
    if (!ps.quiet) {
      std::string terms;  // the loss's parts beside the total
      if (loss.alpha > 0) terms += "KL " + std::to_string(e.train_kl).substr(0, 6);
      if (sums.hint > 0)  // a model with a hint: its distances are never all exactly 0
        terms += (terms.empty() ? "hint " : ", hint ") + std::to_string(sums.mean_hint()).substr(0, 6);
      std::printf("[%s] epoch %d/%d  loss %.4f%s  val loss %.4f  val acc %.2f%%  %.1fs  %.0f samples/s\n", name, epoch,
                  epochs, e.train_loss, terms.empty() ? "" : (" (" + terms + ")").c_str(), e.val_loss, 100 * e.val_acc,
                  secs, e.samples_per_s);
      std::fflush(stdout);
    }
    state.save_checkpoint(phase, epoch, 0, model);
  }
  result.train_seconds = seconds_since(phase_t0);
  result.selection = ps.select_best ? "best" : "last";
  result.selected_epoch = ps.select_best ? best.epoch : (result.curve.empty() ? 0 : result.curve.back().epoch);
  return result;
}

}  // namespace kd
