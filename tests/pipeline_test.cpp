// The CPU pipeline end to end on a small MNIST subset, and the orchestration
// logic around it: batch accounting, determinism, resume, SIGINT/SIGTERM,
// non-finite losses, oversized batches and the memory check. Needs
// data/mnist (scripts/setup.sh fetches it).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/model_io.h"
#include "kd/npy.h"
#include "kd/run_state.h"
#include "kd/safetensors.h"
#include "kd/engine.h"
#include "run_test_util.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// A small conv teacher: the default one costs ~30 M multiply-adds per image
// per step on the CPU reference, too slow for CI; this keeps the same layer
// kinds (conv, relu, maxpool, dropout, flatten, dense) at ~1/80 of the cost.
constexpr const char* kSmallTeacher = "conv:8:3,relu,maxpool:2,dropout:0.1,flatten,dense:64,relu,dense:10";

std::string mnist_dir() {
  const std::string dir = std::string(KD_SOURCE_DIR) + "/data/mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte"))
    ADD_FAILURE() << dir << " has no MNIST: run scripts/setup.sh (or data/fetch.sh) first";
  return dir;
}

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kd_pipeline_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

Options small_run(const std::string& out) {
  Options o;
  o.data_dir = mnist_dir();
  o.device = DeviceChoice::Cpu;
  o.out_dir = out;
  o.seed = 42;
  o.train_limit = 3000;
  o.val_size = 500;
  o.test_limit = 1000;
  o.epochs_teacher = 3;
  o.epochs_student = 2;
  o.teacher_arch = kSmallTeacher;
  o.quiet = true;
  o.no_ort = true;  // the ONNX Runtime columns are tested in onnx_export_test
  return o;
}

using test::metrics_without_timings;
using test::read_text;

struct CsvRow {
  std::string phase;
  int epoch;
  double train_loss, train_kl, val_loss, val_acc;
};
std::vector<CsvRow> parse_metrics(const std::string& csv) {
  std::vector<CsvRow> rows;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    CsvRow r;
    char phase[32];
    EXPECT_EQ(std::sscanf(line.c_str(), "%31[^,],%d,%lf,%lf,%lf,%lf", phase, &r.epoch, &r.train_loss, &r.train_kl,
                          &r.val_loss, &r.val_acc),
              6)
        << line;
    r.phase = phase;
    rows.push_back(r);
  }
  return rows;
}

class PipelineEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    out_ = fresh_dir("e2e");
    auto engine = make_cpu_engine();
    ASSERT_EQ(run_command(small_run(out_), *engine), 0);
  }
  static std::string out_;
};
std::string PipelineEndToEnd::out_;

TEST_F(PipelineEndToEnd, WritesEveryOutputFile) {
  for (const char* f :
       {"metrics.csv", "summary.json", "teacher.safetensors", "student.safetensors", "student_scratch.safetensors"})
    EXPECT_TRUE(fs::exists(out_ + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out_ + "/checkpoint.safetensors")) << "a finished run leaves no training checkpoint";
  const auto summary = nlohmann::json::parse(read_text(out_ + "/summary.json"));
  EXPECT_EQ(summary["models"].size(), 3u);
  // The run's wall time, set before the files are written (it was once 0).
  double phases = 0;
  for (const auto& p : summary["phases"]) phases += p["seconds"].get<double>();
  EXPECT_GE(summary["total_seconds"].get<double>(), phases);
}

TEST_F(PipelineEndToEnd, TeacherLearnsAndDistillationLowersTheKlTerm) {
  const auto summary = nlohmann::json::parse(read_text(out_ + "/summary.json"));
  double teacher_acc = -1;
  for (const auto& m : summary["models"])
    if (m["role"] == "teacher") teacher_acc = m["test_acc"].get<double>();
  // Chance is 10 %; 3 epochs over 3,000 images reach ~90 % with this teacher.
  EXPECT_GE(teacher_acc, 0.85);

  const std::vector<CsvRow> rows = parse_metrics(read_text(out_ + "/metrics.csv"));
  std::vector<double> student_kl;
  for (const CsvRow& r : rows)
    if (r.phase == "student") student_kl.push_back(r.train_kl);
  ASSERT_EQ(student_kl.size(), 2u);
  EXPECT_GT(student_kl[0], 0.0);
  EXPECT_LT(student_kl[1], student_kl[0]) << "the distilled student's KL to the teacher must fall over training";
}

TEST_F(PipelineEndToEnd, SavedStudentReloadsWithTheSameTestAccuracy) {
  const ModelFile f = load_model_file(out_ + "/student.safetensors");
  const auto summary = nlohmann::json::parse(read_text(out_ + "/summary.json"));
  int64_t errors = -1;
  for (const auto& m : summary["models"])
    if (m["role"] == "student") errors = m["test_errors"].get<int64_t>();
  Options o = small_run(out_);
  auto engine = make_cpu_engine();
  engine->load([&] {
    Splits s = load_splits(o.data_dir, o.val_size, o.train_limit);
    s.test = s.test.slice(0, o.test_limit);
    return s;
  }());
  auto model = engine->create_model(f.arch, f.params, TrainSettings{});
  const EvalResult r = model->evaluate(SplitId::Test);
  EXPECT_EQ(r.n - r.correct, errors);
}

TEST_F(PipelineEndToEnd, SameSeedGivesIdenticalMetrics) {
  const std::string again = fresh_dir("again");
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(small_run(again), *engine), 0);
  EXPECT_EQ(metrics_without_timings(read_text(again + "/metrics.csv")),
            metrics_without_timings(read_text(out_ + "/metrics.csv")));
  EXPECT_EQ(load_model_file(again + "/student.safetensors").params,
            load_model_file(out_ + "/student.safetensors").params);
}

// The "wrote A, B to DIR" line of `stdout` names every file in `dir` and no
// other, except gnuplot's inputs (latency.csv, plots.gp) beside the pictures.
void expect_wrote_line_matches_directory(const std::string& stdout_text, const std::string& dir) {
  const std::string tail = " to " + dir + "\n";
  const size_t start = stdout_text.rfind("\nwrote ");
  ASSERT_NE(start, std::string::npos) << stdout_text;
  const size_t end = stdout_text.find(tail, start);
  ASSERT_NE(end, std::string::npos) << stdout_text.substr(start);
  std::vector<std::string> listed;
  std::istringstream list(stdout_text.substr(start + 7, end - start - 7));
  for (std::string name; std::getline(list, name, ',');) listed.push_back(name.substr(name.find_first_not_of(' ')));
  for (const std::string& name : listed) EXPECT_TRUE(fs::exists(dir + "/" + name)) << name << " is listed, not written";
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name == "latency.csv" || name == "plots.gp") continue;
    EXPECT_NE(std::find(listed.begin(), listed.end(), name), listed.end()) << name << " is written, not listed";
  }
}

TEST(PipelineCommands, DistillFromASavedTeacherReusesItUnchanged) {
  // What is checked is the file hand-over, not learning: one short teacher epoch will do.
  Options teach = small_run(fresh_dir("teach"));
  teach.command = Command::TrainTeacher;
  teach.train_limit = 1000;
  teach.epochs_teacher = 1;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(teach, *engine), 0);
  EXPECT_FALSE(fs::exists(teach.out_dir + "/student.safetensors")) << "train-teacher trains the teacher only";

  Options distill = small_run(fresh_dir("distill"));
  distill.command = Command::Distill;
  distill.teacher_path = teach.out_dir + "/teacher.safetensors";
  distill.train_limit = teach.train_limit;
  distill.no_baseline = true;
  distill.epochs_student = 1;
  distill.quiet = false;  // for the closing "wrote ..." line
  auto engine2 = make_cpu_engine();
  ::testing::internal::CaptureStdout();
  const int rc = run_command(distill, *engine2);
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(distill.out_dir + "/student.safetensors"));
  EXPECT_FALSE(fs::exists(distill.out_dir + "/teacher.safetensors")) << "distill does not rewrite the teacher";
  expect_wrote_line_matches_directory(out, distill.out_dir);
  const auto a = nlohmann::json::parse(read_text(teach.out_dir + "/summary.json"));
  const auto b = nlohmann::json::parse(read_text(distill.out_dir + "/summary.json"));
  EXPECT_EQ(a["models"][0]["test_errors"], b["models"][0]["test_errors"]) << "the loaded teacher is the saved one";
  ASSERT_EQ(b["models"].size(), 2u);
}

// Any MNIST-format data set: Fashion-MNIST (data/fetch.sh copies it from the
// Debian package dataset-fashion-mnist) through the whole pipeline.
TEST(PipelineCommands, FashionMnistRunsEndToEnd) {
  const std::string data = std::string(KD_SOURCE_DIR) + "/data/fashion";
  if (!fs::exists(data + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << data << " has no Fashion-MNIST (apt-get install dataset-fashion-mnist, then data/fetch.sh)";
  Options o = small_run(fresh_dir("fashion"));
  o.data_dir = data;
  o.train_limit = 1000;
  o.epochs_teacher = 1;
  o.epochs_student = 1;
  o.no_baseline = true;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const auto summary = nlohmann::json::parse(read_text(o.out_dir + "/summary.json"));
  ASSERT_EQ(summary["models"].size(), 2u);
  EXPECT_EQ(summary["data"]["classes"], 10);
  // Chance is 10 %; one epoch over 1,000 images reaches ~60 % on Fashion-MNIST.
  for (const auto& m : summary["models"]) EXPECT_GE(m["test_acc"].get<double>(), 0.4) << m["role"];
}

// The same Fashion-MNIST images as .npy files give the same run as the IDX
// files: the format changes nothing past the reader (normalisation included).
TEST(PipelineCommands, FashionMnistAsNpyGivesTheSameResultsAsIdx) {
  const std::string data = std::string(KD_SOURCE_DIR) + "/data/fashion";
  if (!fs::exists(data + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << data << " has no Fashion-MNIST (apt-get install dataset-fashion-mnist, then data/fetch.sh)";
  // The first 1,000 training and 500 test images, no validation split, as .npy files.
  TrainTest subset = load_dataset_dir(data, {});
  subset.train = subset.train.slice(0, 1000);
  subset.test = subset.test.slice(0, 500);
  const std::string npy_dir = fresh_dir("fashion_npy_data");
  save_npy_dir(npy_dir, subset);

  Options idx = small_run(fresh_dir("fashion_idx"));
  idx.data_dir = data;
  idx.train_limit = 1000;
  idx.test_limit = 500;
  idx.val_size = 0;
  idx.epochs_teacher = idx.epochs_student = 1;
  idx.no_baseline = true;
  Options npy = idx;
  npy.data_dir = npy_dir;
  npy.out_dir = fresh_dir("fashion_npy");
  for (const Options& o : {idx, npy}) {
    auto engine = make_cpu_engine();
    ASSERT_EQ(run_command(o, *engine), 0) << o.data_dir;
  }
  EXPECT_EQ(metrics_without_timings(read_text(idx.out_dir + "/metrics.csv")),
            metrics_without_timings(read_text(npy.out_dir + "/metrics.csv")));
  const auto a = nlohmann::json::parse(read_text(idx.out_dir + "/summary.json"));
  const auto b = nlohmann::json::parse(read_text(npy.out_dir + "/summary.json"));
  ASSERT_EQ(a["models"].size(), 2u);
  for (size_t m = 0; m < 2; ++m) EXPECT_EQ(a["models"][m]["test_acc"], b["models"][m]["test_acc"]) << m;
  EXPECT_EQ(b["data"]["format"], ".npy");
  EXPECT_EQ(b["data"]["normalize"], "0.1307/0.3081") << "1x28x28 data keeps MNIST's constants in every format";
}

TEST(PipelineCommands, DistillRejectsATeacherForOtherImages) {
  const std::string dir = fresh_dir("teach_small");
  // A valid model file for 14x14 inputs: the data's 28x28 images cannot feed it.
  const Arch small = parse_arch("flatten,dense:10", Shape{1, 14, 14, false}, 10, "--arch");
  std::vector<float> params(size_t(small.param_count), 0.0f);
  save_model_file(dir + "/small.safetensors", small, params, {});
  Options distill = small_run(fresh_dir("distill_bad"));
  distill.command = Command::Distill;
  distill.teacher_path = dir + "/small.safetensors";
  auto engine2 = make_cpu_engine();
  try {
    run_command(distill, *engine2);
    FAIL() << "expected an input-shape error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1x14x14"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("28x28"), std::string::npos) << e.what();
  }
}

// Validation results by epoch, replacing the real ones: the selection tests
// construct runs whose last epoch is not the best. Entry k: the result after
// epoch k + 1 (epochs are told apart by the optimiser's step count).
struct ValScript {
  std::vector<EvalResult> by_epoch;
  int64_t steps_per_epoch = 0;
};

// What RecordingModels were asked besides their training steps.
struct Measured {
  int test_evaluations = 0, latency_timings = 0, restores = 0;  // restore_best calls
};

// Wraps the CPU engine and records every train_step (begin, b) and what
// Measured counts; with a script, validation returns the scripted results.
class RecordingModel final : public ModelEngine {
 public:
  RecordingModel(std::unique_ptr<ModelEngine> inner, const TrainSettings& settings, int64_t train_n,
                 std::vector<std::pair<int64_t, int>>& log, Measured& measured, const ValScript& script)
      : ModelEngine(inner->arch(), settings),
        train_n_(train_n),
        inner_(std::move(inner)),
        log_(log),
        measured_(measured),
        script_(script) {}
  int64_t train_images() const override { return train_n_; }
  void begin_epoch_impl(const std::vector<int32_t>& order, int64_t epoch) override {
    inner_->begin_epoch(order, epoch);
  }
  void train_step_impl(int64_t begin, int b, const LossConfig& loss) override {
    log_.emplace_back(begin, b);
    inner_->train_step(begin, b, loss);
  }
  TrainStats end_epoch_impl() override { return inner_->end_epoch(); }
  void set_data_parallel_impl(Comm& comm) override { inner_->set_data_parallel(comm); }
  EvalResult evaluate_impl(SplitId s) override {
    if (s == SplitId::Test) ++measured_.test_evaluations;
    if (s != SplitId::Val || script_.by_epoch.empty()) return inner_->evaluate(s);
    const int64_t epoch = inner_->get_optim_state().step / script_.steps_per_epoch;
    EXPECT_GE(epoch, 1);
    EXPECT_LE(epoch, int64_t(script_.by_epoch.size()));
    return script_.by_epoch.at(size_t(epoch - 1));
  }
  LatencyRecord measure_latency_impl(int batch, int repeats) override {
    ++measured_.latency_timings;
    return inner_->measure_latency(batch, repeats);
  }
  std::vector<float> get_params_impl() override { return inner_->get_params(); }
  void set_params_impl(const std::vector<float>& p) override { inner_->set_params(p); }
  OptimState get_optim_state_impl() override { return inner_->get_optim_state(); }
  void set_optim_state_impl(const OptimState& s) override { inner_->set_optim_state(s); }
  HintMapState get_hint_map_impl() override { return inner_->get_hint_map(); }
  void set_hint_map_impl(const HintMapState& s) override { inner_->set_hint_map(s); }
  void keep_best_impl() override { inner_->keep_best(); }
  void restore_best_impl() override {
    ++measured_.restores;
    inner_->restore_best();
  }
  std::vector<float> get_best_impl() override { return inner_->get_best(); }
  void set_best_impl(const std::vector<float>& p) override { inner_->set_best(p); }
  ModelEngine* inner() { return inner_.get(); }

 private:
  int64_t train_n_;
  std::unique_ptr<ModelEngine> inner_;
  std::vector<std::pair<int64_t, int>>& log_;
  Measured& measured_;
  const ValScript& script_;
};
class RecordingEngine final : public Engine {
 public:
  std::string device_description() const override { return inner_->device_description(); }
  std::string versions() const override { return inner_->versions(); }
  bool is_reference_cpu() const override { return true; }
  void load(const Splits& s) override {
    train_n_ = s.train.n;
    inner_->load(s);
  }
  MemoryNeed memory_need(const Arch& a, const TrainSettings& s, bool online_teacher) override {
    return inner_->memory_need(a, s, online_teacher);
  }
  int64_t available_memory() override { return inner_->available_memory(); }
  std::unique_ptr<ModelEngine> create_model(const Arch& a, const std::vector<float>& p,
                                            const TrainSettings& s) override {
    return std::make_unique<RecordingModel>(inner_->create_model(a, p, s), s, train_n_, log, measured, script);
  }
  void compute_soft_targets(ModelEngine& teacher) override {
    inner_->compute_soft_targets(*static_cast<RecordingModel&>(teacher).inner());
  }
  void use_online_teacher(ModelEngine& teacher) override {
    inner_->use_online_teacher(*static_cast<RecordingModel&>(teacher).inner());
  }
  std::vector<std::pair<int64_t, int>> log;
  Measured measured;
  ValScript script;

 private:
  std::unique_ptr<Engine> inner_ = make_cpu_engine();
  int64_t train_n_ = 0;
};

TEST(PipelineOrchestration, EveryEpochCoversTheSplitIncludingThePartialBatch) {
  Options o = small_run(fresh_dir("accounting"));
  o.train_limit = 130;  // 64 + 64 + 2: the last partial batch is trained on, as PyTorch's DataLoader does
  o.epochs_teacher = 2;
  o.command = Command::TrainTeacher;
  RecordingEngine engine;
  ASSERT_EQ(run_command(o, engine), 0);
  const std::vector<std::pair<int64_t, int>> expected = {{0, 64}, {64, 64}, {128, 2}, {0, 64}, {64, 64}, {128, 2}};
  EXPECT_EQ(engine.log, expected);
}

TEST(PipelineOrchestration, NonFiniteLossStopsWithTheStepNamed) {
  Options o = small_run(fresh_dir("nonfinite"));
  o.command = Command::TrainTeacher;
  o.lr = 1e30;  // Adam moves every weight by ~lr on step 1: the logits overflow on step 2
  auto engine = make_cpu_engine();
  try {
    run_command(o, *engine);
    FAIL() << "expected a non-finite loss error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite loss at step"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("teacher"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out_dir + "/teacher.safetensors")) << "no model file from a diverged run";
}

// Runs `o` with the test hook stopping it after `steps` training steps, as a
// signal would; the run must end with the stop.
void run_stopped_after(const Options& o, Engine& engine, int steps) {
  setenv("KD_TEST_INTERRUPT_AFTER_STEPS", std::to_string(steps).c_str(), 1);
  EXPECT_THROW(run_command(o, engine), Error);
  unsetenv("KD_TEST_INTERRUPT_AFTER_STEPS");
}

TEST(PipelineOrchestration, ResumeAfterInterruptEqualsUninterruptedRun) {
  Options straight = small_run(fresh_dir("straight"));
  straight.train_limit = 1000;
  straight.no_baseline = true;
  straight.epochs_teacher = 1;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(straight, *engine), 0);

  Options broken = straight;
  broken.out_dir = fresh_dir("broken");
  // 1,000 images / 64 = 16 teacher steps; stop 21 steps in: mid-way through student epoch 1.
  setenv("KD_TEST_INTERRUPT_AFTER_STEPS", "21", 1);
  auto engine2 = make_cpu_engine();
  EXPECT_THROW(
      {
        try {
          run_command(broken, *engine2);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("--resume " + broken.out_dir), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  unsetenv("KD_TEST_INTERRUPT_AFTER_STEPS");
  ASSERT_TRUE(fs::exists(broken.out_dir + "/checkpoint.safetensors"));

  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  auto engine3 = make_cpu_engine();
  ASSERT_EQ(run_command(resumed, *engine3), 0);
  EXPECT_EQ(load_model_file(resumed.out_dir + "/student.safetensors").params,
            load_model_file(straight.out_dir + "/student.safetensors").params);
  const ModelFile teacher_file = load_model_file(resumed.out_dir + "/teacher.safetensors");
  EXPECT_EQ(teacher_file.params, load_model_file(straight.out_dir + "/teacher.safetensors").params);
  // The teacher finished before the interruption: the resumed report keeps its training time.
  const double teacher_seconds = std::stod(teacher_file.metadata.at("train_seconds"));
  EXPECT_GT(teacher_seconds, 0.0);
  std::ifstream summary_file(resumed.out_dir + "/summary.json");
  const nlohmann::json summary = nlohmann::json::parse(summary_file);
  for (const auto& m : summary.at("models"))
    if (m.at("role") == "teacher") {
      EXPECT_DOUBLE_EQ(m.at("train_seconds").get<double>(), teacher_seconds);
    }
}

// The learning rate of a cosine schedule with warm-up is a function of the
// checkpointed update count, and each augmented view a function of (seed,
// epoch, sample), so a run stopped mid-schedule resumes to the same bits, with
// the online teacher scoring the same views. 640 images: 10 updates per epoch;
// the stop comes 5 updates into the student's second (last) epoch, after the
// teacher's warm-up and cosine.
TEST(PipelineOrchestration, ResumeWithCosineWeightDecayAugmentationAndOnlineTargetsEqualsUninterruptedRun) {
  Options straight = small_run(fresh_dir("cosine_straight"));
  straight.train_limit = 640;
  straight.val_size = 100;
  straight.test_limit = 100;
  straight.no_baseline = true;
  straight.epochs_teacher = 1;
  straight.epochs_student = 2;
  straight.lr_schedule = LrScheduleKind::Cosine;
  straight.warmup_epochs = 0.5;
  straight.weight_decay = 0.05;
  straight.augment = true;
  straight.soft_targets = SoftTargets::Online;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(straight, *engine), 0);

  Options broken = straight;
  broken.out_dir = fresh_dir("cosine_broken");
  auto engine2 = make_cpu_engine();
  run_stopped_after(broken, *engine2, 25);
  ASSERT_TRUE(fs::exists(broken.out_dir + "/checkpoint.safetensors"));
  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  auto engine3 = make_cpu_engine();
  ASSERT_EQ(run_command(resumed, *engine3), 0);
  const std::vector<float> student = load_model_file(straight.out_dir + "/student.safetensors").params;
  EXPECT_EQ(load_model_file(resumed.out_dir + "/student.safetensors").params, student);
  const nlohmann::json summary = nlohmann::json::parse(read_text(straight.out_dir + "/summary.json"));
  EXPECT_EQ(summary.at("config").at("resolved-recipe"),
            "recipe seed: teacher 1 epoch, student and baseline 2 epochs; adam lr 0.001, cosine schedule, 0.5 "
            "epochs of warm-up, weight decay 0.05; augmentation shift 2 px, rotate 12 deg, scale 0.9-1.1; soft targets "
            "online, mixup off; hint off");

  // The schedule took effect: the constant-rate student differs.
  Options constant = straight;
  constant.out_dir = fresh_dir("cosine_constant");
  constant.lr_schedule = LrScheduleKind::Constant;
  constant.warmup_epochs = 0;
  auto engine4 = make_cpu_engine();
  ASSERT_EQ(run_command(constant, *engine4), 0);
  EXPECT_NE(load_model_file(constant.out_dir + "/student.safetensors").params, student);
}

// The hint epoch lines of a run's stdout ("... (KL 0.0123, hint 0.3456) ..."), in order.
std::vector<double> hint_terms(const std::string& out) {
  std::vector<double> terms;
  for (size_t at = out.find(", hint "); at != std::string::npos; at = out.find(", hint ", at + 1))
    terms.push_back(std::stod(out.substr(at + 7)));
  return terms;
}

// --hint (cosine, with the online targets it needs) on a distilled student:
// the hint term falls from epoch to epoch; a rerun is bit-identical; a run
// stopped in the student's second epoch, its checkpoint holding the map and
// its moments, resumes to the same bits; the exported student holds only
// its own tensors; summary.json and the recipe line name the hint.
// 640 images: 10 updates per epoch; the stop comes 5 into student epoch 2.
TEST(PipelineOrchestration, HintLowersItsTermAndRerunAndResumeAreBitIdentical) {
  Options straight = small_run(fresh_dir("hint_straight"));
  straight.train_limit = 640;
  straight.val_size = 100;
  straight.test_limit = 100;
  straight.no_baseline = true;
  straight.epochs_teacher = 1;
  straight.epochs_student = 3;
  straight.soft_targets = SoftTargets::Online;
  straight.hint = HintKind::Cosine;
  straight.quiet = false;  // for the epoch lines' hint terms
  auto engine = make_cpu_engine();
  ::testing::internal::CaptureStdout();
  ASSERT_EQ(run_command(straight, *engine), 0);
  const std::vector<double> terms = hint_terms(::testing::internal::GetCapturedStdout());
  ASSERT_EQ(terms.size(), 3u);
  EXPECT_LT(terms[2], terms[0]) << "the hint term falls over training";
  const std::string student_file = straight.out_dir + "/student.safetensors";
  const std::vector<float> student = load_model_file(student_file).params;  // refuses a tensor that is not the arch's
  EXPECT_EQ(load_safetensors(student_file).find("hint.params"), nullptr);
  const nlohmann::json summary = nlohmann::json::parse(read_text(straight.out_dir + "/summary.json"));
  EXPECT_EQ(summary.at("config").at("hint"), "cosine");
  EXPECT_EQ(summary.at("config").at("hint-weight"), 1.0);
  const std::string recipe = summary.at("config").at("resolved-recipe");
  EXPECT_EQ(recipe.substr(recipe.rfind(';')), "; hint cosine weight 1");

  Options again = straight;
  again.out_dir = fresh_dir("hint_again");
  again.quiet = true;
  auto engine2 = make_cpu_engine();
  ASSERT_EQ(run_command(again, *engine2), 0);
  EXPECT_EQ(load_model_file(again.out_dir + "/student.safetensors").params, student) << "a rerun is bit-identical";

  Options broken = again;
  broken.out_dir = fresh_dir("hint_broken");
  auto engine3 = make_cpu_engine();
  run_stopped_after(broken, *engine3, 25);
  const TrainingCheckpoint ck = load_training_checkpoint(broken.out_dir + "/checkpoint.safetensors");
  EXPECT_EQ(ck.phase, Phase::Student);
  EXPECT_EQ(ck.hint_map.params.size(), size_t(64 * 128 + 64))
      << "the default student's 128 features to kSmallTeacher's 64";
  EXPECT_EQ(ck.hint_map.v.size(), ck.hint_map.params.size());
  EXPECT_GT(ck.epoch_hint_sum, 0);
  // Resuming with another --hint is refused (before anything is trained or removed).
  Options other = broken;
  other.resume_dir = broken.out_dir;
  other.hint = HintKind::Mse;
  auto engine_other = make_cpu_engine();
  try {
    run_command(other, *engine_other);
    FAIL() << "expected a settings mismatch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was written with --hint cosine:1, this run has --hint mse:1"),
              std::string::npos)
        << e.what();
  }
  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  auto engine4 = make_cpu_engine();
  ASSERT_EQ(run_command(resumed, *engine4), 0);
  EXPECT_EQ(load_model_file(resumed.out_dir + "/student.safetensors").params, student) << "resume is bit-identical";
  EXPECT_EQ(metrics_without_timings(read_text(resumed.out_dir + "/metrics.csv")),
            metrics_without_timings(read_text(straight.out_dir + "/metrics.csv")));

  // The hint took effect: the same student without it differs.
  Options plain = again;
  plain.out_dir = fresh_dir("hint_off");
  plain.hint = HintKind::Off;
  auto engine5 = make_cpu_engine();
  ASSERT_EQ(run_command(plain, *engine5), 0);
  EXPECT_NE(load_model_file(plain.out_dir + "/student.safetensors").params, student);
}

// A student with no hidden layer has no features for the hint: refused before the teacher trains.
TEST(PipelineOrchestration, HintWithoutAStudentHiddenLayerIsRefusedBeforeTraining) {
  Options o = small_run(fresh_dir("hint_linear"));
  o.soft_targets = SoftTargets::Online;
  o.hint = HintKind::Mse;
  o.student_arch = "flatten,dense:10";
  auto engine = make_cpu_engine();
  try {
    run_command(o, *engine);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--hint: the student 'flatten,dense:10' has no hidden layer feeding a last dense layer, so it has no "
              "features to match; use a student with one (e.g. 'flatten,dense:128,relu,dense:10') or --hint off");
  }
  EXPECT_FALSE(fs::exists(o.out_dir + "/teacher.safetensors")) << "nothing was trained";
}

// Mixup draws each batch's lambda and partner from (seed, epoch, batch
// start): a rerun gives the same bits, and a run stopped 5 updates into the
// student's second epoch resumes to them, the online teacher scoring the same
// mixed batches. The scratch baseline trains with mixup too, the teacher
// without (the same teacher as an unmixed run). The fast engine at 2 threads:
// the mixed views are gathered on one thread, the same at any --threads.
// An MLP teacher and one latency batch keep the five runs cheap.
TEST(PipelineOrchestration, MixupRerunsAndResumesBitIdentically) {
  Options straight = small_run(fresh_dir("mixup_straight"));
  straight.teacher_arch = "flatten,dense:64,relu,dense:10";
  straight.latency_batches = {1};
  straight.train_limit = 640;
  straight.val_size = 100;
  straight.test_limit = 100;
  straight.epochs_teacher = 1;
  straight.epochs_student = 2;
  straight.augment = true;
  straight.soft_targets = SoftTargets::Online;
  straight.mixup = 0.4;
  const auto run = [](const Options& o) {
    auto engine = make_fast_cpu_engine(2);
    ASSERT_EQ(run_command(o, *engine), 0);
  };
  const auto params = [](const Options& o, const char* file) { return load_model_file(o.out_dir + "/" + file).params; };
  run(straight);
  Options again = straight;
  again.out_dir = fresh_dir("mixup_again");
  run(again);
  Options broken = straight;
  broken.out_dir = fresh_dir("mixup_broken");
  auto engine = make_fast_cpu_engine(2);
  run_stopped_after(broken, *engine, 25);
  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  run(resumed);
  for (const char* file : {"student.safetensors", "student_scratch.safetensors"}) {
    SCOPED_TRACE(file);
    EXPECT_EQ(params(again, file), params(straight, file));
    EXPECT_EQ(params(resumed, file), params(straight, file));
  }
  const nlohmann::json config = nlohmann::json::parse(read_text(straight.out_dir + "/summary.json")).at("config");
  EXPECT_EQ(config.at("mixup"), 0.4);
  EXPECT_NE(config.at("resolved-recipe").get<std::string>().find("soft targets online, mixup 0.4"), std::string::npos);

  Options unmixed = straight;
  unmixed.out_dir = fresh_dir("mixup_off");
  unmixed.mixup = 0;
  run(unmixed);
  EXPECT_EQ(params(unmixed, "teacher.safetensors"), params(straight, "teacher.safetensors"));
  EXPECT_NE(params(unmixed, "student.safetensors"), params(straight, "student.safetensors"));
  EXPECT_NE(params(unmixed, "student_scratch.safetensors"), params(straight, "student_scratch.safetensors"));
}

TEST(PipelineOrchestration, ResumeRefusesDifferentSettings) {
  Options o = small_run(fresh_dir("refuse"));
  o.command = Command::TrainTeacher;
  o.epochs_teacher = 1;
  auto engine = make_cpu_engine();
  run_stopped_after(o, *engine, 3);
  o.resume_dir = o.out_dir;
  o.lr = 5e-4;
  try {
    run_command(o, *engine);
    FAIL() << "expected a settings mismatch";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--resume: " + o.out_dir +
                                         "/checkpoint.safetensors was written with --lr 0.001, "
                                         "this run has --lr 0.0005; pass the same flags as the interrupted run");
  }
}

// The difference is named by the first differing flag, with values as the
// flag takes them; fingerprints stored before the field list still read.
TEST(PipelineOrchestration, ResumeNamesTheFirstDifferingFlag) {
  Options o = small_run("unused");
  const std::string stored = options_fingerprint(o);
  EXPECT_EQ(stored.substr(0, 40), "seed=42 batch=64 lr=0.001 optimizer=0 mo") << "the stored format is unchanged";
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(o)), "");

  Options sgd = o;
  sgd.optimizer = OptimizerKind::Sgd;
  sgd.train_limit = 0;
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(sgd)),
            "--optimizer adam, this run has --optimizer sgd");
  Options spaced = o;
  spaced.teacher_arch = "conv:8:3, relu, flatten, dense:10";  // a value with spaces
  EXPECT_EQ(fingerprint_difference(options_fingerprint(spaced), options_fingerprint_fields(spaced)), "");
  Options limited = o;
  limited.train_limit = 0;
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(limited)),
            "--train-limit 3000, this run has --train-limit 0");
  // The input settings: a resumed run must read its images the same way.
  Options normalized = o;
  normalized.normalize = "data";
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(normalized)),
            "--normalize auto, this run has --normalize data");
  Options resized = o;
  resized.image_size = ImageSize{32, 32};
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(resized)),
            "--image-size (not given), this run has --image-size 32x32");
  Options nhwc = o;
  nhwc.channels_last = true;
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(nhwc)),
            "--channels-last off, this run has --channels-last on");
  Options mixed = o;
  mixed.mixup = 0.2;
  EXPECT_EQ(fingerprint_difference(stored, options_fingerprint_fields(mixed)), "--mixup 0, this run has --mixup 0.2");
  EXPECT_NE(
      fingerprint_difference("seed=42", options_fingerprint_fields(o)).find("settings this kdtrain does not read"),
      std::string::npos)
      << "a truncated fingerprint is not a match";
}

// Starts the built kdtrain with `args`, stdout to /dev/null and stderr to
// `err_path`; returns its pid.
pid_t spawn_kdtrain(const std::vector<std::string>& args, const std::string& err_path) {
  const std::string binary = std::string(KD_BINARY_DIR) + "/kdtrain";
  EXPECT_TRUE(fs::exists(binary)) << binary;
  std::vector<const char*> argv = {binary.c_str()};
  for (const std::string& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* err = std::freopen(err_path.c_str(), "w", stderr);
    FILE* null_out = std::freopen("/dev/null", "w", stdout);
    (void)err;
    (void)null_out;
    execv(binary.c_str(), const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  return pid;
}

// Waits up to two minutes for `path` to appear (a child's first checkpoint).
bool wait_for_file(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return fs::exists(path);
}

// Sends `signals` to `pid` one after the other, waits for it and checks that
// it exited (not died of a signal) non-zero, saying how to resume; returns its stderr.
std::string stop_and_reap(pid_t pid, const std::vector<int>& signals, const std::string& err_path) {
  for (int sig : signals) EXPECT_EQ(kill(pid, sig), 0);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "kdtrain must exit, not die of the signal";
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string err = read_text(err_path);
  EXPECT_NE(err.find("interrupted"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  return err;
}

// A real SIGINT to a real kdtrain process: it finishes the step, writes a
// checkpoint and exits non-zero saying how to resume.
TEST(PipelineOrchestration, SigintWritesACheckpointAndExitsNonZero) {
  const std::string out = fresh_dir("sigint");
  const std::string err_path = out + "/stderr.txt";
  const pid_t pid =
      spawn_kdtrain({"train-teacher", "--device", "cpu", "--data", mnist_dir(), "--out", out + "/run", "--train-limit",
                     "1000", "--val-size", "200", "--epochs-teacher", "1000", "--teacher-arch", kSmallTeacher},
                    err_path);
  ASSERT_GT(pid, 0);
  // Wait for the first end-of-epoch checkpoint: by then training is under way.
  wait_for_file(out + "/run/checkpoint.safetensors");
  const std::string err = stop_and_reap(pid, {SIGINT}, err_path);
  EXPECT_NE(err.find("SIGINT"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(out + "/run/checkpoint.safetensors"));
  const TrainingCheckpoint ck = load_training_checkpoint(out + "/run/checkpoint.safetensors");
  EXPECT_EQ(ck.phase, Phase::Teacher);
  EXPECT_GT(ck.optim.step, 0);
}

// What timeout, Slurm, Kubernetes and systemd send: SIGTERM, here followed at
// once by SIGHUP, which lands while the first one's step or checkpoint is
// being finished and must change nothing. Resuming then ends with the weights
// of an uninterrupted run, bit for bit: on `device` in the process, on an
// engine from make_engine for the resume and the uninterrupted run (the fast
// engine at a fixed thread count, 2).
void sigterm_then_resume_equals_uninterrupted(const std::string& device,
                                              const std::function<std::unique_ptr<Engine>()>& make_engine) {
  Options straight = small_run(fresh_dir("term_straight_" + device));
  straight.command = Command::TrainTeacher;
  straight.train_limit = 1000;
  straight.val_size = 200;
  straight.test_limit = 200;
  straight.epochs_teacher = 4;
  auto engine = make_engine();
  ASSERT_EQ(run_command(straight, *engine), 0);

  const std::string out = fresh_dir("term_" + device);
  const std::string err_path = out + "/stderr.txt", run_dir = out + "/run";
  // The same settings and engine as `straight`, on the command line.
  const std::vector<std::string> args = {"train-teacher",
                                         "--device",
                                         device,
                                         "--threads",
                                         "2",
                                         "--data",
                                         mnist_dir(),
                                         "--out",
                                         run_dir,
                                         "--seed",
                                         "42",
                                         "--train-limit",
                                         "1000",
                                         "--val-size",
                                         "200",
                                         "--test-limit",
                                         "200",
                                         "--epochs-teacher",
                                         "4",
                                         "--teacher-arch",
                                         kSmallTeacher,
                                         "--quiet"};
  const pid_t pid = spawn_kdtrain(args, err_path);
  ASSERT_GT(pid, 0);
  // After epoch 1's checkpoint, three epochs remain: the signal lands mid-training.
  ASSERT_TRUE(wait_for_file(run_dir + "/checkpoint.safetensors"));
  const std::string err = stop_and_reap(pid, {SIGTERM, SIGHUP}, err_path);
  // The message names the first signal delivered. When the process does not run
  // between the two kill() calls (a loaded machine), both are pending at once and
  // Linux delivers the lower-numbered one first: SIGHUP (1) before SIGTERM (15).
  EXPECT_TRUE(err.find("SIGTERM") != std::string::npos || err.find("SIGHUP") != std::string::npos) << err;
  EXPECT_FALSE(fs::exists(run_dir + "/teacher.safetensors")) << "stopped before the teacher was finished";
  const TrainingCheckpoint ck = load_training_checkpoint(run_dir + "/checkpoint.safetensors");
  EXPECT_EQ(ck.phase, Phase::Teacher);
  EXPECT_GE(ck.epochs_done, 1);

  Options resumed = straight;
  resumed.out_dir = run_dir;
  resumed.resume_dir = run_dir;
  auto engine2 = make_engine();
  ASSERT_EQ(run_command(resumed, *engine2), 0);
  EXPECT_EQ(load_model_file(run_dir + "/teacher.safetensors").params,
            load_model_file(straight.out_dir + "/teacher.safetensors").params);
}

TEST(PipelineOrchestration, SigtermThenResumeEqualsUninterruptedRun) {
  sigterm_then_resume_equals_uninterrupted("reference", [] { return make_cpu_engine(); });
}
TEST(PipelineOrchestration, SigtermThenResumeEqualsUninterruptedRunOnTheFastCpuEngine) {
  sigterm_then_resume_equals_uninterrupted("cpu", [] { return make_fast_cpu_engine(2); });
}

// A stop after an epoch's last step (its validation not yet run) resumes
// straight to that validation, and the epoch still reports the mean training
// loss of all its steps, not of none.
TEST(PipelineOrchestration, StopAtTheEndOfAnEpochResumesWithItsLoss) {
  Options straight = small_run(fresh_dir("edge_straight"));
  straight.command = Command::TrainTeacher;
  straight.train_limit = 300;  // 300 training images: 5 steps of 64 (the last of 44)
  straight.val_size = 200;
  straight.epochs_teacher = 2;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(straight, *engine), 0);

  Options broken = straight;
  broken.out_dir = fresh_dir("edge_broken");
  auto engine2 = make_cpu_engine();
  run_stopped_after(broken, *engine2, 5);
  const TrainingCheckpoint ck = load_training_checkpoint(broken.out_dir + "/checkpoint.safetensors");
  EXPECT_EQ(ck.epochs_done, 0);
  EXPECT_EQ(ck.epoch_steps, 5);

  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  auto engine3 = make_cpu_engine();
  ASSERT_EQ(run_command(resumed, *engine3), 0);
  const std::vector<CsvRow> a = parse_metrics(read_text(straight.out_dir + "/metrics.csv"));
  const std::vector<CsvRow> b = parse_metrics(read_text(resumed.out_dir + "/metrics.csv"));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    // The sum is rebuilt from a mean times the step count: equal up to double rounding.
    EXPECT_NEAR(b[i].train_loss, a[i].train_loss, 1e-9 * a[i].train_loss) << "epoch " << i + 1;
    EXPECT_EQ(b[i].val_acc, a[i].val_acc) << "epoch " << i + 1;
  }
  EXPECT_EQ(load_model_file(resumed.out_dir + "/teacher.safetensors").params,
            load_model_file(straight.out_dir + "/teacher.safetensors").params);
}

// Evaluation stops at a batch boundary once a stop is requested, returning
// what it did.
TEST(PipelineOrchestration, EvaluationStopsAtABatchBoundaryOnRequest) {
  auto engine = make_cpu_engine();
  engine->load(load_splits(mnist_dir(), 500, 1000));
  const Arch arch = parse_arch("flatten,dense:10", Shape{1, 28, 28, false}, 10, "--arch");
  std::vector<float> params(size_t(arch.param_count), 0.01f);
  TrainSettings settings;
  settings.eval_batch_size = 100;
  auto model = engine->create_model(arch, params, settings);
  EXPECT_EQ(model->evaluate(SplitId::Val).n, 500);
  request_interrupt();
  const EvalResult stopped = model->evaluate(SplitId::Val);
  clear_interrupt();
  EXPECT_EQ(stopped.n, 0) << "a stop requested before the pass runs no batch";
  EXPECT_EQ(stopped.loss, 0.0);
}

// Batch flags larger than the data behave as PyTorch's DataLoader: one batch
// of the whole training split per epoch, and the sizes used are recorded.
TEST(PipelineOrchestration, BatchSizesLargerThanTheDataAreCappedAndRecorded) {
  Options o = small_run(fresh_dir("oversized"));
  o.train_limit = 100;
  o.val_size = 50;
  o.test_limit = 200;
  o.epochs_teacher = 2;
  o.epochs_student = 1;
  o.batch_size = 100000;
  o.eval_batch_size = 10000000;
  o.latency_batches = {1, 64, 100000};
  RecordingEngine engine;
  ASSERT_EQ(run_command(o, engine), 0);
  // teacher 2 epochs, student 1, scratch 1: each one step over all 100 training images
  const std::vector<std::pair<int64_t, int>> expected = {{0, 100}, {0, 100}, {0, 100}, {0, 100}};
  EXPECT_EQ(engine.log, expected);
  const auto summary = nlohmann::json::parse(read_text(o.out_dir + "/summary.json"));
  EXPECT_EQ(summary["batch_sizes_used"]["batch-size"], 100);
  EXPECT_EQ(summary["batch_sizes_used"]["eval-batch-size"], 200) << "the largest split evaluated: test";
  // The reference engine times batches <= 64 only (Engine::is_reference_cpu).
  EXPECT_EQ(summary["batch_sizes_used"]["latency-batches"], nlohmann::json::array({1, 64}));
  EXPECT_EQ(summary["config"]["batch-size"], 100000) << "the flag as given stays in the config";
}

// A size no machine has: refused before anything is allocated or written,
// naming the need, what is free and the flag to lower.
TEST(PipelineOrchestration, ImpossibleMemoryNeedIsRefusedBeforeAnythingIsWritten) {
  Options o = small_run((fs::path(fresh_dir("impossible")) / "run").string());
  o.train_limit = 1000;
  o.val_size = 100;
  o.test_limit = 0;  // 10,000 test images
  o.eval_batch_size = 10000;
  // ~200 MB of activations per image: 10,000 of them need ~2 TB.
  o.teacher_arch = "conv:16384:3,relu,maxpool:2,flatten,dense:10";
  auto engine = make_cpu_engine();
  try {
    run_command(o, *engine);
    FAIL() << "expected a memory error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("--eval-batch-size 10000 needs ", 0), 0u) << what;
    EXPECT_NE(what.find("GiB available; lower --eval-batch-size"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(o.out_dir)) << "nothing written but the message";
}

TEST(PipelineOrchestration, ImpossibleMemoryNeedExitsOneWithOneLine) {
  const std::string out = fresh_dir("impossible_cli");
  const std::string err_path = out + "/stderr.txt";
  const pid_t pid = spawn_kdtrain(
      {"--device", "cpu", "--data", mnist_dir(), "--out", out + "/run", "--train-limit", "1000", "--val-size", "100",
       "--eval-batch-size", "10000", "--teacher-arch", "conv:16384:3,relu,maxpool:2,flatten,dense:10", "--quiet"},
      err_path);
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_text(err_path);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(err.rfind("kdtrain: --eval-batch-size 10000 needs ", 0), 0u) << err;
  EXPECT_FALSE(fs::exists(out + "/run"));
}

// The CPU reference behind a fixed amount of free memory, recording what the
// memory check asks of it.
class BudgetEngine final : public Engine {
 public:
  explicit BudgetEngine(int64_t budget) : budget_(budget) {}
  std::string device_description() const override { return inner_->device_description(); }
  std::string versions() const override { return inner_->versions(); }
  bool is_reference_cpu() const override { return true; }
  void load(const Splits& s) override { inner_->load(s); }
  MemoryNeed memory_need(const Arch& a, const TrainSettings& s, bool online_teacher) override {
    const MemoryNeed need = inner_->memory_need(a, s, online_teacher);
    asked.push_back({s.hint.on(), online_teacher});
    needed += need.total();
    return need;
  }
  int64_t available_memory() override { return budget_; }
  std::unique_ptr<ModelEngine> create_model(const Arch& a, const std::vector<float>& p,
                                            const TrainSettings& s) override {
    return inner_->create_model(a, p, s);
  }
  void compute_soft_targets(ModelEngine& teacher) override { inner_->compute_soft_targets(teacher); }
  void use_online_teacher(ModelEngine& teacher) override { inner_->use_online_teacher(teacher); }

  struct Asked {
    bool hint, online_teacher;
  };
  std::vector<Asked> asked;  // per memory_need call, in order
  int64_t needed = 0;        // the sum of their totals

 private:
  int64_t budget_;
  std::unique_ptr<Engine> inner_ = make_cpu_engine();
};

// The memory check counts a distilled student's hint map and its buffers, and
// charges online targets the teacher's run on each student batch instead of
// the cached logits: a budget that fits a run with online targets refuses the
// same run with --hint, by exactly the map's bytes, and with cached targets.
TEST(PipelineOrchestration, MemoryCheckCountsTheHintMapAndOnlineTargets) {
  const auto options = [](const std::string& name, SoftTargets targets, HintKind hint) {
    Options o = small_run((fs::path(fresh_dir("budget_" + name)) / "run").string());
    o.train_limit = 300;  // 200 training, 100 validation images
    o.val_size = 100;
    o.test_limit = 100;
    o.eval_batch_size = 100;  // the CPU engines' buffers: max(64, 100) rows
    o.latency_batches = {1};
    o.epochs_teacher = o.epochs_student = 1;
    o.no_baseline = true;
    o.soft_targets = targets;
    o.hint = hint;
    return o;
  };
  const auto refused = [](const Options& o, Engine& engine) {
    try {
      run_command(o, engine);
      ADD_FAILURE() << "expected a memory error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("available; lower"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(o.out_dir)) << "nothing written but the message";
  };
  BudgetEngine measure(0);  // nothing free: refused, after asking what every model needs
  refused(options("measure", SoftTargets::Online, HintKind::Off), measure);
  const int64_t plain = measure.needed;  // all of it: online targets keep no logits
  BudgetEngine fits(plain);
  EXPECT_EQ(run_command(options("fits", SoftTargets::Online, HintKind::Off), fits), 0);

  BudgetEngine hinted(plain);
  refused(options("hinted", SoftTargets::Online, HintKind::Cosine), hinted);
  // The default student's 128 features to kSmallTeacher's 64: the map's
  // parameters, gradient and Adam moments, and per buffer row its mapped
  // features, their gradient and the features' gradient.
  const int64_t ds = 128, dt = 64, rows = 100, f = sizeof(float);
  EXPECT_EQ(hinted.needed - plain, 4 * hint_map_param_count(ds, dt) * f + rows * (2 * dt + ds) * f);
  ASSERT_EQ(hinted.asked.size(), 2u);
  EXPECT_TRUE(hinted.asked[0].online_teacher && !hinted.asked[0].hint) << "the teacher, run on every student batch";
  EXPECT_TRUE(!hinted.asked[1].online_teacher && hinted.asked[1].hint) << "the distilled student, with its map";

  BudgetEngine cached(plain);  // the same models, and 200 x 10 cached logits beside them
  refused(options("cached", SoftTargets::Cached, HintKind::Off), cached);
  EXPECT_EQ(cached.needed, plain) << "on the CPU engines an online teacher runs in its own buffers";
  EXPECT_FALSE(cached.asked.at(0).online_teacher);
}

// ------------------------------------------------------------ --select

// 300 training images (5 steps per epoch, the last of 44), a 500-image test
// split: selection is scripted or compared between runs, so accuracy is not needed.
Options selection_run(const std::string& name, int epochs) {
  Options o = small_run(fresh_dir(name));
  o.train_limit = 300;
  o.val_size = 200;
  o.test_limit = 500;
  o.epochs_teacher = epochs;
  o.epochs_student = epochs;
  return o;
}

// Validation accuracy 0.5, 0.9, 0.7 (of 1,000) after epochs 1, 2, 3: epoch 2 is the best.
ValScript peak_at_epoch_two() {
  ValScript v;
  v.steps_per_epoch = 5;
  for (int64_t correct : {500, 900, 700}) v.by_epoch.push_back(EvalResult{0.5, correct, 1000});
  return v;
}

nlohmann::json model_summary(const std::string& out, const std::string& role) {
  const auto summary = nlohmann::json::parse(read_text(out + "/summary.json"));
  for (const auto& m : summary["models"])
    if (m["role"] == role) return m;
  ADD_FAILURE() << "no " << role << " in " << out << "/summary.json";
  return {};
}

std::vector<float> saved_params(const std::string& out, const std::string& file) {
  return load_model_file(out + "/" + file).params;
}

// Every model's best validation epoch (2 of 3) is saved, tested and timed;
// the distilled student learns from the epoch-2 teacher. The reference: the
// same run stopped after epoch 2 (same seed, so the same first two epochs)
// keeping its last epoch. The last epoch's test accuracy is reported too:
// that of 3 epochs under --select last (the students' from the epoch-2 teacher).
TEST(PipelineSelection, BestValidationEpochIsKeptForEveryModel) {
  Options best = selection_run("select_best", 3);
  RecordingEngine engine;
  engine.script = peak_at_epoch_two();
  ASSERT_EQ(run_command(best, engine), 0);

  Options two = selection_run("select_two", 2);
  two.select = SelectRule::Last;
  auto engine2 = make_cpu_engine();
  ASSERT_EQ(run_command(two, *engine2), 0);
  Options last = selection_run("select_last", 3);  // students: 3 epochs from the epoch-2 teacher
  last.epochs_teacher = 2;
  last.select = SelectRule::Last;
  auto engine3 = make_cpu_engine();
  ASSERT_EQ(run_command(last, *engine3), 0);
  Options last_teacher = selection_run("select_last_teacher", 3);
  last_teacher.command = Command::TrainTeacher;
  last_teacher.select = SelectRule::Last;
  auto engine4 = make_cpu_engine();
  ASSERT_EQ(run_command(last_teacher, *engine4), 0);

  for (const auto& [role, file] :
       std::vector<std::pair<std::string, std::string>>{{"teacher", "teacher.safetensors"},
                                                        {"student", "student.safetensors"},
                                                        {"scratch", "student_scratch.safetensors"}}) {
    const std::string& last_dir = role == "teacher" ? last_teacher.out_dir : last.out_dir;
    EXPECT_EQ(saved_params(best.out_dir, file), saved_params(two.out_dir, file)) << role;
    EXPECT_NE(saved_params(best.out_dir, file), saved_params(last_dir, file)) << role;
    const auto m = model_summary(best.out_dir, role);
    EXPECT_EQ(m["selection"], "best") << role;
    EXPECT_EQ(m["selected_epoch"], 2) << role;
    EXPECT_EQ(m["test_acc"], model_summary(two.out_dir, role)["test_acc"]) << role;
    EXPECT_EQ(m["last_epoch_test_acc"], model_summary(last_dir, role)["test_acc"]) << role;
    EXPECT_EQ(m["curve"].size(), 3u) << role << ": the curves keep every epoch";
    EXPECT_EQ(model_summary(last_dir, role)["selected_epoch"], 3) << role;
  }
  EXPECT_NE(read_text(best.out_dir + "/plots.gp").find("point pt 6"), std::string::npos)
      << "curves.png circles the selected epochs";
}

// Rank 1 of a 2-rank job, alone: its rank-order sums take rank 0's share to
// be the same as its own (x + x), so it trains as a data-parallel rank does,
// without mpirun. `rank0_stops`: rank 0 adds a stop to every one-float sum
// (Session::agree_on_stop's after a model's measurements), as if a signal
// reached it alone while it tested or timed a model.
class SecondRankComm final : public Comm {
 public:
  explicit SecondRankComm(bool rank0_stops = false) : rank0_stops_(rank0_stops) {}
  int rank() const override { return 1; }
  int size() const override { return 2; }
  int node_rank() const override { return 1; }
  std::string describe() const override { return "rank 1 of 2 (test)"; }
  void send(int, int, const std::string&) override { fail("SecondRankComm: no messages"); }
  Message receive(int) override { fail("SecondRankComm: no messages"); }
  void broadcast(std::string&, int) override { fail("SecondRankComm: no broadcasts"); }
  void sum_in_rank_order(float* x, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) x[i] += n == 1 && rank0_stops_ ? 1.0f : x[i];
  }
  bool all_arrive(double) override { return true; }

 protected:
  void abort_impl(const std::string& message, int) override {
    ADD_FAILURE() << message;
    std::abort();
  }

 private:
  bool rank0_stops_;
};

// A data-parallel rank other than 0 trains and validates every epoch with
// rank 0 and keeps each model's selected epoch (the teacher's feeds the
// students), but neither tests, times nor writes the models: rank 0 does.
TEST(PipelineSelection, DataParallelRanksBeyondZeroKeepTheSelectedEpochAndMeasureNothing) {
  const auto run_as = [](Comm& comm, const std::string& name) {
    Options o = selection_run(name, 3);
    o.data_parallel = true;
    o.latency_batches = {1};
    RecordingEngine engine;
    engine.script = peak_at_epoch_two();
    EXPECT_EQ(run_command(o, engine, comm), 0);
    EXPECT_EQ(engine.measured.restores, 3) << name << ": teacher, student and baseline, each at epoch 2 of 3";
    EXPECT_EQ(engine.log.size(), 3u * 3u * 5u) << name << ": 3 models, 3 epochs of 5 steps";
    return std::make_pair(engine.measured, fs::is_empty(o.out_dir));
  };
  SecondRankComm second;
  const auto [rank1, rank1_wrote_nothing] = run_as(second, "rank1");
  EXPECT_EQ(rank1.test_evaluations, 0);
  EXPECT_EQ(rank1.latency_timings, 0);
  EXPECT_TRUE(rank1_wrote_nothing) << "rank 1 writes into a scratch directory of its own";
  const auto [rank0, rank0_wrote_nothing] = run_as(local_comm(), "rank0");
  EXPECT_EQ(rank0.test_evaluations, 6) << "the last epoch and the selected one, of each model";
  EXPECT_EQ(rank0.latency_timings, 3);
  EXPECT_FALSE(rank0_wrote_nothing);
}

// A stop that reaches rank 0 alone while it tests and times the teacher is
// rank 1's too: it stops after the teacher, not waiting in the student's first step.
TEST(PipelineSelection, DataParallelRanksBeyondZeroStopWithRankZeroAfterAModel) {
  Options o = selection_run("rank1_stop", 1);
  o.data_parallel = true;
  RecordingEngine engine;
  SecondRankComm second(/*rank0_stops=*/true);
  try {
    run_command(o, engine, second);
    ADD_FAILURE() << "expected the stop";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the teacher's test evaluation and timing"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(interrupted());
  clear_interrupt();
  EXPECT_EQ(engine.log.size(), 5u) << "the teacher's one epoch, no student step";
}

// Ties: equal accuracy goes to the lower validation loss, then to the earlier epoch.
TEST(PipelineSelection, TiesGoToTheLowerLossThenTheEarlierEpoch) {
  Options o = selection_run("select_ties", 3);
  o.command = Command::TrainTeacher;
  RecordingEngine engine;
  engine.script.steps_per_epoch = 5;
  engine.script.by_epoch = {EvalResult{0.5, 900, 1000}, EvalResult{0.3, 900, 1000}, EvalResult{0.3, 900, 1000}};
  ASSERT_EQ(run_command(o, engine), 0);
  EXPECT_EQ(model_summary(o.out_dir, "teacher")["selected_epoch"], 2);
}

// A run stopped mid-way through epoch 3, after its best epoch 2, resumes
// with epoch 2 kept: the checkpoint carries the kept parameters.
TEST(PipelineSelection, ResumeMidEpochAfterTheBestEpochKeepsIt) {
  Options straight = selection_run("select_straight", 3);
  straight.command = Command::TrainTeacher;
  RecordingEngine engine;
  engine.script = peak_at_epoch_two();
  ASSERT_EQ(run_command(straight, engine), 0);

  Options broken = selection_run("select_broken", 3);
  broken.command = Command::TrainTeacher;
  RecordingEngine engine2;
  engine2.script = peak_at_epoch_two();
  run_stopped_after(broken, engine2, 5 + 5 + 2);  // inside epoch 3
  const TrainingCheckpoint ck = load_training_checkpoint(broken.out_dir + "/checkpoint.safetensors");
  EXPECT_EQ(ck.epochs_done, 2);
  EXPECT_EQ(ck.best_epoch, 2);
  EXPECT_EQ(ck.best_params.size(), ck.params.size());

  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  RecordingEngine engine3;
  engine3.script = peak_at_epoch_two();
  ASSERT_EQ(run_command(resumed, engine3), 0);
  EXPECT_EQ(saved_params(resumed.out_dir, "teacher.safetensors"),
            saved_params(straight.out_dir, "teacher.safetensors"));
  EXPECT_EQ(model_summary(resumed.out_dir, "teacher")["selected_epoch"], 2);
  EXPECT_EQ(model_summary(resumed.out_dir, "teacher")["last_epoch_test_acc"],
            model_summary(straight.out_dir, "teacher")["last_epoch_test_acc"]);
}

// --val-size 0: nothing to select on, so the last epoch, and the report says so.
TEST(PipelineSelection, NoValidationSplitFallsBackToTheLastEpoch) {
  Options o = selection_run("select_noval", 2);
  o.command = Command::TrainTeacher;
  o.val_size = 0;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const auto m = model_summary(o.out_dir, "teacher");
  EXPECT_EQ(m["selection"], "last");
  EXPECT_EQ(m["selected_epoch"], 2);
  EXPECT_EQ(m["last_epoch_test_acc"], m["test_acc"]);
  const auto summary = nlohmann::json::parse(read_text(o.out_dir + "/summary.json"));
  EXPECT_NE(summary["selection"].get<std::string>().find("--val-size 0"), std::string::npos) << summary["selection"];
}

}  // namespace
}  // namespace kd
