// The device-agnostic orchestrator: phases, epochs, shuffles, validation,
// checkpoints, SIGINT/SIGTERM/SIGHUP, non-finite-loss stops, the memory check
// and the report (SPEC sections 2-3).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
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
#include "kd/onnx_runtime.h"
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
constexpr uint64_t kTeacherSalt = 1, kStudentSalt = 2;
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
    const bool soft_targets = opt_.command == Command::Run || opt_.command == Command::Distill;
    int64_t largest_eval = std::max(splits_.val.n, splits_.test.n);
    if (soft_targets) largest_eval = std::max(largest_eval, splits_.train.n);
    settings_.batch_size = int(std::min<int64_t>(opt_.batch_size, splits_.train.n));
    settings_.eval_batch_size = int(std::clamp<int64_t>(opt_.eval_batch_size, 1, std::max<int64_t>(largest_eval, 1)));
    latency_batches_.clear();
    for (int batch : opt_.latency_batches) {
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
    // Teacher: trained here, or loaded for `distill --teacher F`.
    Arch teacher_arch;
    std::vector<float> teacher_params;
    if (opt_.command == Command::Distill) {
      ModelFile f = load_model_file(opt_.teacher_path);
      check_input_shape(f.arch, opt_.teacher_path);
      teacher_arch = f.arch;
      teacher_params = f.params;
    } else {
      teacher_arch = parse_model_arch(opt_.teacher_arch, "--teacher-arch");
      teacher_params.resize(size_t(teacher_arch.param_count));
      init_params(teacher_arch, mix_seed(opt_.seed, kTeacherSalt), teacher_params.data());
    }
    const bool distills = opt_.command != Command::TrainTeacher;
    std::vector<LiveModel> live = {
        {&teacher_arch, "teacher", opt_.command == Command::Distill ? "--teacher " + opt_.teacher_path : "--teacher-arch"}};
    if (distills) live.push_back({&student_arch, "student", "--student-arch"});
    check_memory(live, distills);
    // Only now is anything written: a refused configuration leaves no trace.
    prepare_out_dir();
    install_interrupt_handlers();

    auto teacher = engine_.create_model(teacher_arch, teacher_params, settings_);
    ModelReport teacher_report = new_report("teacher", teacher_arch);
    bool teacher_saved = false;  // holds the selected epoch already, saved by the interrupted run
    if (opt_.command != Command::Distill) {
      teacher_saved = resume_ && resume_->phase != "teacher";
      if (teacher_saved) load_finished("teacher", *teacher, teacher_report);
      else train_phase("teacher", *teacher, LossConfig{1.0f, 0.0f}, opt_.epochs_teacher, teacher_report);
    }
    // The soft targets below come from the selected teacher: finish_model restores it.
    finish_model(*teacher, teacher_report, !teacher_saved);
    stop_if_interrupted("the teacher's test evaluation and timing");
    if (opt_.command != Command::Distill)
      save_model_file(out_dir_ + "/teacher.safetensors", teacher_arch, teacher->get_params(),
                      model_facts(teacher_report));

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

  void train_student(const std::string& phase, const Arch& arch, const std::vector<float>& init,
                            const LossConfig& loss) {
    auto model = engine_.create_model(arch, init, settings_);
    ModelReport rep = new_report(phase, arch);
    const bool saved = resume_ && phase_rank(resume_->phase) > phase_rank(phase);
    if (saved) load_finished(phase, *model, rep);
    else train_phase(phase, *model, loss, opt_.epochs_student, rep);
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
  }

  static int phase_rank(const std::string& phase) {
    return phase == "teacher" ? 0 : phase == "student" ? 1 : 2;
  }
  static std::string phase_file(const std::string& phase) {
    return phase == "scratch" ? "student_scratch.safetensors" : phase + ".safetensors";
  }
  std::string checkpoint_path() const { return out_dir_ + "/checkpoint.safetensors"; }

  // ------------------------------------------------------------ one phase
  void train_phase(const std::string& phase, ModelEngine& model, const LossConfig& loss, int epochs,
                   ModelReport& rep) {
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
      const std::vector<int32_t> order = epoch_order(n, opt_.seed, phase, epoch);
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
    save_checkpoint(phase, epoch - 1, batches_done, model, sums);
    std::fflush(stdout);
    fail("interrupted (" + std::string(interrupt_reason()) + ") during " + phase + " epoch " + std::to_string(epoch) +
         " " + where + "; checkpoint written to " + checkpoint_path() + ". " + resume_hint());
  }

  // A stop request outside the training steps (test evaluation, timing, soft
  // targets): the last checkpoint already holds everything done before it.
  void stop_if_interrupted(const std::string& during) const {
    if (!interrupted()) return;
    std::fflush(stdout);
    const std::string what = "interrupted (" + std::string(interrupt_reason()) + ") during " + during;
    if (fs::exists(checkpoint_path())) fail(what + "; the last checkpoint is " + checkpoint_path() + ". " + resume_hint());
    fail(what + ", before any training checkpoint was written; nothing to resume: run the command again");
  }

  void save_checkpoint(const std::string& phase, int epochs_done, int64_t batches_done, ModelEngine& model,
                       const EpochSums& sums = {}) {
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
  void finish_model(ModelEngine& model, ModelReport& rep, bool holds_last) {
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
    if (!opt_.no_ort) {  // where it will be deployed: the exported model under ONNX Runtime (CPU)
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
    char last_acc[32];
    std::snprintf(last_acc, sizeof last_acc, "%.9g", rep.last_epoch_test_acc);
    return {{"role", rep.role},
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
};

}  // namespace

int run_command(const Options& opt, Engine& engine) {
  clear_interrupt();
  Pipeline pipeline(opt, engine);
  return pipeline.run();
}

}  // namespace kd
