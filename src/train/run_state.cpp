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
  hint += s.hint * double(s.steps);
  steps += s.steps;
  if (!s.finite && finite) finite = false, first_bad_step = s.first_bad_step;
}

std::vector<FingerprintField> options_fingerprint_fields(const Options& o) {
  const auto text = [](const auto& v) {
    std::ostringstream s;
    s << v;
    return s.str();
  };
  // The optimiser is stored as its enum's number, as checkpoints before the
  // field list recorded it; fingerprint_difference shows its name.
  return {{"seed", "--seed", text(o.seed)},
          {"batch", "--batch-size", text(o.batch_size)},
          {"lr", "--lr", text(o.lr)},
          {"optimizer", "--optimizer", text(int(o.optimizer))},
          {"momentum", "--momentum", text(o.momentum)},
          {"schedule", "--lr-schedule", name_of(kLrSchedules, o.lr_schedule)},
          {"warmup", "--warmup-epochs", text(o.warmup_epochs)},
          {"wd", "--weight-decay", text(o.weight_decay)},
          {"augment", "--augment", o.augment ? "on" : "off"},
          {"shift", "--shift", text(o.shift)},
          {"rotate", "--rotate", text(o.rotate)},
          {"scale", "--scale", text(o.scale.lo) + "," + text(o.scale.hi)},
          {"targets", "--soft-targets", name_of(kSoftTargets, o.soft_targets)},
          {"mixup", "--mixup", text(o.mixup)},
          {"T", "--temperature", text(o.temperature)},
          {"alpha", "--alpha", text(o.alpha)},
          {"hint", "--hint", std::string(name_of(kHintKinds, o.hint)) + ":" + text(o.hint_weight)},
          {"teacher", "--teacher-arch", o.teacher_arch},
          {"student", "--student-arch", o.student_arch},
          {"val", "--val-size", text(o.val_size)},
          {"limit", "--train-limit", text(o.train_limit)},
          {"select", "--select", select_rule_name(o.select)},
          {"data", "--data", fs::weakly_canonical(o.data_dir).string()},
          {"normalize", "--normalize", o.normalize},
          {"channels_last", "--channels-last", o.channels_last ? "on" : "off"},
          {"image_size", "--image-size", o.image_size.h ? text(o.image_size.h) + "x" + text(o.image_size.w) : ""}};
}

std::string fingerprint_text(const std::vector<FingerprintField>& fields) {
  std::string s;
  for (const FingerprintField& f : fields) s += (s.empty() ? "" : " ") + f.key + "=" + f.value;
  return s;
}

std::string options_fingerprint(const Options& o) { return fingerprint_text(options_fingerprint_fields(o)); }

namespace {

// A stored value as the user writes it on the command line.
std::string flag_value(const FingerprintField& f, const std::string& stored) {
  if (f.key == "optimizer") {
    for (const Named<OptimizerKind>& n : kOptimizers)
      if (stored == std::to_string(int(n.value))) return n.name;
  }
  return stored.empty() ? "(not given)" : stored;
}

}  // namespace

std::string fingerprint_difference(const std::string& recorded, const std::vector<FingerprintField>& now) {
  const std::string unreadable = "settings this kdtrain does not read (" + recorded + ")";
  // Values may hold spaces (paths, arch strings), so each field's value runs
  // up to the next field's " key=", in the order fingerprint_text writes them.
  size_t at = 0;
  for (size_t i = 0; i < now.size(); ++i) {
    const FingerprintField& f = now[i];
    const std::string head = (i == 0 ? "" : " ") + f.key + "=";
    if (at == std::string::npos || recorded.compare(at, head.size(), head) != 0) return unreadable;
    at += head.size();
    const size_t end = i + 1 < now.size() ? recorded.find(" " + now[i + 1].key + "=", at) : recorded.size();
    const std::string value = recorded.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (value != f.value)
      return f.flag + " " + flag_value(f, value) + ", this run has " + f.flag + " " + flag_value(f, f.value);
    at = end;
  }
  return at == recorded.size() ? "" : unreadable;
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
  if (!fs::exists(path)) fail("--resume: no checkpoint at " + path + " (the run finished, or never wrote one)");
  auto ck = std::make_unique<TrainingCheckpoint>(load_training_checkpoint(path));
  const std::string& fp = ck->options_fingerprint;
  const size_t pos = fp.rfind(" batches_done=");
  if (pos == std::string::npos) fail(path + ": checkpoint has no batch position");
  const std::string difference = fingerprint_difference(fp.substr(0, pos), options_fingerprint_fields(opt_));
  if (!difference.empty())
    fail("--resume: " + path + " was written with " + difference + "; pass the same flags as the interrupted run");
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
  ck.epoch_hint_sum = sums.hint;
  ck.hint_map = model.get_hint_map();
  ck.epoch_steps = sums.steps;
  ck.best_epoch = best_.epoch;
  if (best_.epoch > 0) ck.best_params = model.get_best();
  ck.options_fingerprint = options_fingerprint(opt_) + " batches_done=" + std::to_string(batches_done);
  save_training_checkpoint(checkpoint_path(), ck);
}

void RunState::stop_if_not_finite(Phase phase, int epoch, const EpochSums& sums) const {
  if (sums.finite) return;
  const std::string what = std::string(phase_name(phase)) + " training: non-finite loss at step " +
                           std::to_string(sums.first_bad_step + 1) + " (epoch " + std::to_string(epoch) + "); stopped.";
  if (!sweep_stop_note_.empty())
    fail(what + " Try a smaller --lr, or leave this configuration out: " + sweep_stop_note_);
  fail(what + " The last good checkpoint is " +
       (fs::exists(checkpoint_path()) ? checkpoint_path() : std::string("(none: failed in the first epoch)")) +
       ". Try a smaller --lr.");
}

void RunState::stop_in_epoch(Phase phase, int epoch, ModelEngine& model, int64_t batches_done, const EpochSums& sums,
                             const std::string& where) {
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
  if (fs::exists(checkpoint_path()))
    fail(what + "; the last checkpoint is " + checkpoint_path() + ". " + resume_hint());
  fail(what + ", before any training checkpoint was written; nothing to resume: run the command again");
}

void RunState::count_step() {
  if (interrupt_after_steps_ > 0 && ++steps_run_ == interrupt_after_steps_) request_interrupt();
}

}  // namespace kd
