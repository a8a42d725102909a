// The shared set-up and per-model steps of every command (kd/session.h).
#include "kd/session.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/onnx_runtime.h"
#include "kd/params.h"
#include "kd/safetensors.h"
#include "kd/seed.h"
#include "kd/sweep.h"

namespace fs = std::filesystem;

namespace kd {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string utc_timestamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

namespace {

using Clock = std::chrono::steady_clock;

TrainSettings settings_from(const Options& o) {
  TrainSettings s;
  s.batch_size = o.batch_size;
  s.eval_batch_size = o.eval_batch_size;
  s.optimizer = o.optimizer;
  s.adam.lr = float(o.lr);
  s.adam.weight_decay = float(o.weight_decay);
  s.adam.decoupled_weight_decay = true;  // AdamW; with weight_decay 0 exactly Adam (the shrink factor is 1)
  s.sgd.lr = float(o.lr);
  s.sgd.momentum = float(o.momentum);
  s.sgd.weight_decay = float(o.weight_decay);
  s.augment = AugmentParams{o.augment, float(o.shift), float(o.rotate), float(o.scale.lo), float(o.scale.hi)};
  s.seed = o.seed;
  s.deterministic = o.deterministic;
  s.dense_impl = o.dense_impl;
  return s;
}

// 35,433,480,192 -> "33.0 GiB"; below a GiB in MiB.
std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double gib = double(bytes) / double(int64_t(1) << 30);
  if (gib >= 1) std::snprintf(buf, sizeof buf, "%.1f GiB", gib);
  else std::snprintf(buf, sizeof buf, "%.0f MiB", double(bytes) / double(1 << 20));
  return buf;
}

// "--eval-batch-size 1000", or "--batch-size 100000 (capped at 50 by the data)".
std::string flag_value(const char* flag, int64_t asked, int64_t used) {
  std::string text = std::string(flag) + " " + std::to_string(asked);
  if (used != asked) text += " (capped at " + std::to_string(used) + " by the data)";
  return text;
}

}  // namespace

Session::Session(const Options& opt, Engine& engine, Comm& comm)
    : opt_(opt), engine_(engine), comm_(comm), settings_(settings_from(opt)), state_(opt) {
  // No live progress line under MPI: mpirun hands each rank a pseudo-terminal,
  // and rank 0's dispatch thread prints its "[sweep] k/N done" lines while a
  // run trains, which would land behind a half-drawn progress line.
  tty_ = !quiet() && isatty(STDOUT_FILENO) && comm_.size() == 1;
  report_.options = opt_;
  report_.started_at = utc_timestamp("%Y-%m-%dT%H:%M:%SZ");
}

void Session::say(const std::string& line) const {
  if (!quiet()) std::cout << line << std::endl;
}

void Session::load_data() {
  const auto t0 = Clock::now();
  DataOptions data_options;
  data_options.channels_last = opt_.channels_last;
  data_options.image_h = opt_.image_size.h;
  data_options.image_w = opt_.image_size.w;
  data_options.threads = opt_.threads;
  splits_ = load_splits(opt_.data_dir, data_options, opt_.val_size, opt_.train_limit);
  if (!splits_.note.empty()) say(splits_.note);
  splits_.normalization = choose_normalization();
  if (opt_.test_limit > 0 && opt_.test_limit < splits_.test.n) splits_.test = splits_.test.slice(0, opt_.test_limit);
  engine_.load(splits_);
  report_.device = engine_.device_description();
  report_.versions = engine_.versions();
  report_.data_dir = opt_.data_dir;  // format, input, classes: below, with the normalisation
  report_.train_n = splits_.train.n;
  report_.val_n = splits_.val.n;
  report_.test_n = splits_.test.n;
  report_.num_classes = splits_.num_classes;
  report_.data_format = splits_.format;
  report_.input = splits_.train.size_text();
  report_.class_names = splits_.class_names;
  report_.normalization = normalization_text(splits_.normalization);
  input_ = Shape{splits_.train.c, splits_.train.h, splits_.train.w, false};
  add_phase("load data", seconds_since(t0));
  say("data: " + opt_.data_dir + " (" + splits_.format + ", " + std::to_string(splits_.train.n) + " train, " +
      std::to_string(splits_.val.n) + " val, " + std::to_string(splits_.test.n) + " test, " + report_.input + ", " +
      std::to_string(splits_.num_classes) + " classes; normalisation mean/std " + report_.normalization + ")");
  say("device: " + report_.device);
  size_batches();
}

// --normalize (kd/config.h) for the loaded data, unless a saved model is
// read (--model, --teacher): a model runs on the normalisation it was trained
// with, so the model's own wins, and a different --normalize is refused.
Normalization Session::choose_normalization() const {
  const Dataset& train = splits_.train;
  const std::string& saved_path = !opt_.model_path.empty() ? opt_.model_path : opt_.teacher_path;
  if (!saved_path.empty()) {
    const std::optional<Normalization> saved = saved_normalization(load_safetensors(saved_path).metadata, saved_path);
    if (saved) {
      if (opt_.normalize != "auto" && opt_.normalize != normalization_text(*saved))
        fail("--normalize: " + saved_path + " was trained with mean/std " + normalization_text(*saved) +
             " and runs with it; drop --normalize");
      return *saved;
    }
  }
  const bool mnist_shaped = train.c == 1 && train.h == 28 && train.w == 28;
  if (opt_.normalize == "data" || (opt_.normalize == "auto" && !mnist_shaped)) return normalization_of(train);
  if (opt_.normalize == "auto") return Normalization{};
  const Normalization given = parse_normalization(opt_.normalize, "--normalize");
  if (given.c != train.c)
    fail("--normalize: '" + opt_.normalize + "' gives " + std::to_string(given.c) + " channel(s), the images in " +
         opt_.data_dir + " have " + std::to_string(train.c) + "; give one mean and one std per channel");
  return given;
}

// Batch sizes as PyTorch's DataLoader uses them: never larger than the data
// they batch. Training batches take at most the training split (one batch
// of all of it), inference batches at most the largest split evaluated,
// latency batches at most the test split. The buffers are sized from these.
void Session::size_batches() {
  const bool soft_targets =
      opt_.command == Command::Run || opt_.command == Command::Distill || opt_.command == Command::Sweep;
  int64_t largest_eval = std::max(splits_.val.n, splits_.test.n);
  if (soft_targets) largest_eval = std::max(largest_eval, splits_.train.n);
  settings_.batch_size = int(std::min<int64_t>(opt_.batch_size, splits_.train.n));
  settings_.eval_batch_size = int(std::clamp<int64_t>(opt_.eval_batch_size, 1, std::max<int64_t>(largest_eval, 1)));
  latency_batches_.clear();
  const std::vector<int> asked = opt_.command == Command::Sweep ? std::vector<int>(std::begin(kSweepLatencyBatches),
                                                                                   std::end(kSweepLatencyBatches))
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

TrainSettings Session::student_settings() const {
  TrainSettings s = training_settings(opt_.epochs_student, "--epochs-student");
  s.mixup = float(opt_.mixup);
  return s;
}

TrainSettings Session::training_settings(int epochs, const char* epochs_flag) const {
  TrainSettings s = settings_;
  const int64_t steps_per_epoch = (splits_.train.n + s.batch_size - 1) / s.batch_size;  // the partial batch counts
  if (steps_per_epoch > 0)
    s.lr_schedule = make_lr_schedule(opt_.lr_schedule, opt_.warmup_epochs, steps_per_epoch, epochs, epochs_flag);
  return s;
}

TrainSettings Session::student_settings(Phase phase, const Arch& teacher) const {
  TrainSettings s = student_settings();
  if (phase == Phase::Student && opt_.hint != HintKind::Off)
    s.hint = HintSettings{opt_.hint, float(opt_.hint_weight), hint_feature_width(teacher, "teacher")};
  return s;
}

void Session::check_memory(const std::vector<LiveModel>& models, bool cached_soft_targets) {
  struct Part {
    int64_t bytes;
    std::string message;  // "<what> needs <bytes>"
    std::string advice;
  };
  // The soft targets: one row of teacher logits per training image.
  int64_t total = cached_soft_targets ? splits_.train.n * int64_t(splits_.num_classes) * int64_t(sizeof(float)) : 0;
  std::vector<Part> parts;
  const int max_latency =
      opt_.latency_batches.empty() ? 1 : *std::max_element(opt_.latency_batches.begin(), opt_.latency_batches.end());
  for (const auto& [arch, role, arch_flag, model_settings, online_teacher] : models) {
    const MemoryNeed need = engine_.memory_need(*arch, model_settings, online_teacher);
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
  const Part& worst =
      *std::max_element(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.bytes < b.bytes; });
  fail(worst.message + " (" + format_bytes(total) + " in all), " + format_bytes(available) + " available; " +
       worst.advice);
}

void Session::prepare_out_dir() {
  std::string out_dir = opt_.out_dir;
  if (!opt_.resume_dir.empty() && out_dir.empty()) out_dir = opt_.resume_dir;
  const bool timestamped = out_dir.empty();
  if (timestamped) out_dir = "runs/" + utc_timestamp("%Y%m%d-%H%M%S");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail("--out: cannot create directory '" + out_dir + "': " + ec.message());
  if (timestamped) {  // runs/latest -> the new run, replaced atomically
    const fs::path link = fs::path("runs") / "latest", tmp = fs::path("runs") / ".latest.tmp";
    fs::remove(tmp, ec);
    fs::create_directory_symlink(fs::path(out_dir).filename(), tmp, ec);
    if (!ec) fs::rename(tmp, link, ec);
  }
  state_.set_out_dir(out_dir);
  say("output: " + out_dir);
}

Arch Session::parse_model_arch(const std::string& text, const char* flag) const {
  try {
    return parse_arch(adapt_default_arch(text, input_, splits_.num_classes), input_, splits_.num_classes, flag);
  } catch (const Error& e) {
    fail(std::string(e.what()) + " (the data in " + opt_.data_dir + " has " + splits_.train.size_text() +
         " images and " + std::to_string(splits_.num_classes) + " classes)");
  }
}

void Session::check_input_shape(const Arch& arch, const std::string& path) const {
  if (!(arch.input == input_) || int(arch.output.size()) != splits_.num_classes)
    fail(path + ": model takes " + std::to_string(arch.input.c) + "x" + std::to_string(arch.input.h) + "x" +
         std::to_string(arch.input.w) + " images and " + std::to_string(arch.output.size()) + " classes, but " +
         opt_.data_dir + " has " + splits_.train.size_text() + " images and " + std::to_string(splits_.num_classes) +
         " classes");
}

ModelFile Session::teacher_start() const {
  if (!opt_.teacher_path.empty()) {
    ModelFile f =
        load_model_file(opt_.teacher_path, [&] { return parse_model_arch(opt_.teacher_arch, "--teacher-arch"); });
    check_input_shape(f.arch, opt_.teacher_path);
    return f;
  }
  ModelFile f;
  f.arch = parse_model_arch(opt_.teacher_arch, "--teacher-arch");
  f.params.resize(size_t(f.arch.param_count));
  init_params(f.arch, mix_seed(opt_.seed, kTeacherSalt), f.params.data());
  return f;
}

std::string Session::teacher_flag() const {
  return opt_.teacher_path.empty() ? "--teacher-arch" : "--teacher " + opt_.teacher_path;
}

std::unique_ptr<ModelEngine> Session::ready_teacher(const ModelFile& start, bool saved, ModelReport& rep) {
  const bool given = !opt_.teacher_path.empty();
  // A given teacher is not trained here: no schedule to fit to its epochs.
  auto teacher = engine_.create_model(start.arch, start.params,
                                      given ? settings_ : training_settings(opt_.epochs_teacher, "--epochs-teacher"));
  rep = new_report(Phase::Teacher, start.arch);
  if (!given) {
    if (saved) load_finished(Phase::Teacher, *teacher, rep);
    else train(Phase::Teacher, *teacher, LossConfig{1.0f, 0.0f}, opt_.epochs_teacher, rep, opt_.seed);
  }
  // The soft targets come from the selected teacher: finish_model restores it.
  finish_model(*teacher, rep, given || !saved);
  state_.stop_if_interrupted("the teacher's test evaluation and timing");
  if (!given) save_model_file(out_dir() + "/teacher.safetensors", start.arch, teacher->get_params(), model_facts(rep));
  return teacher;
}

void Session::train(Phase phase, ModelEngine& model, const LossConfig& loss, int epochs, ModelReport& rep,
                    uint64_t seed) {
  PhaseSettings ps;
  ps.batch_size = settings_.batch_size;
  ps.train_n = splits_.train.n;
  ps.select_best = select_best();
  ps.quiet = quiet();
  ps.tty = tty_;
  if (opt_.data_parallel) {
    // Every batch is shared by the ranks, each taking at least one row: the
    // last, partial batch of an epoch bounds how many ranks can share.
    const int64_t n = splits_.train.n, batch = settings_.batch_size, last = n % batch ? n % batch : batch;
    if (comm_.size() > last)
      fail("--data-parallel: " + std::to_string(comm_.size()) +
           " ranks cannot share every batch: " + std::to_string(n) + " training images in batches of " +
           std::to_string(batch) + " leave " + std::to_string(last) + " in the last one; run at most " +
           std::to_string(last) + " ranks (mpirun -np), or change --batch-size or --train-limit");
    model.set_data_parallel(comm_);
  }
  PhaseResult r = train_phase(state_, ps, phase, model, loss, epochs, seed);
  rep.curve = std::move(r.curve);
  rep.train_seconds = r.train_seconds;
  rep.selection = r.selection;
  rep.selected_epoch = r.selected_epoch;
  add_phase(std::string(phase_name(phase)) + " training", rep.train_seconds);
}

void Session::load_finished(Phase phase, ModelEngine& model, ModelReport& rep) {
  const std::string path = out_dir() + "/" + phase_file(phase);
  const ModelFile f = load_model_file(path);
  model.set_params(f.params);
  rep.curve = state_.history_for(phase);
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

ModelReport Session::new_report(Phase role, const Arch& arch) const {
  ModelReport r;
  r.role = role;
  r.arch = arch.text;
  r.params = arch.param_count;
  r.bytes = arch.param_count * int64_t(sizeof(float));
  return r;
}

void Session::finish_model(ModelEngine& model, ModelReport& rep, bool holds_last, bool ort) {
  const auto t0 = Clock::now();
  const std::string role = phase_name(rep.role);
  const int last = rep.curve.empty() ? 0 : rep.curve.back().epoch;
  const bool earlier_selected = holds_last && rep.selected_epoch != last;
  if (discards_results()) {
    if (earlier_selected) model.restore_best();  // a teacher's students distill from the kept epoch
    agree_on_stop();
    return;
  }
  if (earlier_selected) {
    rep.last_epoch_test_acc = model.evaluate(SplitId::Test).accuracy();
    model.restore_best();
  }
  const EvalResult test = model.evaluate(SplitId::Test);
  add_phase(role + " evaluation", seconds_since(t0));
  rep.test_acc = test.accuracy();
  rep.test_errors = test.n - test.correct;
  rep.test_loss = test.loss;
  if (holds_last && !earlier_selected) rep.last_epoch_test_acc = rep.test_acc;
  std::string which;
  if (rep.selected_epoch > 0 && rep.selected_epoch != last)
    which =
        " at epoch " + std::to_string(rep.selected_epoch) + " of " + std::to_string(last) +
        " (best validation accuracy; the last epoch's: " + std::to_string(100 * rep.last_epoch_test_acc).substr(0, 6) +
        "%)";
  else if (rep.selected_epoch > 0)
    which = " at epoch " + std::to_string(rep.selected_epoch) + " (" + rep.selection + ")";
  say(role + ": test accuracy " + std::to_string(100 * rep.test_acc).substr(0, 6) + "% (" +
      std::to_string(rep.test_errors) + " errors of " + std::to_string(test.n) + ")" + which);
  const auto l0 = Clock::now();
  rep.latency = measure_latencies(model);
  add_phase(role + " latency", seconds_since(l0));
  if (ort && !opt_.no_ort) {  // where it will be deployed: the exported model under ONNX Runtime (CPU)
    const auto o0 = Clock::now();
    rep.ort = ort_latency(model.arch(), model.get_params(), ort_options());
    add_phase(role + " ONNX Runtime latency", seconds_since(o0));
  }
  if (opt_.data_parallel) agree_on_stop();
}

// While rank 0 tests and times a model the other ranks wait here, not in the
// next phase's first step: a stop that reaches only rank 0 during the
// measurements would leave them waiting in that step's sum for a rank that
// has stopped. Summed like a step's stop flag, it is every rank's.
void Session::agree_on_stop() {
  float stops = interrupted() ? 1.0f : 0.0f;
  comm_.sum_in_rank_order(&stops, 1);
  if (stops > 0 && !interrupted()) request_interrupt();
}

std::vector<LatencyRecord> Session::measure_latencies(ModelEngine& model) {
  const int repeats = engine_.is_reference_cpu() ? 3 : 50;
  std::vector<LatencyRecord> out;
  for (size_t i = 0; i < latency_batches_.size() && !interrupted(); ++i)
    out.push_back(model.measure_latency(latency_batches_[i], repeats));
  return out;
}

OrtLatencyOptions Session::ort_options(std::vector<int> batches) const {
  OrtLatencyOptions o;
  o.batches = batches.empty() ? latency_batches_ : std::move(batches);
  o.threads = engine_.is_reference_cpu() ? 1
              : opt_.threads > 0         ? opt_.threads
                                         : std::max(1, int(std::thread::hardware_concurrency()));
  o.slice = std::max(settings_.batch_size, settings_.eval_batch_size);
  const Dataset& test = splits_.test;
  const int64_t rows = std::min<int64_t>(test.n, *std::max_element(o.batches.begin(), o.batches.end()));
  o.input.assign(test.images.begin(), test.images.begin() + rows * test.values_per_image());
  return o;
}

std::map<std::string, std::string> Session::model_facts(const ModelReport& rep) const {
  char last_acc[32], train_seconds[32];
  std::snprintf(last_acc, sizeof last_acc, "%.9g", rep.last_epoch_test_acc);
  std::snprintf(train_seconds, sizeof train_seconds, "%.9g", rep.train_seconds);
  std::map<std::string, std::string> facts = normalization_metadata(splits_.normalization);
  // A JSON array: folder names may hold commas. replace: a name that is not UTF-8 must not stop the save.
  if (!splits_.class_names.empty())
    facts["class_names"] =
        nlohmann::json(splits_.class_names).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  facts.insert({{"role", phase_name(rep.role)},
                {"train_seconds", train_seconds},
                {"test_accuracy", std::to_string(rep.test_acc)},
                {"selection", rep.selection},
                {"selected_epoch", std::to_string(rep.selected_epoch)},
                {"last_epoch_test_accuracy", last_acc},
                {"seed", std::to_string(opt_.seed)},
                {"data", opt_.data_dir},
                {"trained_on", report_.device},
                {"created", report_.started_at}});
  return facts;
}

void Session::compute_soft_targets(ModelEngine& teacher) {
  if (opt_.soft_targets == SoftTargets::Online) {  // nothing to compute ahead: each student step runs the teacher
    engine_.use_online_teacher(teacher);
    return;
  }
  const auto t0 = Clock::now();
  engine_.compute_soft_targets(teacher);
  state_.stop_if_interrupted("the soft-target pass");
  add_phase("soft targets", seconds_since(t0));
}

}  // namespace kd
