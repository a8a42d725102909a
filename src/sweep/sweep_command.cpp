// `kdtrain sweep` on a session: one teacher and its soft targets, then every
// run of the grid, recorded as it finishes so a resumed sweep skips it
// (kd/sweep.h holds the grid, the Pareto front, the recommendation and the files).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/onnx_export.h"
#include "kd/onnx_runtime.h"
#include "kd/params.h"
#include "kd/safetensors.h"
#include "kd/seed.h"
#include "kd/session.h"
#include "kd/sweep.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using Clock = std::chrono::steady_clock;

// The run seed of a sweep's seed index: --seed itself for index 0, so that a
// sweep's seed-0 student is the one `kdtrain run` trains with the same
// architecture, T and alpha; an independent mix of (--seed, index) otherwise.
constexpr uint64_t kSweepSeedSalt = 1000;
uint64_t sweep_run_seed(uint64_t seed, int seed_index) {
  return seed_index == 0 ? seed : mix_seed(seed, kSweepSeedSalt + uint64_t(seed_index));
}

// "distilled_flatten_dense-32_relu_dense-10_T4_a0.9_s0": readable and unique per run key.
std::string sweep_file_stem(const SweepRun& r) {
  std::string arch;
  for (char ch : r.arch) arch += ch == ',' ? '_' : ch == ':' ? '-' : std::isalnum((unsigned char)ch) || ch == '.' ? ch : '~';
  char tail[96];
  if (r.kind == RunKind::Distilled) std::snprintf(tail, sizeof tail, "_T%g_a%g_s%d", r.temperature, r.alpha, r.seed_index);
  else std::snprintf(tail, sizeof tail, "_s%d", r.seed_index);
  return std::string(run_kind_name(r.kind)) + "_" + arch + tail;
}

// Trains, tests and times one run of the grid (`time_ort`: under ONNX
// Runtime too) and saves its weights in models/. Its seed: sweep_run_seed;
// its init and shuffles derive from it as `kdtrain run --seed <seed>`
// derives the student's and the baseline's.
SweepRun train_sweep_run(Session& s, SweepRun run, const Arch& arch, bool time_ort) {
  const Options& opt = s.opt();
  const Phase phase = run.kind == RunKind::Distilled ? Phase::Student : Phase::Scratch;
  run.seed = sweep_run_seed(opt.seed, run.seed_index);
  std::vector<float> init(size_t(arch.param_count));
  init_params(arch, mix_seed(run.seed, kStudentSalt), init.data());
  TrainSettings settings = s.training_settings(opt.epochs_student, "--epochs-student");
  settings.seed = run.seed;  // the dropout streams
  auto model = s.engine().create_model(arch, init, settings);
  ModelReport rep = s.new_report(phase, arch);
  s.train(phase, *model, LossConfig{float(run.temperature), float(run.alpha)}, opt.epochs_student, rep, run.seed);
  s.finish_model(*model, rep, true, /*ort=*/false);
  s.state().stop_if_interrupted("the test evaluation and timing of " + sweep_run_key(run));
  run.params = rep.params;
  run.bytes = rep.bytes;
  run.selected_epoch = rep.selected_epoch;
  for (const EpochRecord& e : rep.curve)
    if (e.epoch == rep.selected_epoch) run.val_acc = e.val_acc;
  run.test_acc = rep.test_acc;
  run.train_seconds = rep.train_seconds;
  for (const LatencyRecord& l : rep.latency) {
    if (l.batch == 1) run.latency_b1_ms = l.median_ms;
    else run.latency_large_ms = l.median_ms, run.large_batch = l.batch;
  }
  if (time_ort) {
    const auto o0 = Clock::now();
    std::vector<int> batches = {1};
    if (run.large_batch > 1) batches.push_back(run.large_batch);
    const OrtLatency ort = ort_latency(arch, model->get_params(), s.ort_options(batches));
    for (const LatencyRecord& l : ort.latency) (l.batch == 1 ? run.ort_b1_ms : run.ort_large_ms) = l.median_ms;
    if (!ort.measured) s.ort_note() = ort.note;
    s.add_phase("ONNX Runtime latency", seconds_since(o0));
  }
  run.model_file = "models/" + sweep_file_stem(run) + ".safetensors";
  std::map<std::string, std::string> facts = s.model_facts(rep);
  facts["seed"] = std::to_string(run.seed);
  facts["sweep_run"] = sweep_run_key(run);
  save_model_file(s.out_dir() + "/" + run.model_file, arch, model->get_params(), facts);
  return run;
}

// recommended.safetensors: the chosen configuration's kept seed, with the
// sweep's reasons in its metadata.
void save_recommended(Session& s, const SweepConfig& c, const std::string& path) {
  ModelFile f = load_model_file(s.out_dir() + "/" + c.model_file);
  std::map<std::string, std::string> facts = f.metadata;
  facts["recommended_by"] = "kdtrain sweep";
  facts["sweep_test_accuracy_mean"] = std::to_string(c.acc_mean);
  facts["sweep_latency_b1_us"] = std::to_string(c.latency_b1_us);
  facts["sweep_source"] = c.model_file;
  save_model_file(path, f.arch, f.params, facts);
}

// "recommended: MLP ... distilled T 4 alpha 0.9, 97.91% ..., -> recommended.safetensors".
std::string recommendation_line(Session& s, const SweepResult& r) {
  const Options& opt = s.opt();
  const SweepConfig& c = r.configs[size_t(r.recommended)];
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.2f%% mean test accuracy, %.1f us at batch 1, %lld parameters", 100 * c.acc_mean,
                c.latency_b1_us, (long long)c.params);
  const auto g = [](const char* prefix, double v) {
    char text[64];
    std::snprintf(text, sizeof text, "%s%g", prefix, v);
    return std::string(text);
  };
  std::string constraints;
  const auto add = [&](const std::string& text) { constraints += (constraints.empty() ? "" : ", ") + text; };
  if (opt.max_latency_us) add(g("--max-latency-us ", *opt.max_latency_us));
  if (opt.max_params) add("--max-params " + std::to_string(*opt.max_params));
  if (opt.min_accuracy) add(g("--min-accuracy ", *opt.min_accuracy));
  return "recommended: " + std::string(run_kind_name(c.kind)) + " " + c.arch +
         (c.kind == RunKind::Distilled ? g(" (T ", c.temperature) + g(", alpha ", c.alpha) + ")" : std::string()) + ": " + buf + (constraints.empty() ? " (the most accurate; no constraints given)" : " under " + constraints) +
         "; weights of " + c.model_file + " in " + s.out_dir() + "/recommended.safetensors";
}

// Settings a resumed sweep must share with the interrupted one (the grid may differ).
std::vector<FingerprintField> sweep_fingerprint_fields(const Options& opt) {
  std::vector<FingerprintField> fields = options_fingerprint_fields(opt);
  fields.push_back({"epochs_teacher", "--epochs-teacher", std::to_string(opt.epochs_teacher)});
  fields.push_back({"epochs_student", "--epochs-student", std::to_string(opt.epochs_student)});
  fields.push_back({"test_limit", "--test-limit", std::to_string(opt.test_limit)});
  fields.push_back({"teacher_file", "--teacher", opt.teacher_path});
  return fields;
}

SweepState load_sweep_state(const Options& opt) {
  if (!opt.out_dir.empty() && fs::weakly_canonical(opt.out_dir) != fs::weakly_canonical(opt.resume_dir))
    fail("--resume: a sweep continues in its own directory " + opt.resume_dir + "; leave out --out");
  const std::string path = opt.resume_dir + "/sweep_state.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--resume: no sweep state at " + path + " (not the directory of a 'kdtrain sweep')");
  std::stringstream text;
  text << in.rdbuf();
  SweepState state = parse_sweep_state(text.str(), path);
  const std::string difference = fingerprint_difference(state.fingerprint, sweep_fingerprint_fields(opt));
  if (!difference.empty())
    fail("--resume: " + path + " was written with " + difference +
         "; pass the same flags as the interrupted sweep (the lists of the grid may differ)");
  return state;
}

}  // namespace

// One teacher and its soft targets, then every run of the grid; each
// finished run is recorded in sweep_state.json, so a resumed sweep skips it.
void run_sweep(Session& s) {
  const Options& opt = s.opt();
  // Every architecture is checked before any training.
  const std::vector<std::string> texts =
      opt.student_archs.empty() ? default_sweep_archs(s.splits().num_classes) : opt.student_archs;
  std::vector<Arch> archs;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string flag =
        texts.size() > 1 ? "--student-arch (value " + std::to_string(i + 1) + " of " + std::to_string(texts.size()) + ")"
                         : "--student-arch";
    archs.push_back(s.parse_model_arch(texts[i], flag.c_str()));
    for (size_t j = 0; j < i; ++j)
      if (archs[j].text == archs[i].text)
        fail("--student-arch: values " + std::to_string(j + 1) + " and " + std::to_string(i + 1) +
             " are the same architecture (" + archs[i].text + ")");
  }
  std::vector<std::string> arch_texts;
  for (const Arch& a : archs) arch_texts.push_back(a.text);
  const auto or_default = [](const std::vector<double>& list, const auto& defaults) {
    return list.empty() ? std::vector<double>(std::begin(defaults), std::end(defaults)) : list;
  };
  const std::vector<SweepRun> plan =
      sweep_plan(arch_texts, or_default(opt.temperatures, kDefaultSweepTemperatures),
                 or_default(opt.alphas, kDefaultSweepAlphas), opt.seeds, opt.no_baseline);

  if (!opt.export_best.empty()) {
    const fs::path parent = fs::absolute(opt.export_best).parent_path();
    if (!fs::is_directory(parent))
      fail("--export-best: directory " + parent.string() + " does not exist (for " + opt.export_best + ")");
  }
  const ModelFile teacher_file = s.teacher_start();
  const Arch* largest = &*std::max_element(
      archs.begin(), archs.end(), [](const Arch& a, const Arch& b) { return a.param_count < b.param_count; });
  s.check_memory({{&teacher_file.arch, "teacher", s.teacher_flag()}, {largest, "student", "--student-arch"}}, true);

  SweepState state;
  state.fingerprint = fingerprint_text(sweep_fingerprint_fields(opt));
  if (!opt.resume_dir.empty()) state = load_sweep_state(opt);
  s.prepare_out_dir();
  install_interrupt_handlers();
  const std::string state_path = s.out_dir() + "/sweep_state.json";
  // The teacher: an interrupted one continues its checkpoint; a finished one is loaded.
  if (!state.teacher_done && !opt.resume_dir.empty() && fs::exists(s.state().checkpoint_path())) {
    s.state().load_resume_checkpoint();
  }
  if (state.teacher_done) s.state().history() = parse_metrics_csv_rows(state.teacher_history_csv);
  write_file_atomic(state_path, sweep_state_json(state));
  ModelReport teacher_report;
  auto teacher = s.ready_teacher(teacher_file, state.teacher_done, teacher_report);
  s.state().drop_resume();  // students never continue a checkpoint: an interrupted one trains again
  if (state.teacher_done) teacher_report.train_seconds = state.teacher_train_seconds;
  else state.teacher_train_seconds = teacher_report.train_seconds;
  state.teacher_done = true;
  state.teacher_history_csv.clear();
  for (const EpochRecord& e : s.state().history_for(Phase::Teacher)) state.teacher_history_csv += metrics_csv_row(e);
  write_file_atomic(state_path, sweep_state_json(state));
  fs::remove(s.state().checkpoint_path());
  s.state().set_sweep_stop_note("the teacher and every finished run are recorded in " + state_path +
                                "; a resumed sweep skips them and trains the interrupted run again. " +
                                s.state().resume_hint());

  std::map<std::string, SweepRun> finished;
  for (const SweepRun& r : state.runs) finished[sweep_run_key(r)] = r;
  int skipped = 0;
  for (const SweepRun& r : plan) skipped += int(finished.count(sweep_run_key(r)));
  s.say("sweep: " + std::to_string(archs.size()) + " architectures, " + std::to_string(plan.size()) + " runs of " +
      std::to_string(opt.epochs_student) + " epochs" +
      (skipped ? " (" + std::to_string(skipped) + " finished before, skipped)" : ""));
  std::error_code ec;
  fs::create_directories(s.out_dir() + "/models", ec);
  if (ec) fail("--out: cannot create directory '" + s.out_dir() + "/models': " + ec.message());
  // One cheap check before many models: is ONNX Runtime there at all?
  std::string ort_why;
  const bool ort_ready = !opt.no_ort && !ort_version(ort_why).empty();
  if (!opt.no_ort && !ort_ready) s.ort_note() = ort_why;
  std::vector<SweepRun> runs;
  bool soft_targets_ready = false;
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto it = finished.find(sweep_run_key(plan[i]));
    if (it != finished.end()) {
      runs.push_back(it->second);
      continue;
    }
    if (!soft_targets_ready) {  // only when a run is left to train (a finished sweep resumed needs none)
      s.compute_soft_targets(*teacher);
      soft_targets_ready = true;
    }
    const Arch& arch = archs[size_t(std::find(arch_texts.begin(), arch_texts.end(), plan[i].arch) - arch_texts.begin())];
    s.say("[sweep " + std::to_string(i + 1) + "/" + std::to_string(plan.size()) + "] " + sweep_run_key(plan[i]));
    // ONNX Runtime's latency, like the device's, depends on the architecture
    // only: its first run trained measures it, unless a finished one did
    // (state.runs holds every finished run, this sweep's and before).
    const bool ort_timed = std::any_of(state.runs.begin(), state.runs.end(), [&](const SweepRun& r) {
      return r.arch == plan[i].arch && r.ort_b1_ms > 0;
    });
    runs.push_back(train_sweep_run(s, plan[i], arch, ort_ready && !ort_timed));
    state.runs.push_back(runs.back());
    write_file_atomic(state_path, sweep_state_json(state));
  }
  s.state().set_sweep_stop_note("");

  SweepResult result;
  s.report().models = {teacher_report};
  s.report().total_seconds = s.elapsed();
  result.run = s.report();
  result.runs = runs;
  result.configs = aggregate_sweep(runs);
  result.constraints = {opt.max_latency_us, opt.max_params, opt.min_accuracy};
  result.recommended = recommend_student(result.configs, result.constraints, result.why_none);
  result.ort_note = opt.no_ort ? "ONNX Runtime latencies skipped (--no-ort)" : s.ort_note();
  const std::string recommended_path = s.out_dir() + "/recommended.safetensors";
  fs::remove(recommended_path, ec);  // a resumed sweep may choose differently
  if (result.recommended >= 0) save_recommended(s, result.configs[size_t(result.recommended)], recommended_path);
  const std::string note = write_sweep_files(result, s.out_dir());
  if (!opt.quiet) std::cout << "\n" << sweep_table(result);
  if (!note.empty()) s.say(note);
  s.say("wrote sweep.csv, sweep.json" + std::string(note.empty() ? ", pareto.png" : "") +
      (result.recommended >= 0 ? ", recommended.safetensors" : "") + " to " + s.out_dir());
  if (result.recommended < 0)
    fail(result.why_none + "; every result is in " + s.out_dir() + "/sweep.csv" +
         (opt.export_best.empty() ? "" : ", and " + opt.export_best + " was not written"));
  s.say(recommendation_line(s, result));
  if (!opt.export_best.empty()) export_model_file(recommended_path, opt.export_best, opt.quiet);
}

}  // namespace kd
