// kd/sweep.h: `kdtrain sweep`, the compression study. One teacher and its
// soft targets, then a grid of students (architectures x T x alpha x seeds,
// each architecture also trained from scratch on the same budget), and what a
// user decides with: a table with the Pareto-optimal students marked,
// sweep.csv, sweep.json, pareto.png and a recommended student under
// constraints.
//
// src/sweep/sweep_command.cpp trains the runs (run_sweep, kd/session.h); this
// header holds what does not depend on how they were trained: the grid,
// aggregation over seeds, the Pareto front, the recommendation, the resume
// state and the files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kd/report.h"

namespace kd {

// The default grid, sized so that the whole sweep fits 15 minutes on a 2-core
// CPU (docs/sweep.md): one hidden layer of 32, 128 and 800, the
// default student (256-128) and two hidden layers of 800 (Hinton et al.'s
// student), each ending in dense:<num_classes>; T in {2, 4, 8}; alpha 0.9.
std::vector<std::string> default_sweep_archs(int num_classes);
inline constexpr double kDefaultSweepTemperatures[] = {2, 4, 8};
inline constexpr double kDefaultSweepAlphas[] = {0.9};

// The sweep's latency batches: one image (interactive use) and 1024 (bulk).
inline constexpr int kSweepLatencyBatches[] = {1, 1024};

// How a student of the grid learns: from the teacher's soft targets, or on
// hard labels alone (the baseline each architecture is compared with).
enum class RunKind { Distilled, Scratch };
inline constexpr Named<RunKind> kRunKinds[] = {{"distilled", RunKind::Distilled}, {"scratch", RunKind::Scratch}};
inline const char* run_kind_name(RunKind k) { return name_of(kRunKinds, k); }

// One student of the grid trained from one seed.
struct SweepRun {
  // What was asked.
  RunKind kind = RunKind::Distilled;
  std::string arch;                   // normalised arch string
  double temperature = 1, alpha = 0;  // scratch: T 1, alpha 0 (plain cross-entropy)
  int seed_index = 0;                 // 0 .. --seeds - 1
  // What it gave.
  uint64_t seed = 0;  // the run seed it trained with (seed index 0: --seed itself)
  int64_t params = 0, bytes = 0;
  int selected_epoch = 0;            // --select
  double val_acc = 0, test_acc = 0;  // of the selected epoch, fractions
  double train_seconds = 0;
  // Median forward latency on the run's device at kSweepLatencyBatches
  // (the larger one capped at the test split: large_batch); 0 = not timed.
  double latency_b1_ms = 0, latency_large_ms = 0;
  int large_batch = 0;
  // The same under ONNX Runtime on the CPU (kd/onnx_runtime.h), measured once
  // per architecture (for its first run trained); 0 = not measured.
  double ort_b1_ms = 0, ort_large_ms = 0;
  std::string model_file;  // its saved weights, relative to the out dir
};

// "distilled flatten,dense:32,relu,dense:10 T=4 alpha=0.9 seed=0": what
// identifies a run in the resume state.
std::string sweep_run_key(const SweepRun& r);
// One run as the JSON text sweep_state.json records it, and back (a
// distributed sweep's ranks send their finished runs to rank 0 so).
std::string sweep_run_text(const SweepRun& r);
SweepRun parse_sweep_run(const std::string& text);

// The runs a grid asks for, in training order: per architecture, its distilled
// configurations (T outer, alpha inner), then scratch unless `no_scratch`
// (--no-baseline); each for seed indices 0 .. seeds-1. Only the "what was
// asked" fields are set.
std::vector<SweepRun> sweep_plan(const std::vector<std::string>& archs, const std::vector<double>& temperatures,
                                 const std::vector<double>& alphas, int seeds, bool no_scratch = false);

// One configuration (kind, arch, T, alpha) over its seeds.
struct SweepConfig {
  RunKind kind = RunKind::Distilled;
  std::string arch;
  double temperature = 1, alpha = 0;
  int seeds = 0;                     // runs aggregated
  double acc_mean = 0, acc_std = 0;  // test accuracy over seeds; std with n - 1 (0 for one seed)
  int64_t params = 0, bytes = 0;
  double train_seconds = 0;  // mean per run
  // The architecture's latency: the median over every run of that
  // architecture in the sweep (weights do not change the cost of a forward
  // pass, so pooling removes timing noise from the comparison). 0 = not timed.
  double latency_b1_us = 0, latency_large_us = 0;
  int large_batch = 0;
  double ort_b1_us = 0, ort_large_us = 0;  // ONNX Runtime's, the same way; 0 = not measured
  bool pareto = false;
  std::string model_file;  // the seed with the best validation accuracy (ties: the lower seed index)
};

// Configurations in order of first appearance in `runs`, Pareto marks set.
std::vector<SweepConfig> aggregate_sweep(const std::vector<SweepRun>& runs);

// Pareto optimality on (accuracy up, latency down). Point i is optimal when
// no point j is at least as accurate and at least as fast while strictly
// better in one of the two. Equal points are all optimal (none dominates the
// other). A point without a positive finite latency is never optimal and
// dominates nothing.
struct ParetoPoint {
  double accuracy = 0, latency = 0;
};
std::vector<bool> pareto_optimal(const std::vector<ParetoPoint>& points);

// Constraints that choose the recommended student; unset ones do not constrain.
struct SweepConstraints {
  std::optional<double> max_latency_us;  // batch-1 latency on the run's device
  std::optional<int64_t> max_params;
  std::optional<double> min_accuracy;  // mean test accuracy, percent
};
// The most accurate configuration (mean test accuracy) meeting every
// constraint; ties go to the lower batch-1 latency, then fewer parameters,
// then the earlier. -1 when none does, with `why_none` naming each constraint
// and how many configurations meet it.
int recommend_student(const std::vector<SweepConfig>& configs, const SweepConstraints& c, std::string& why_none);

// Everything the sweep's files and table are made of.
struct SweepResult {
  RunReport run;               // options, device, data, timings; models = {the teacher}
  std::vector<SweepRun> runs;  // every run of this sweep's grid, in plan order
  std::vector<SweepConfig> configs;
  SweepConstraints constraints;
  int recommended = -1;  // index into configs
  std::string why_none;  // recommended == -1: why
  std::string ort_note;  // why there are no ONNX Runtime latencies, or ""
};

// sweep.csv: one row per configuration (and the teacher first), mean and std
// over seeds, the architecture's latencies, the Pareto and recommended marks.
std::string sweep_csv(const SweepResult& r);
// sweep.json: the settings, device, teacher, configurations and every run.
std::string sweep_json(const SweepResult& r);
// The table printed at the end, Pareto-optimal students marked with '*'.
std::string sweep_table(const SweepResult& r);
// Writes sweep.csv and sweep.json atomically into out_dir, then draws
// pareto.png with gnuplot; returns a note when the picture was skipped.
std::string write_sweep_files(const SweepResult& r, const std::string& out_dir);

// sweep_state.json, rewritten atomically after the teacher and after every
// run, is what `kdtrain sweep --resume DIR` continues from.
struct SweepState {
  std::string fingerprint;           // the settings that must match on resume
  bool teacher_done = false;         // DIR/teacher.safetensors holds the teacher
  std::string teacher_history_csv;   // its metrics.csv rows
  double teacher_train_seconds = 0;  // its training time
  std::vector<SweepRun> runs;        // finished runs
};
std::string sweep_state_json(const SweepState& s);
// Throws kd::Error naming `path` when `text` is not a sweep state.
SweepState parse_sweep_state(const std::string& text, const std::string& path);

}  // namespace kd
