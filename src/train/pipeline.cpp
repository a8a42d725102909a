// The device-agnostic orchestrator: phases, epochs, shuffles, validation,
// checkpoints, SIGINT/SIGTERM/SIGHUP, non-finite-loss stops, the memory check
// and the report (SPEC sections 2-3).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "kd/checkpoint.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/model.h"
#include "kd/model_io.h"
#include "kd/onnx_export.h"
#include "kd/onnx_runtime.h"
#include "kd/sweep.h"
#include "kd/train.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t mix_seed(uint64_t seed, uint64_t salt) {  // splitmix64 of seed + salt
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Salts that make every phase draw its own init and shuffles from the run's seed.
// The scratch baseline shares the distilled student's init so that the two
// differ only in their loss.
constexpr uint64_t kTeacherSalt = 1, kStudentSalt = 2, kSweepSeedSalt = 1000;

// The run seed of a sweep's seed index: --seed itself for index 0, so that a
// sweep's seed-0 student is the one `kdtrain run` trains with the same
// architecture, T and alpha; an independent mix of (--seed, index) otherwise.
uint64_t sweep_run_seed(uint64_t seed, int seed_index) {
  return seed_index == 0 ? seed : mix_seed(seed, kSweepSeedSalt + uint64_t(seed_index));
}
uint64_t phase_salt(const std::string& phase) {
  if (phase == "teacher") return 10;
  if (phase == "student") return 20;
  return 30;
}

// A fresh permutation of [0, n) for (seed, phase, epoch): Fisher-Yates over
// mt19937_64, written out so the order does not depend on the standard library.
std::vector<int32_t> epoch_order(int64_t n, uint64_t seed, const std::string& phase, int epoch) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix_seed(seed, phase_salt(phase) * 100000 + uint64_t(epoch)));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
  return order;
}

std::string utc_timestamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// 35,433,480,192 -> "33.0 GiB"; below a GiB in MiB.
std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double gib = double(bytes) / double(int64_t(1) << 30);
  if (gib >= 1) std::snprintf(buf, sizeof buf, "%.1f GiB", gib);
  else std::snprintf(buf, sizeof buf, "%.0f MiB", double(bytes) / double(1 << 20));
  return buf;
}

// Training-loss sums of an epoch's steps; a resumed epoch starts from the
// interrupted run's sums.
struct EpochSums {
  double loss = 0, kl = 0;
  int64_t steps = 0;
  bool finite = true;
  int64_t first_bad_step = -1;
  void add(const TrainStats& s) {
    loss += s.loss * double(s.steps);
    kl += s.kl * double(s.steps);
    steps += s.steps;
    if (!s.finite && finite) finite = false, first_bad_step = s.first_bad_step;
  }
  double mean_loss() const { return steps ? loss / double(steps) : 0; }
  double mean_kl() const { return steps ? kl / double(steps) : 0; }
};

std::string format_duration(double s) {
  char buf[32];
  if (s < 120) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}

// Settings that must be the same when a run is resumed (epoch counts may grow).
std::string options_fingerprint(const Options& o) {
  std::ostringstream s;
  s << "seed=" << o.seed << " batch=" << o.batch_size << " lr=" << o.lr << " optimizer=" << int(o.optimizer)
    << " momentum=" << o.momentum << " T=" << o.temperature << " alpha=" << o.alpha << " teacher=" << o.teacher_arch
    << " student=" << o.student_arch << " val=" << o.val_size << " limit=" << o.train_limit
    << " select=" << select_rule_name(o.select)
    << " data=" << fs::weakly_canonical(o.data_dir).string();
  return s.str();
}

TrainSettings settings_from(const Options& o) {
  TrainSettings s;
  s.batch_size = o.batch_size;
  s.eval_batch_size = o.eval_batch_size;
  s.optimizer = o.optimizer;
  s.adam.lr = float(o.lr);
  s.sgd.lr = float(o.lr);
  s.sgd.momentum = float(o.momentum);
  s.seed = o.seed;
  s.deterministic = o.deterministic;
  s.dense_impl = o.dense_impl;
  return s;
}

class Pipeline {
 public:
  Pipeline(const Options& opt, Engine& engine) : opt_(opt), engine_(engine), settings_(settings_from(opt)) {
    tty_ = !opt.quiet && isatty(STDOUT_FILENO);
    // Test hook: behave as if SIGINT arrived after this many training steps,
    // so resume-equals-uninterrupted can be tested without timing races.
    if (const char* n = std::getenv("KD_TEST_INTERRUPT_AFTER_STEPS")) interrupt_after_steps_ = std::atoll(n);
  }

  int run() {
    const auto t0 = Clock::now();
    report_.options = opt_;
    report_.started_at = utc_timestamp("%Y-%m-%dT%H:%M:%SZ");
    load_data();
    size_batches();
    switch (opt_.command) {
      case Command::Run:
      case Command::TrainTeacher:
      case Command::Distill:
        train_and_report();
        break;
      case Command::Eval:
        eval_model_file();
        break;
      case Command::Latency:
        latency_of_model_file();
        break;
      case Command::Sweep:
        sweep();
        break;
      case Command::Export:  // main() runs it before any data or device (kd/onnx_export.h)
        break;
    }
    report_.total_seconds = seconds_since(t0);
    return 0;
  }

 private:
  // ------------------------------------------------------------ set-up
  void load_data() {
    const auto t0 = Clock::now();
    splits_ = load_splits(opt_.data_dir, opt_.val_size, opt_.train_limit);
    if (opt_.test_limit > 0 && opt_.test_limit < splits_.test.n) splits_.test = splits_.test.slice(0, opt_.test_limit);
    engine_.load(splits_);
    report_.device = engine_.device_description();
    report_.versions = engine_.versions();
    report_.data_dir = opt_.data_dir;
    report_.train_n = splits_.train.n;
    report_.val_n = splits_.val.n;
    report_.test_n = splits_.test.n;
    report_.num_classes = splits_.num_classes;
    input_ = Shape{1, splits_.train.h, splits_.train.w, false};
    add_phase("load data", seconds_since(t0));
    say("data: " + opt_.data_dir + " (" + std::to_string(splits_.train.n) + " train, " +
        std::to_string(splits_.val.n) + " val, " + std::to_string(splits_.test.n) + " test, " +
        std::to_string(splits_.train.h) + "x" + std::to_string(splits_.train.w) + ", " +
        std::to_string(splits_.num_classes) + " classes)");
    say("device: " + report_.device);
  }

  // Batch sizes as PyTorch's DataLoader uses them: never larger than the data
  // they batch. Training batches take at most the training split (one batch
  // of all of it), inference batches at most the largest split evaluated,
  // latency batches at most the test split. The buffers are sized from these.
  void size_batches() {
    const bool soft_targets =
        opt_.command == Command::Run || opt_.command == Command::Distill || opt_.command == Command::Sweep;
    int64_t largest_eval = std::max(splits_.val.n, splits_.test.n);
    if (soft_targets) largest_eval = std::max(largest_eval, splits_.train.n);
    settings_.batch_size = int(std::min<int64_t>(opt_.batch_size, splits_.train.n));
    settings_.eval_batch_size = int(std::clamp<int64_t>(opt_.eval_batch_size, 1, std::max<int64_t>(largest_eval, 1)));
    latency_batches_.clear();
    const std::vector<int> asked = opt_.command == Command::Sweep
                                       ? std::vector<int>(std::begin(kSweepLatencyBatches), std::end(kSweepLatencyBatches))
                                       : opt_.latency_batches;
    for (int batch : asked) {
      if (engine_.is_reference_cpu() && batch > 64) continue;  // see Engine::is_reference_cpu
      const int used = int(std::clamp<int64_t>(batch, 1, std::max<int64_t>(splits_.test.n, 1)));
      if (std::find(latency_batches_.begin(), latency_batches_.end(), used) == latency_batches_.end())
        latency_batches_.push_back(used);
    }
    settings_.max_latency_batch =
        latency_batches_.empty() ? 1 : *std::max_element(latency_batches_.begin(), latency_batches_.end());
    report_.batch_size_used = settings_.batch_size;
    report_.eval_batch_size_used = settings_.eval_batch_size;
    report_.latency_batches_used = latency_batches_;
  }

  // "--eval-batch-size 1000", or "--batch-size 100000 (capped at 50 by the data)".
  static std::string flag_value(const char* flag, int64_t asked, int64_t used) {
    std::string text = std::string(flag) + " " + std::to_string(asked);
    if (used != asked) text += " (capped at " + std::to_string(used) + " by the data)";
    return text;
  }

  // Refuses a configuration whose buffers cannot fit the device before any
  // of them is allocated and before anything is written: one line naming the
  // largest need, what is free, and the flag to lower. `models` live at the
  // same time (the teacher stays while a student trains).
  struct LiveModel {
    const Arch* arch;
    std::string role;       // "teacher", "student", "model"
    std::string arch_flag;  // the flag that chose the architecture
  };
  void check_memory(const std::vector<LiveModel>& models, bool soft_targets) {
    struct Part {
      int64_t bytes;
      std::string message;  // "<what> needs <bytes>"
      std::string advice;
    };
    // The soft targets: one row of teacher logits per training image.
    int64_t total = soft_targets ? splits_.train.n * int64_t(splits_.num_classes) * int64_t(sizeof(float)) : 0;
    std::vector<Part> parts;
    const int max_latency = opt_.latency_batches.empty()
                                ? 1
                                : *std::max_element(opt_.latency_batches.begin(), opt_.latency_batches.end());
    for (const auto& [arch, role, arch_flag] : models) {
      const MemoryNeed need = engine_.memory_need(*arch, settings_);
      total += need.total();
      const std::string of = " of " + role + " activations";
      parts.push_back({need.train_activations,
                       flag_value("--batch-size", opt_.batch_size, settings_.batch_size) + " needs " +
                           format_bytes(need.train_activations) + of,
                       "lower --batch-size"});
      parts.push_back({need.eval_activations,
                       flag_value("--eval-batch-size", opt_.eval_batch_size, settings_.eval_batch_size) + " needs " +
                           format_bytes(need.eval_activations) + of,
                       "lower --eval-batch-size"});
      parts.push_back({need.latency_activations,
                       flag_value("--latency-batches", max_latency, settings_.max_latency_batch) + " needs " +
                           format_bytes(need.latency_activations) + of,
                       "lower the largest of --latency-batches"});
      parts.push_back({need.state + need.workspace,
                       "the " + role + " (" + arch_flag + ") needs " + format_bytes(need.state + need.workspace) +
                           " for its " + std::to_string(arch->param_count) +
                           " parameters, their gradients and optimiser state, and workspaces",
                       "choose a smaller " + arch_flag});
    }
    const int64_t available = engine_.available_memory();
    if (total <= available) return;
    const Part& worst = *std::max_element(parts.begin(), parts.end(),
                                          [](const Part& a, const Part& b) { return a.bytes < b.bytes; });
    fail(worst.message + " (" + format_bytes(total) + " in all), " + format_bytes(available) + " available; " +
         worst.advice);
  }

  void prepare_out_dir() {
    out_dir_ = opt_.out_dir;
    if (!opt_.resume_dir.empty() && out_dir_.empty()) out_dir_ = opt_.resume_dir;
    const bool timestamped = out_dir_.empty();
    if (timestamped) out_dir_ = "runs/" + utc_timestamp("%Y%m%d-%H%M%S");
    std::error_code ec;
    fs::create_directories(out_dir_, ec);
    if (ec) fail("--out: cannot create directory '" + out_dir_ + "': " + ec.message());
    if (timestamped) {  // runs/latest -> the new run, replaced atomically
      const fs::path link = fs::path("runs") / "latest", tmp = fs::path("runs") / ".latest.tmp";
      fs::remove(tmp, ec);
      fs::create_directory_symlink(fs::path(out_dir_).filename(), tmp, ec);
      if (!ec) fs::rename(tmp, link, ec);
    }
    say("output: " + out_dir_);
  }

  // An arch string for this run's images; a rejection also names the data, since
  // its image size and class count are what the arch must fit.
  Arch parse_model_arch(const std::string& text, const char* flag) const {
    try {
      return parse_arch(text, input_, splits_.num_classes, flag);
    } catch (const Error& e) {
      fail(std::string(e.what()) + " (the data in " + opt_.data_dir + " has " + std::to_string(input_.h) + "x" +
           std::to_string(input_.w) + " images and " + std::to_string(splits_.num_classes) + " classes)");
    }
  }

  void check_input_shape(const Arch& arch, const std::string& path) const {
    if (!(arch.input == input_) || int(arch.output.size()) != splits_.num_classes)
      fail(path + ": model takes " + std::to_string(arch.input.c) + "x" + std::to_string(arch.input.h) + "x" +
           std::to_string(arch.input.w) + " images and " + std::to_string(arch.output.size()) +
           " classes, but " + opt_.data_dir + " has " + std::to_string(input_.h) + "x" + std::to_string(input_.w) +
           " images and " + std::to_string(splits_.num_classes) + " classes");
  }

  // ------------------------------------------------------------ the pipeline
  void train_and_report() {
    resume_ = load_resume_checkpoint();
    if (resume_) history_ = parse_metrics_csv_rows(resume_->history_csv);

    // Both arch strings are checked before any training, so a typo in the
    // student's costs seconds, not a trained teacher.
    const Arch student_arch = parse_model_arch(opt_.student_arch, "--student-arch");
    const ModelFile teacher_file = teacher_start();
    const bool distills = opt_.command != Command::TrainTeacher;
    std::vector<LiveModel> live = {{&teacher_file.arch, "teacher", teacher_flag()}};
    if (distills) live.push_back({&student_arch, "student", "--student-arch"});
    check_memory(live, distills);
    // Only now is anything written: a refused configuration leaves no trace.
    prepare_out_dir();
    install_interrupt_handlers();

    ModelReport teacher_report;
    // Past the teacher's phase, the interrupted run saved it already.
    auto teacher = ready_teacher(teacher_file, resume_ && resume_->phase != "teacher", teacher_report);

    if (opt_.command != Command::TrainTeacher) {
      const auto t0 = Clock::now();
      engine_.compute_soft_targets(*teacher);
      stop_if_interrupted("the soft-target pass");
      add_phase("soft targets", seconds_since(t0));

      std::vector<float> student_init(size_t(student_arch.param_count));
      init_params(student_arch, mix_seed(opt_.seed, kStudentSalt), student_init.data());

      const LossConfig distill{float(opt_.temperature), float(opt_.alpha)};
      train_student("student", student_arch, student_init, distill);
      if (!opt_.no_baseline) train_student("scratch", student_arch, student_init, LossConfig{1.0f, 0.0f});
    }
    report_.models.insert(report_.models.begin(), teacher_report);
    fs::remove(checkpoint_path());
    const std::string note = write_report_files(report_, out_dir_);
    if (!opt_.quiet) std::cout << "\n" << report_table(report_);
    if (!note.empty()) say(note);
    std::string written = "metrics.csv, summary.json, teacher.safetensors";
    if (opt_.command != Command::TrainTeacher) written += ", student.safetensors";
    if (opt_.command != Command::TrainTeacher && !opt_.no_baseline) written += ", student_scratch.safetensors";
    if (note.empty()) written += ", curves.png, latency.png";
    say("wrote " + written + " to " + out_dir_);
  }

  // The teacher's architecture and starting parameters: the file of
  // --teacher F (distill, sweep), or --teacher-arch freshly initialised.
  ModelFile teacher_start() const {
    if (!opt_.teacher_path.empty()) {
      ModelFile f = load_model_file(opt_.teacher_path);
      check_input_shape(f.arch, opt_.teacher_path);
      return f;
    }
    ModelFile f;
    f.arch = parse_model_arch(opt_.teacher_arch, "--teacher-arch");
    f.params.resize(size_t(f.arch.param_count));
    init_params(f.arch, mix_seed(opt_.seed, kTeacherSalt), f.params.data());
    return f;
  }
  std::string teacher_flag() const {
    return opt_.teacher_path.empty() ? "--teacher-arch" : "--teacher " + opt_.teacher_path;
  }

  // The teacher, ready to give soft targets: trained (continuing an
  // interrupted run's checkpoint), or loaded from the out dir when `saved`
  // (an interrupted run finished it), or given (--teacher F); then tested,
  // timed, and saved as teacher.safetensors when trained here.
  std::unique_ptr<ModelEngine> ready_teacher(const ModelFile& start, bool saved, ModelReport& rep) {
    auto teacher = engine_.create_model(start.arch, start.params, settings_);
    rep = new_report("teacher", start.arch);
    const bool given = !opt_.teacher_path.empty();
    if (!given) {
      if (saved) load_finished("teacher", *teacher, rep);
      else train_phase("teacher", *teacher, LossConfig{1.0f, 0.0f}, opt_.epochs_teacher, rep, opt_.seed);
    }
    // The soft targets come from the selected teacher: finish_model restores it.
    finish_model(*teacher, rep, given || !saved);
    stop_if_interrupted("the teacher's test evaluation and timing");
    if (!given)
      save_model_file(out_dir_ + "/teacher.safetensors", start.arch, teacher->get_params(), model_facts(rep));
    return teacher;
  }

  void train_student(const std::string& phase, const Arch& arch, const std::vector<float>& init,
                            const LossConfig& loss) {
    auto model = engine_.create_model(arch, init, settings_);
    ModelReport rep = new_report(phase, arch);
    const bool saved = resume_ && phase_rank(resume_->phase) > phase_rank(phase);
    if (saved) load_finished(phase, *model, rep);
    else train_phase(phase, *model, loss, opt_.epochs_student, rep, opt_.seed);
    finish_model(*model, rep, !saved);
    stop_if_interrupted("the " + phase + "'s test evaluation and timing");
    save_model_file(out_dir_ + "/" + phase_file(phase), arch, model->get_params(), model_facts(rep));
    report_.models.push_back(rep);
  }

  // A phase the interrupted run finished: its saved model (the selected
  // epoch) and what the run recorded about it.
  void load_finished(const std::string& phase, ModelEngine& model, ModelReport& rep) {
    const std::string path = out_dir_ + "/" + phase_file(phase);
    const ModelFile f = load_model_file(path);
    model.set_params(f.params);
    rep.curve = history_for(phase);
    const auto fact = [&](const char* key) {
      const auto it = f.metadata.find(key);
      if (it == f.metadata.end()) fail(path + ": metadata has no '" + key + "'; it was not written by this run");
      return it->second;
    };
    rep.selection = fact("selection");
    rep.selected_epoch = std::stoi(fact("selected_epoch"));
    rep.last_epoch_test_acc = std::stod(fact("last_epoch_test_accuracy"));
    rep.train_seconds = std::stod(fact("train_seconds"));  // the report's training time, not 0 s
  }

  static int phase_rank(const std::string& phase) {
    return phase == "teacher" ? 0 : phase == "student" ? 1 : 2;
  }
  static std::string phase_file(const std::string& phase) {
    return phase == "scratch" ? "student_scratch.safetensors" : phase + ".safetensors";
  }
  std::string checkpoint_path() const { return out_dir_ + "/checkpoint.safetensors"; }

  // ------------------------------------------------------------ sweep (kd/sweep.h)
  // One teacher and its soft targets, then every run of the grid; each
  // finished run is recorded in sweep_state.json, so a resumed sweep skips it.
  void sweep() {
    const auto t0 = Clock::now();
    // Every architecture is checked before any training.
    const std::vector<std::string> texts =
        opt_.student_archs.empty() ? default_sweep_archs(splits_.num_classes) : opt_.student_archs;
    std::vector<Arch> archs;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string flag =
          texts.size() > 1 ? "--student-arch (value " + std::to_string(i + 1) + " of " + std::to_string(texts.size()) + ")"
                           : "--student-arch";
      archs.push_back(parse_model_arch(texts[i], flag.c_str()));
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
        sweep_plan(arch_texts, or_default(opt_.temperatures, kDefaultSweepTemperatures),
                   or_default(opt_.alphas, kDefaultSweepAlphas), opt_.seeds, opt_.no_baseline);

    if (!opt_.export_best.empty()) {
      const fs::path parent = fs::absolute(opt_.export_best).parent_path();
      if (!fs::is_directory(parent))
        fail("--export-best: directory " + parent.string() + " does not exist (for " + opt_.export_best + ")");
    }
    const ModelFile teacher_file = teacher_start();
    const Arch* largest = &*std::max_element(
        archs.begin(), archs.end(), [](const Arch& a, const Arch& b) { return a.param_count < b.param_count; });
    check_memory({{&teacher_file.arch, "teacher", teacher_flag()}, {largest, "student", "--student-arch"}}, true);

    SweepState state;
    state.fingerprint = sweep_fingerprint();
    if (!opt_.resume_dir.empty()) state = load_sweep_state();
    prepare_out_dir();
    install_interrupt_handlers();
    const std::string state_path = out_dir_ + "/sweep_state.json";
    // The teacher: an interrupted one continues its checkpoint; a finished one is loaded.
    if (!state.teacher_done && !opt_.resume_dir.empty() && fs::exists(checkpoint_path())) {
      resume_ = load_resume_checkpoint();
      history_ = parse_metrics_csv_rows(resume_->history_csv);
    }
    if (state.teacher_done) history_ = parse_metrics_csv_rows(state.teacher_history_csv);
    write_file_atomic(state_path, sweep_state_json(state));
    ModelReport teacher_report;
    auto teacher = ready_teacher(teacher_file, state.teacher_done, teacher_report);
    resume_.reset();  // students never continue a checkpoint: an interrupted one trains again
    if (state.teacher_done) teacher_report.train_seconds = state.teacher_train_seconds;
    else state.teacher_train_seconds = teacher_report.train_seconds;
    state.teacher_done = true;
    state.teacher_history_csv.clear();
    for (const EpochRecord& e : history_for("teacher")) state.teacher_history_csv += metrics_csv_row(e);
    write_file_atomic(state_path, sweep_state_json(state));
    fs::remove(checkpoint_path());
    sweep_stop_note_ = "the teacher and every finished run are recorded in " + state_path +
                       "; a resumed sweep skips them and trains the interrupted run again. " + resume_hint();

    std::map<std::string, SweepRun> finished;
    for (const SweepRun& r : state.runs) finished[sweep_run_key(r)] = r;
    int skipped = 0;
    for (const SweepRun& r : plan) skipped += int(finished.count(sweep_run_key(r)));
    say("sweep: " + std::to_string(archs.size()) + " architectures, " + std::to_string(plan.size()) + " runs of " +
        std::to_string(opt_.epochs_student) + " epochs" +
        (skipped ? " (" + std::to_string(skipped) + " finished before, skipped)" : ""));
    std::error_code ec;
    fs::create_directories(out_dir_ + "/models", ec);
    if (ec) fail("--out: cannot create directory '" + out_dir_ + "/models': " + ec.message());
    // One cheap check before many models: is ONNX Runtime there at all?
    std::string ort_why;
    const bool ort_ready = !opt_.no_ort && !ort_version(ort_why).empty();
    if (!opt_.no_ort && !ort_ready) ort_note_ = ort_why;
    std::vector<SweepRun> runs;
    bool soft_targets_ready = false;
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto it = finished.find(sweep_run_key(plan[i]));
      if (it != finished.end()) {
        runs.push_back(it->second);
        continue;
      }
      if (!soft_targets_ready) {  // only when a run is left to train (a finished sweep resumed needs none)
        const auto s0 = Clock::now();
        engine_.compute_soft_targets(*teacher);
        stop_if_interrupted("the soft-target pass");
        add_phase("soft targets", seconds_since(s0));
        soft_targets_ready = true;
      }
      const Arch& arch = archs[size_t(std::find(arch_texts.begin(), arch_texts.end(), plan[i].arch) - arch_texts.begin())];
      say("[sweep " + std::to_string(i + 1) + "/" + std::to_string(plan.size()) + "] " + sweep_run_key(plan[i]));
      // ONNX Runtime's latency, like the device's, depends on the architecture
      // only: its first run trained measures it, unless a finished one did
      // (state.runs holds every finished run, this sweep's and before).
      const bool ort_timed = std::any_of(state.runs.begin(), state.runs.end(), [&](const SweepRun& r) {
        return r.arch == plan[i].arch && r.ort_b1_ms > 0;
      });
      runs.push_back(train_sweep_run(plan[i], arch, ort_ready && !ort_timed));
      state.runs.push_back(runs.back());
      write_file_atomic(state_path, sweep_state_json(state));
    }
    sweep_stop_note_.clear();

    SweepResult result;
    report_.models = {teacher_report};
    report_.total_seconds = seconds_since(t0);
    result.run = report_;
    result.runs = runs;
    result.configs = aggregate_sweep(runs);
    result.constraints = {opt_.max_latency_us, opt_.max_params, opt_.min_accuracy};
    result.recommended = recommend_student(result.configs, result.constraints, result.why_none);
    result.ort_note = opt_.no_ort ? "ONNX Runtime latencies skipped (--no-ort)" : ort_note_;
    const std::string recommended_path = out_dir_ + "/recommended.safetensors";
    fs::remove(recommended_path, ec);  // a resumed sweep may choose differently
    if (result.recommended >= 0) save_recommended(result.configs[size_t(result.recommended)], recommended_path);
    const std::string note = write_sweep_files(result, out_dir_);
    if (!opt_.quiet) std::cout << "\n" << sweep_table(result);
    if (!note.empty()) say(note);
    say("wrote sweep.csv, sweep.json" + std::string(note.empty() ? ", pareto.png" : "") +
        (result.recommended >= 0 ? ", recommended.safetensors" : "") + " to " + out_dir_);
    if (result.recommended < 0)
      fail(result.why_none + "; every result is in " + out_dir_ + "/sweep.csv" +
           (opt_.export_best.empty() ? "" : ", and " + opt_.export_best + " was not written"));
    say(recommendation_line(result));
    if (!opt_.export_best.empty()) export_model_file(recommended_path, opt_.export_best, opt_.quiet);
  }

  // Trains, tests and times one run of the grid (`time_ort`: under ONNX
  // Runtime too) and saves its weights in models/. Its seed: sweep_run_seed;
  // its init and shuffles derive from it as `kdtrain run --seed <seed>`
  // derives the student's and the baseline's.
  SweepRun train_sweep_run(SweepRun run, const Arch& arch, bool time_ort) {
    const std::string phase = run.kind == "distilled" ? "student" : "scratch";
    run.seed = sweep_run_seed(opt_.seed, run.seed_index);
    std::vector<float> init(size_t(arch.param_count));
    init_params(arch, mix_seed(run.seed, kStudentSalt), init.data());
    TrainSettings settings = settings_;
    settings.seed = run.seed;  // the dropout streams
    auto model = engine_.create_model(arch, init, settings);
    ModelReport rep = new_report(phase, arch);
    train_phase(phase, *model, LossConfig{float(run.temperature), float(run.alpha)}, opt_.epochs_student, rep, run.seed);
    finish_model(*model, rep, true, /*ort=*/false);
    stop_if_interrupted("the test evaluation and timing of " + sweep_run_key(run));
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
      OrtLatencyOptions ort_options;
      ort_options.batches = batches;
      const OrtLatency ort = ort_latency(arch, model->get_params(), ort_options);
      for (const LatencyRecord& l : ort.latency) (l.batch == 1 ? run.ort_b1_ms : run.ort_large_ms) = l.median_ms;
      if (!ort.measured) ort_note_ = ort.note;
      add_phase("ONNX Runtime latency", seconds_since(o0));
    }
    run.model_file = "models/" + sweep_file_stem(run) + ".safetensors";
    std::map<std::string, std::string> facts = model_facts(rep);
    facts["seed"] = std::to_string(run.seed);
    facts["sweep_run"] = sweep_run_key(run);
    save_model_file(out_dir_ + "/" + run.model_file, arch, model->get_params(), facts);
    return run;
  }

  // "distilled_flatten_dense-32_relu_dense-10_T4_a0.9_s0": readable and unique per run key.
  static std::string sweep_file_stem(const SweepRun& r) {
    std::string arch;
    for (char ch : r.arch) arch += ch == ',' ? '_' : ch == ':' ? '-' : std::isalnum((unsigned char)ch) || ch == '.' ? ch : '~';
    char tail[96];
    if (r.kind == "distilled") std::snprintf(tail, sizeof tail, "_T%g_a%g_s%d", r.temperature, r.alpha, r.seed_index);
    else std::snprintf(tail, sizeof tail, "_s%d", r.seed_index);
    return r.kind + "_" + arch + tail;
  }

  // recommended.safetensors: the chosen configuration's kept seed, with the
  // sweep's reasons in its metadata.
  void save_recommended(const SweepConfig& c, const std::string& path) const {
    ModelFile f = load_model_file(out_dir_ + "/" + c.model_file);
    std::map<std::string, std::string> facts = f.metadata;
    facts["recommended_by"] = "kdtrain sweep";
    facts["sweep_test_accuracy_mean"] = std::to_string(c.acc_mean);
    facts["sweep_latency_b1_us"] = std::to_string(c.latency_b1_us);
    facts["sweep_source"] = c.model_file;
    save_model_file(path, f.arch, f.params, facts);
  }

  // "recommended: MLP ... distilled T 4 alpha 0.9, 97.91% ..., -> recommended.safetensors".
  std::string recommendation_line(const SweepResult& r) const {
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
    if (opt_.max_latency_us) add(g("--max-latency-us ", *opt_.max_latency_us));
    if (opt_.max_params) add("--max-params " + std::to_string(*opt_.max_params));
    if (opt_.min_accuracy) add(g("--min-accuracy ", *opt_.min_accuracy));
    return "recommended: " + c.kind + " " + c.arch +
           (c.kind == "distilled" ? g(" (T ", c.temperature) + g(", alpha ", c.alpha) + ")" : std::string()) + ": " + buf + (constraints.empty() ? " (the most accurate; no constraints given)" : " under " + constraints) +
           "; weights of " + c.model_file + " in " + out_dir_ + "/recommended.safetensors";
  }

  // Settings a resumed sweep must share with the interrupted one (the grid may differ).
  std::string sweep_fingerprint() const {
    return options_fingerprint(opt_) + " epochs_teacher=" + std::to_string(opt_.epochs_teacher) +
           " epochs_student=" + std::to_string(opt_.epochs_student) + " test_limit=" + std::to_string(opt_.test_limit) +
           " teacher_file=" + opt_.teacher_path;
  }

  SweepState load_sweep_state() const {
    if (!opt_.out_dir.empty() && fs::weakly_canonical(opt_.out_dir) != fs::weakly_canonical(opt_.resume_dir))
      fail("--resume: a sweep continues in its own directory " + opt_.resume_dir + "; leave out --out");
    const std::string path = opt_.resume_dir + "/sweep_state.json";
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("--resume: no sweep state at " + path + " (not the directory of a 'kdtrain sweep')");
    std::stringstream text;
    text << in.rdbuf();
    SweepState state = parse_sweep_state(text.str(), path);
    if (state.fingerprint != sweep_fingerprint())
      fail("--resume: " + path + " was written with other settings (" + state.fingerprint +
           "); pass the same flags as the interrupted sweep (the lists of the grid may differ)");
    return state;
  }

  // ------------------------------------------------------------ one phase
  // Shuffles come from (seed, phase, epoch): --seed, or a sweep run's seed.
  void train_phase(const std::string& phase, ModelEngine& model, const LossConfig& loss, int epochs,
                   ModelReport& rep, uint64_t seed) {
    const int batch = settings_.batch_size;
    int first_epoch = 1;
    int64_t resume_begin = 0;
    EpochSums carried;  // the interrupted epoch's steps before the resume
    best_ = BestEpoch{};
    if (resume_ && resume_->phase == phase) {
      model.set_params(resume_->params);
      model.set_optim_state(resume_->optim);
      if (resume_->best_epoch > 0) {
        model.set_best(resume_->best_params);
        for (const EpochRecord& e : history_for(phase))
          if (e.epoch == resume_->best_epoch) best_ = BestEpoch{e.epoch, e.val_acc, e.val_loss};
      }
      first_epoch = resume_->epochs_done + 1;
      resume_begin = std::min<int64_t>(resume_batches_done_ * int64_t(batch), splits_.train.n);
      carried.loss = resume_->epoch_loss_sum;
      carried.kl = resume_->epoch_kl_sum;
      carried.steps = resume_->epoch_steps;
      rep.curve = history_for(phase);
      say("resuming " + phase + " at epoch " + std::to_string(first_epoch) +
          (resume_begin ? ", sample " + std::to_string(resume_begin) : ""));
    }
    const int64_t n = splits_.train.n;
    const int64_t batches = (n + batch - 1) / batch;
    const auto phase_t0 = Clock::now();
    for (int epoch = first_epoch; epoch <= epochs; ++epoch) {
      const std::vector<int32_t> order = epoch_order(n, seed, phase, epoch);
      model.begin_epoch(order);
      const auto t0 = Clock::now();
      const int64_t start = epoch == first_epoch ? resume_begin : 0;
      EpochSums sums = epoch == first_epoch ? carried : EpochSums{};
      for (int64_t begin = start; begin < n; begin += batch) {
        const int b = int(std::min<int64_t>(batch, n - begin));
        model.train_step(begin, b, loss);
        const int64_t batch_index = begin / batch + 1;
        if (tty_ && (batch_index % 50 == 0 || batch_index == batches)) {
          const double s = seconds_since(t0);
          const double rate = double(begin + b - start) / std::max(s, 1e-9);
          std::printf("\r[%s] epoch %d/%d  batch %lld/%lld  %.0f samples/s  ETA %s   ", phase.c_str(), epoch, epochs,
                      (long long)batch_index, (long long)batches, rate,
                      format_duration(double(n - begin - b) / std::max(rate, 1e-9)).c_str());
          std::fflush(stdout);
        }
        if (interrupt_after_steps_ > 0 && ++steps_run_ == interrupt_after_steps_) request_interrupt();
        if (interrupted()) {
          sums.add(model.end_epoch());  // drains the device queue
          stop_in_epoch(phase, epoch, model, batch_index, sums, "after batch " + std::to_string(batch_index));
        }
      }
      sums.add(model.end_epoch());
      const double secs = seconds_since(t0);
      stop_if_not_finite(phase, epoch, sums);
      const EvalResult val = model.evaluate(SplitId::Val);
      // The epoch's steps are done; only its validation is redone on resume.
      if (interrupted()) stop_in_epoch(phase, epoch, model, batches, sums, "during validation");
      EpochRecord e;
      e.phase = phase;
      e.epoch = epoch;
      e.train_loss = sums.mean_loss();
      e.train_kl = sums.mean_kl();
      e.val_loss = val.loss;
      e.val_acc = val.accuracy();
      e.seconds = secs;
      e.samples_per_s = double(n - (epoch == first_epoch ? resume_begin : 0)) / std::max(secs, 1e-9);
      rep.curve.push_back(e);
      history_.push_back(e);
      if (select_best() && best_.beaten_by(e)) {
        model.keep_best();
        best_ = BestEpoch{epoch, e.val_acc, e.val_loss};
      }
      if (tty_) std::printf("\r%*s\r", 100, "");
      if (!opt_.quiet) {
        std::printf("[%s] epoch %d/%d  loss %.4f%s  val loss %.4f  val acc %.2f%%  %.1fs  %.0f samples/s\n",
                    phase.c_str(), epoch, epochs, e.train_loss,
                    loss.alpha > 0 ? (" (KL " + std::to_string(e.train_kl).substr(0, 6) + ")").c_str() : "",
                    e.val_loss, 100 * e.val_acc, secs, e.samples_per_s);
        std::fflush(stdout);
      }
      save_checkpoint(phase, epoch, 0, model);
    }
    rep.train_seconds = seconds_since(phase_t0);
    rep.selection = select_best() ? "best" : "last";
    rep.selected_epoch = select_best() ? best_.epoch : (rep.curve.empty() ? 0 : rep.curve.back().epoch);
    add_phase(phase + " training", rep.train_seconds);
  }

  void stop_if_not_finite(const std::string& phase, int epoch, const EpochSums& sums) const {
    if (sums.finite) return;
    if (!sweep_stop_note_.empty())
      fail(phase + " training: non-finite loss at step " + std::to_string(sums.first_bad_step + 1) + " (epoch " +
           std::to_string(epoch) + "); stopped. Try a smaller --lr, or leave this configuration out: " +
           sweep_stop_note_);
    fail(phase + " training: non-finite loss at step " + std::to_string(sums.first_bad_step + 1) + " (epoch " +
         std::to_string(epoch) + "); stopped. The last good checkpoint is " +
         (fs::exists(checkpoint_path()) ? checkpoint_path() : std::string("(none: failed in the first epoch)")) +
         ". Try a smaller --lr.");
  }

  std::string resume_hint() const {
    return "Resume with: kdtrain " + std::string(command_name(opt_.command)) + " --resume " + out_dir_ +
           " (and the same flags)";
  }

  // A stop request inside an epoch: the steps so far go into a checkpoint
  // (batches_done of them, and their loss sums), then the run ends non-zero.
  [[noreturn]] void stop_in_epoch(const std::string& phase, int epoch, ModelEngine& model, int64_t batches_done,
                                  const EpochSums& sums, const std::string& where) {
    stop_if_not_finite(phase, epoch, sums);  // never a checkpoint of diverged weights
    std::fflush(stdout);
    if (!sweep_stop_note_.empty())
      fail("interrupted (" + std::string(interrupt_reason()) + ") during " + phase + " epoch " + std::to_string(epoch) +
           " " + where + "; " + sweep_stop_note_);
    save_checkpoint(phase, epoch - 1, batches_done, model, sums);
    fail("interrupted (" + std::string(interrupt_reason()) + ") during " + phase + " epoch " + std::to_string(epoch) +
         " " + where + "; checkpoint written to " + checkpoint_path() + ". " + resume_hint());
  }

  // A stop request outside the training steps (test evaluation, timing, soft
  // targets): the last checkpoint already holds everything done before it.
  void stop_if_interrupted(const std::string& during) const {
    if (!interrupted()) return;
    std::fflush(stdout);
    const std::string what = "interrupted (" + std::string(interrupt_reason()) + ") during " + during;
    if (!sweep_stop_note_.empty()) fail(what + "; " + sweep_stop_note_);
    if (fs::exists(checkpoint_path())) fail(what + "; the last checkpoint is " + checkpoint_path() + ". " + resume_hint());
    fail(what + ", before any training checkpoint was written; nothing to resume: run the command again");
  }

  void save_checkpoint(const std::string& phase, int epochs_done, int64_t batches_done, ModelEngine& model,
                       const EpochSums& sums = {}) {
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

  std::unique_ptr<TrainingCheckpoint> load_resume_checkpoint() {
    if (opt_.resume_dir.empty()) return nullptr;
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
    return ck;
  }

  std::vector<EpochRecord> history_for(const std::string& phase) const {
    std::vector<EpochRecord> out;
    for (const EpochRecord& e : history_)
      if (e.phase == phase) out.push_back(e);
    return out;
  }

  // ------------------------------------------------------------ per-model results
  ModelReport new_report(const std::string& role, const Arch& arch) const {
    ModelReport r;
    r.role = role;
    r.arch = arch.text;
    r.params = arch.param_count;
    r.bytes = arch.param_count * int64_t(sizeof(float));
    return r;
  }

  // Tests and times the selected epoch. `holds_last`: the model holds the
  // last epoch's parameters (not a saved selected model), so when another
  // epoch was selected the last one is tested first, then the kept one restored.
  // `ort`: time it under ONNX Runtime too (unless --no-ort); a sweep does that
  // once per architecture instead.
  void finish_model(ModelEngine& model, ModelReport& rep, bool holds_last, bool ort = true) {
    const auto t0 = Clock::now();
    const int last = rep.curve.empty() ? 0 : rep.curve.back().epoch;
    const bool earlier_selected = holds_last && rep.selected_epoch != last;
    if (earlier_selected) {
      rep.last_epoch_test_acc = model.evaluate(SplitId::Test).accuracy();
      model.restore_best();
    }
    const EvalResult test = model.evaluate(SplitId::Test);
    add_phase(rep.role + " evaluation", seconds_since(t0));
    rep.test_acc = test.accuracy();
    rep.test_errors = test.n - test.correct;
    rep.test_loss = test.loss;
    if (holds_last && !earlier_selected) rep.last_epoch_test_acc = rep.test_acc;
    std::string which;
    if (rep.selected_epoch > 0 && rep.selected_epoch != last)
      which = " at epoch " + std::to_string(rep.selected_epoch) + " of " + std::to_string(last) +
              " (best validation accuracy; the last epoch's: " +
              std::to_string(100 * rep.last_epoch_test_acc).substr(0, 6) + "%)";
    else if (rep.selected_epoch > 0)
      which = " at epoch " + std::to_string(rep.selected_epoch) + " (" + rep.selection + ")";
    say(rep.role + ": test accuracy " + std::to_string(100 * rep.test_acc).substr(0, 6) + "% (" +
        std::to_string(rep.test_errors) + " errors of " + std::to_string(test.n) + ")" + which);
    const auto l0 = Clock::now();
    rep.latency = measure_latencies(model);
    add_phase(rep.role + " latency", seconds_since(l0));
    if (ort && !opt_.no_ort) {  // where it will be deployed: the exported model under ONNX Runtime (CPU)
      const auto o0 = Clock::now();
      rep.ort = ort_latency(model.arch(), model.get_params());
      add_phase(rep.role + " ONNX Runtime latency", seconds_since(o0));
    }
  }

  // At the batch sizes of size_batches(); stops early on a stop request.
  std::vector<LatencyRecord> measure_latencies(ModelEngine& model) {
    const int repeats = engine_.is_reference_cpu() ? 3 : 50;
    std::vector<LatencyRecord> out;
    for (size_t i = 0; i < latency_batches_.size() && !interrupted(); ++i)
      out.push_back(model.measure_latency(latency_batches_[i], repeats));
    return out;
  }

  std::map<std::string, std::string> model_facts(const ModelReport& rep) const {
    char last_acc[32], train_seconds[32];
    std::snprintf(last_acc, sizeof last_acc, "%.9g", rep.last_epoch_test_acc);
    std::snprintf(train_seconds, sizeof train_seconds, "%.9g", rep.train_seconds);
    return {{"role", rep.role},
            {"train_seconds", train_seconds},
            {"test_accuracy", std::to_string(rep.test_acc)},
            {"selection", rep.selection},
            {"selected_epoch", std::to_string(rep.selected_epoch)},
            {"last_epoch_test_accuracy", last_acc},
            {"seed", std::to_string(opt_.seed)},
            {"data", opt_.data_dir},
            {"trained_on", report_.device},
            {"created", report_.started_at}};
  }

  // ------------------------------------------------------------ eval / latency subcommands
  void eval_model_file() {
    ModelFile f = load_model_file(opt_.model_path);
    check_input_shape(f.arch, opt_.model_path);
    check_memory({{&f.arch, "model", "--model " + opt_.model_path}}, false);
    auto model = engine_.create_model(f.arch, f.params, settings_);
    for (SplitId split : {SplitId::Val, SplitId::Test}) {
      const EvalResult r = model->evaluate(split);
      std::printf("%s %s: accuracy %.2f%% (%lld errors of %lld), loss %.4f\n", opt_.model_path.c_str(),
                  split == SplitId::Val ? "val " : "test", 100 * r.accuracy(), (long long)(r.n - r.correct),
                  (long long)r.n, r.loss);
    }
  }

  void latency_of_model_file() {
    ModelFile f = load_model_file(opt_.model_path);
    check_input_shape(f.arch, opt_.model_path);
    check_memory({{&f.arch, "model", "--model " + opt_.model_path}}, false);
    auto model = engine_.create_model(f.arch, f.params, settings_);
    std::printf("%s on %s\n%8s %12s %12s %14s\n", opt_.model_path.c_str(), report_.device.c_str(), "batch",
                "median ms", "p90 ms", "samples/s");
    for (const LatencyRecord& r : measure_latencies(*model))
      std::printf("%8d %12.4f %12.4f %14.0f\n", r.batch, r.median_ms, r.p90_ms, r.samples_per_s);
    if (!opt_.no_ort) std::printf("%s", ort_latency_text(ort_latency(f.arch, f.params)).c_str());
  }

  // ------------------------------------------------------------ helpers
  void add_phase(const std::string& name, double s) { report_.phases.push_back({name, s}); }
  void say(const std::string& line) const {
    if (!opt_.quiet) std::cout << line << std::endl;
  }

  const Options& opt_;
  Engine& engine_;
  TrainSettings settings_;
  bool tty_ = false;
  Splits splits_;
  Shape input_;
  std::string out_dir_;
  RunReport report_;
  std::vector<EpochRecord> history_;
  std::unique_ptr<TrainingCheckpoint> resume_;
  int64_t resume_batches_done_ = 0;
  std::vector<int> latency_batches_;  // what size_batches() made of --latency-batches
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
  BestEpoch best_;
  // --val-size 0 leaves nothing to select on: best falls back to last.
  bool select_best() const { return opt_.select == SelectRule::Best && splits_.val.n > 0; }
  int64_t interrupt_after_steps_ = 0, steps_run_ = 0;
  // While a sweep trains its students: what a stop or failure says about
  // resuming, instead of pointing at a checkpoint (students write none).
  std::string sweep_stop_note_;
  std::string ort_note_;  // why a sweep has no ONNX Runtime latencies, or ""

};

}  // namespace

int run_command(const Options& opt, Engine& engine) {
  clear_interrupt();
  Pipeline pipeline(opt, engine);
  return pipeline.run();
}

}  // namespace kd
