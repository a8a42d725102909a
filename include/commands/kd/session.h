// kd/session.h: what every command of one kdtrain invocation shares: the
// options, the engine with the data on it, the batch sizes in use, the
// output directory, the run's state for resume and stop, and the report
// being filled. The commands (src/commands/) and the sweep (src/sweep/) are
// written against it.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kd/config.h"
#include "kd/distributed.h"
#include "kd/engine.h"
#include "kd/model_io.h"
#include "kd/onnx_runtime.h"
#include "kd/phase_runner.h"
#include "kd/report.h"
#include "kd/run_state.h"

namespace kd {

// Seconds since t0 on the steady clock; "2026-12-07T06:00:00Z"-style UTC stamps.
double seconds_since(std::chrono::steady_clock::time_point t0);
std::string utc_timestamp(const char* format);

class Session {
 public:
  // `comm`: the job this process is part of; only its rank 0 prints and writes.
  Session(const Options& opt, Engine& engine, Comm& comm);

  // ------------------------------------------------------------ set-up
  // Loads the splits onto the engine and fixes the batch sizes in use.
  void load_data();
  // Refuses a configuration whose buffers cannot fit the device before any
  // of them is allocated and before anything is written: one line naming the
  // largest need, what is free, and the flag to lower. `models` live at the
  // same time (the teacher stays while a student trains); `cached_soft_targets`:
  // the teacher's logits for every training image are kept too.
  struct LiveModel {
    const Arch* arch;
    std::string role;             // "teacher", "student", "model"
    std::string arch_flag;        // the flag that chose the architecture
    TrainSettings settings;       // what it is created with: a distilled student's hint and mixup
    bool online_teacher = false;  // it runs on every student batch (--soft-targets online)
  };
  void check_memory(const std::vector<LiveModel>& models, bool cached_soft_targets);
  // --out, or runs/<timestamp> with runs/latest pointing at it; created.
  void prepare_out_dir();
  // An arch string for this run's images (the defaults adapted to them, kd/arch.h
  // adapt_default_arch); a rejection also names the data.
  Arch parse_model_arch(const std::string& text, const char* flag) const;
  // Refuses a saved model whose input or class count does not fit the data.
  void check_input_shape(const Arch& arch, const std::string& path) const;

  // ------------------------------------------------------------ models
  // The teacher's architecture and starting parameters: the file of
  // --teacher F (distill, sweep; read as --teacher-arch when it has no
  // kdtrain metadata, e.g. saved by PyTorch), or --teacher-arch freshly initialised.
  ModelFile teacher_start() const;
  std::string teacher_flag() const;
  // The teacher, ready to give soft targets: trained (continuing an
  // interrupted run's checkpoint), or loaded from the out dir when `saved`
  // (an interrupted run finished it), or given (--teacher F); then tested,
  // timed, and saved as teacher.safetensors when trained here.
  std::unique_ptr<ModelEngine> ready_teacher(const ModelFile& start, bool saved, ModelReport& rep);
  // Trains one phase of `model` (continuing the resume checkpoint where it is
  // this phase's) into rep.curve / selection, and records its time.
  void train(Phase phase, ModelEngine& model, const LossConfig& loss, int epochs, ModelReport& rep, uint64_t seed);
  // A phase the interrupted run finished: its saved model (the selected
  // epoch) and what the run recorded about it.
  void load_finished(Phase phase, ModelEngine& model, ModelReport& rep);
  ModelReport new_report(Phase role, const Arch& arch) const;
  // Tests and times the selected epoch. `holds_last`: the model holds the
  // last epoch's parameters (not a saved selected model), so when another
  // epoch was selected the last one is tested first, then the kept one restored.
  // `ort`: time it under ONNX Runtime too (unless --no-ort); a sweep does that
  // once per architecture instead. On a rank that discards_results, only
  // restores the kept epoch; data-parallel ranks then agree on a stop
  // requested of any of them meanwhile, so all stop here alike.
  void finish_model(ModelEngine& model, ModelReport& rep, bool holds_last, bool ort = true);
  // A data-parallel rank other than 0 (docs/mpi.md): it trains and validates
  // every epoch with rank 0, but what it would measure and write of the
  // finished models goes with its scratch directory, so it skips that.
  bool discards_results() const { return opt_.data_parallel && comm_.rank() != 0; }
  // At the batch sizes in use; stops early on a stop request.
  std::vector<LatencyRecord> measure_latencies(ModelEngine& model);
  // ONNX Runtime timed as kdtrain's own latency is: at `batches` (default: the
  // batch sizes in use), on the same test images, with the engine's CPU
  // threads (1 for the reference, every hardware thread or --threads
  // otherwise), a batch above the model's buffers in slices of their size.
  OrtLatencyOptions ort_options(std::vector<int> batches = {}) const;
  // The metadata a saved model carries about its training.
  std::map<std::string, std::string> model_facts(const ModelReport& rep) const;
  // The teacher's soft targets on the engine, timed as a phase; with
  // --soft-targets online, the teacher handed to the engine instead.
  void compute_soft_targets(ModelEngine& teacher);

  // ------------------------------------------------------------ helpers
  void add_phase(const std::string& name, double seconds) { report_.phases.push_back({name, seconds}); }
  // Seconds since the session began: the run's total, set before its files are written.
  double elapsed() const { return seconds_since(started_); }
  void say(const std::string& line) const;

  const Options& opt() const { return opt_; }
  Engine& engine() { return engine_; }
  Comm& comm() { return comm_; }
  const TrainSettings& settings() const { return settings_; }
  // settings() for a model trained `epochs` epochs (`epochs_flag` names the
  // flag that set them): its learning-rate schedule spans those epochs.
  TrainSettings training_settings(int epochs, const char* epochs_flag) const;
  // training_settings for a student (distilled, baseline or a sweep's run):
  // --epochs-student, and --mixup, which the teacher trains without.
  TrainSettings student_settings() const;
  // student_settings of a student of `phase`: the distilled one
  // (Phase::Student) also trains --hint against the features of `teacher`
  // (kd/hint.h); the scratch baseline never does.
  TrainSettings student_settings(Phase phase, const Arch& teacher) const;
  const Splits& splits() const { return splits_; }
  RunReport& report() { return report_; }
  RunState& state() { return state_; }
  const std::string& out_dir() const { return state_.out_dir(); }
  // The per-run note on ONNX Runtime when it could not time a model, or "".
  std::string& ort_note() { return ort_note_; }

 private:
  const Options& opt_;
  Engine& engine_;
  Comm& comm_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  TrainSettings settings_;
  bool tty_ = false;
  Splits splits_;
  Shape input_;
  RunReport report_;
  RunState state_;
  std::vector<int> latency_batches_;  // what load_data made of --latency-batches
  std::string ort_note_;
  // Progress and report lines: rank 0's, unless --quiet.
  bool quiet() const { return opt_.quiet || comm_.rank() != 0; }
  // Data-parallel: a stop requested of any rank becomes every rank's (finish_model).
  void agree_on_stop();
  // --val-size 0 leaves nothing to select on: best falls back to last.
  bool select_best() const { return opt_.select == SelectRule::Best && splits_.val.n > 0; }
  void size_batches();
  Normalization choose_normalization() const;
};

// The commands on a session with its data loaded.
void train_and_report(Session& s);       // run, train-teacher, distill
void eval_model_file(Session& s);        // eval
void latency_of_model_file(Session& s);  // latency
void run_sweep(Session& s);              // sweep (src/sweep/)

}  // namespace kd
