// Resume and stop: checkpoints, their settings fingerprint, and the messages
// of an early stop (kd/run_state.h).
#include "kd/run_state.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "kd/error.h"
#include "kd/interrupt.h"

namespace fs = std::filesystem;

namespace kd {

void EpochSums::add(const TrainStats& s) {
  loss += s.loss * double(s.steps);
  kl += s.kl * double(s.steps);
  steps += s.steps;
  if (!s.finite && finite) finite = false, first_bad_step = s.first_bad_step;
}

std::string options_fingerprint(const Options& o) {
  std::ostringstream s;
  s << "seed=" << o.seed << " batch=" << o.batch_size << " lr=" << o.lr << " optimizer=" << int(o.optimizer)
    << " momentum=" << o.momentum << " T=" << o.temperature << " alpha=" << o.alpha << " teacher=" << o.teacher_arch
    << " student=" << o.student_arch << " val=" << o.val_size << " limit=" << o.train_limit
    << " select=" << select_rule_name(o.select)
    << " data=" << fs::weakly_canonical(o.data_dir).string();
  return s.str();
}

RunState::RunState(const Options& opt) : opt_(opt) {
  if (const char* n = std::getenv("KD_TEST_INTERRUPT_AFTER_STEPS")) interrupt_after_steps_ = std::atoll(n);
}

std::string RunState::resume_hint() const {
  return "Resume with: kdtrain " + std::string(command_name(opt_.command)) + " --resume " + out_dir_ +
         " (and the same flags)";
}

void RunState::load_resume_checkpoint() {
  if (opt_.resume_dir.empty()) return;
  const std::string path = opt_.resume_dir + "/checkpoint.safetensors";
  if (!fs::exists(path))
    fail("--resume: no checkpoint at " + path + " (the run finished, or never wrote one)");
  auto ck = std::make_unique<TrainingCheckpoint>(load_training_checkpoint(path));
  const std::string& fp = ck->options_fingerprint;
  const size_t pos = fp.rfind(" batches_done=");
  if (pos == std::string::npos) fail(path + ": checkpoint has no batch position");
  if (fp.substr(0, pos) != options_fingerprint(opt_))
    fail("--resume: " + path + " was written with other settings (" + fp.substr(0, pos) +
         "); pass the same flags as the interrupted run");
  resume_batches_done_ = std::stoll(fp.substr(pos + 14));
  history_ = parse_metrics_csv_rows(ck->history_csv);
  resume_ = std::move(ck);
}

std::vector<EpochRecord> RunState::history_for(Phase phase) const {
  std::vector<EpochRecord> out;
  for (const EpochRecord& e : history_)
    if (e.phase == phase) out.push_back(e);
  return out;
}

void RunState::save_checkpoint(Phase phase, int epochs_done, int64_t batches_done, ModelEngine& model,
                               const EpochSums& sums) {
  if (!sweep_stop_note_.empty()) return;  // a sweep's student is not continued: it trains again
  TrainingCheckpoint ck;
  ck.phase = phase;
  ck.epochs_done = epochs_done;
  ck.seed = opt_.seed;
  ck.arch = model.arch();
  ck.params = model.get_params();
  ck.optim = model.get_optim_state();
  for (const EpochRecord& e : history_) ck.history_csv += metrics_csv_row(e);
  ck.epoch_loss_sum = sums.loss;
  ck.epoch_kl_sum = sums.kl;
  ck.epoch_steps = sums.steps;
  ck.best_epoch = best_.epoch;
  if (best_.epoch > 0) ck.best_params = model.get_best();
  ck.options_fingerprint = options_fingerprint(opt_) + " batches_done=" + std::to_string(batches_done);
  save_training_checkpoint(checkpoint_path(), ck);
}

void RunState::stop_if_not_finite(Phase phase, int epoch, const EpochSums& sums) const {
  if (sums.finite) return;
  const std::string what = std::string(phase_name(phase)) + " training: non-finite loss at step " +
                           std::to_string(sums.first_bad_step + 1) + " (epoch " + std::to_string(epoch) +
                           "); stopped.";
  if (!sweep_stop_note_.empty())
    fail(what + " Try a smaller --lr, or leave this configuration out: " + sweep_stop_note_);
  fail(what + " The last good checkpoint is " +
       (fs::exists(checkpoint_path()) ? checkpoint_path() : std::string("(none: failed in the first epoch)")) +
       ". Try a smaller --lr.");
}

void RunState::stop_in_epoch(Phase phase, int epoch, ModelEngine& model, int64_t batches_done,
                             const EpochSums& sums, const std::string& where) {
  stop_if_not_finite(phase, epoch, sums);  // never a checkpoint of diverged weights
  std::fflush(stdout);
  const std::string what = "interrupted (" + std::string(interrupt_reason()) + ") during " + phase_name(phase) +
                           " epoch " + std::to_string(epoch) + " " + where;
  if (!sweep_stop_note_.empty()) fail(what + "; " + sweep_stop_note_);
  save_checkpoint(phase, epoch - 1, batches_done, model, sums);
  fail(what + "; checkpoint written to " + checkpoint_path() + ". " + resume_hint());
}

void RunState::stop_if_interrupted(const std::string& during) const {
  if (!interrupted()) return;
  std::fflush(stdout);
  const std::string what = "interrupted (" + std::string(interrupt_reason()) + ") during " + during;
  if (!sweep_stop_note_.empty()) fail(what + "; " + sweep_stop_note_);
  if (fs::exists(checkpoint_path())) fail(what + "; the last checkpoint is " + checkpoint_path() + ". " + resume_hint());
  fail(what + ", before any training checkpoint was written; nothing to resume: run the command again");
}

void RunState::count_step() {
  if (interrupt_after_steps_ > 0 && ++steps_run_ == interrupt_after_steps_) request_interrupt();
}

}  // namespace kd
