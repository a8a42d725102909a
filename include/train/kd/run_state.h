// kd/run_state.h: where a run stands, for resuming and stopping it: the
// training checkpoint and the settings it must be resumed with, the epochs
// recorded so far, and the one-line messages of every way a run stops early
// (SIGINT/SIGTERM/SIGHUP, a non-finite loss).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kd/config.h"
#include "kd/engine.h"
#include "kd/model_io.h"
#include "kd/phase.h"

namespace kd {

// Training-loss sums of an epoch's steps; a resumed epoch starts from the
// interrupted run's sums.
struct EpochSums {
  double loss = 0, kl = 0, hint = 0;
  int64_t steps = 0;
  bool finite = true;
  int64_t first_bad_step = -1;
  void add(const TrainStats& s);
  double mean_loss() const { return steps ? loss / double(steps) : 0; }
  double mean_kl() const { return steps ? kl / double(steps) : 0; }
  double mean_hint() const { return steps ? hint / double(steps) : 0; }
};

// The best epoch so far of the phase in training (--select best).
struct BestEpoch {
  int epoch = 0;  // 0: none yet
  double val_acc = 0, val_loss = 0;
  // Higher validation accuracy wins; at equal accuracy the lower loss; at
  // equal both the earlier epoch, which is already held.
  bool beaten_by(const EpochRecord& e) const {
    return epoch == 0 || e.val_acc > val_acc || (e.val_acc == val_acc && e.val_loss < val_loss);
  }
};

// One setting a resumed run must share with the interrupted one: its key in
// the fingerprint text ("key=value", space-separated, the format checkpoints
// and sweep_state.json store), the flag that sets it, and its value.
struct FingerprintField {
  std::string key, flag, value;
};

// Settings that must be the same when a run is resumed (epoch counts may grow).
std::vector<FingerprintField> options_fingerprint_fields(const Options& o);
// The stored form: "seed=42 batch=64 ... data=/abs/dir".
std::string fingerprint_text(const std::vector<FingerprintField>& fields);
std::string options_fingerprint(const Options& o);

// "" when `recorded` (a stored fingerprint) holds `now`; otherwise the first
// difference by flag, "--train-limit 3000, this run has --train-limit 0".
std::string fingerprint_difference(const std::string& recorded, const std::vector<FingerprintField>& now);

class RunState {
 public:
  explicit RunState(const Options& opt);

  void set_out_dir(const std::string& dir) { out_dir_ = dir; }
  const std::string& out_dir() const { return out_dir_; }
  std::string checkpoint_path() const { return out_dir_ + "/checkpoint.safetensors"; }
  // "Resume with: kdtrain <command> --resume <out dir> (and the same flags)".
  std::string resume_hint() const;

  // --resume DIR: reads DIR/checkpoint.safetensors, refuses one written with
  // other settings, and takes its epoch history. Nothing without --resume.
  void load_resume_checkpoint();
  // The checkpoint a resumed run continues from, or null.
  const TrainingCheckpoint* resume() const { return resume_.get(); }
  void drop_resume() { resume_.reset(); }
  // Steps of the checkpoint's unfinished epoch already done.
  int64_t resume_batches_done() const { return resume_batches_done_; }

  // Every epoch recorded so far (all phases), for metrics rows in checkpoints.
  std::vector<EpochRecord>& history() { return history_; }
  std::vector<EpochRecord> history_for(Phase phase) const;

  // The best epoch of the phase in training; the phase runner updates it.
  BestEpoch& best() { return best_; }

  // While a sweep trains its students: what a stop or failure says about
  // resuming, instead of pointing at a checkpoint (students write none).
  void set_sweep_stop_note(std::string note) { sweep_stop_note_ = std::move(note); }

  // The checkpoint after `epochs_done` epochs and `batches_done` steps of the
  // next, with that epoch's loss sums so far. A sweep's students write none.
  void save_checkpoint(Phase phase, int epochs_done, int64_t batches_done, ModelEngine& model,
                       const EpochSums& sums = {});
  // A stop request inside an epoch: the steps so far go into a checkpoint
  // (batches_done of them, and their loss sums), then the run ends non-zero.
  [[noreturn]] void stop_in_epoch(Phase phase, int epoch, ModelEngine& model, int64_t batches_done,
                                  const EpochSums& sums, const std::string& where);
  // A stop request outside the training steps (test evaluation, timing, soft
  // targets): the last checkpoint already holds everything done before it.
  void stop_if_interrupted(const std::string& during) const;
  // A non-finite training loss: stop, naming the step and the last good checkpoint.
  void stop_if_not_finite(Phase phase, int epoch, const EpochSums& sums) const;

  // Test hook: counts training steps and raises a stop request after
  // $KD_TEST_INTERRUPT_AFTER_STEPS of them, so that resume-equals-uninterrupted
  // can be tested without timing races.
  void count_step();

 private:
  const Options& opt_;
  std::string out_dir_;
  std::vector<EpochRecord> history_;
  std::unique_ptr<TrainingCheckpoint> resume_;
  int64_t resume_batches_done_ = 0;
  BestEpoch best_;
  std::string sweep_stop_note_;
  int64_t interrupt_after_steps_ = 0, steps_run_ = 0;
};

}  // namespace kd
