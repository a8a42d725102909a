// The CPU pipeline end to end on a small MNIST subset, and the orchestration
// logic around it: batch accounting, determinism, resume, SIGINT, non-finite
// losses. Needs data/mnist (scripts/setup.sh fetches it).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "kd/error.h"
#include "kd/model_io.h"
#include "kd/train.h"

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

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// metrics.csv without the timing columns (seconds, samples_per_s), which differ run to run.
std::string metrics_without_timings(const std::string& csv) {
  std::istringstream in(csv);
  std::string line, out;
  while (std::getline(in, line)) {
    size_t cut = line.size();
    for (int commas = 0; commas < 2 && cut != std::string::npos; ++commas) cut = line.rfind(',', cut - 1);
    out += line.substr(0, cut) + "\n";
  }
  return out;
}

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
                          &r.val_loss, &r.val_acc), 6) << line;
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
  for (const char* f : {"metrics.csv", "summary.json", "teacher.safetensors", "student.safetensors",
                        "student_scratch.safetensors"})
    EXPECT_TRUE(fs::exists(out_ + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out_ + "/checkpoint.safetensors")) << "a finished run leaves no training checkpoint";
  const auto summary = nlohmann::json::parse(read_text(out_ + "/summary.json"));
  EXPECT_EQ(summary["models"].size(), 3u);
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

TEST(PipelineCommands, DistillFromASavedTeacherReusesItUnchanged) {
  Options teach = small_run(fresh_dir("teach"));
  teach.command = Command::TrainTeacher;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(teach, *engine), 0);
  EXPECT_FALSE(fs::exists(teach.out_dir + "/student.safetensors")) << "train-teacher trains the teacher only";

  Options distill = small_run(fresh_dir("distill"));
  distill.command = Command::Distill;
  distill.teacher_path = teach.out_dir + "/teacher.safetensors";
  distill.no_baseline = true;
  distill.epochs_student = 1;
  auto engine2 = make_cpu_engine();
  ASSERT_EQ(run_command(distill, *engine2), 0);
  EXPECT_TRUE(fs::exists(distill.out_dir + "/student.safetensors"));
  EXPECT_FALSE(fs::exists(distill.out_dir + "/teacher.safetensors")) << "distill does not rewrite the teacher";
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

// Wraps the CPU engine and records every train_step (begin, b).
class RecordingModel final : public ModelEngine {
 public:
  RecordingModel(std::unique_ptr<ModelEngine> inner, std::vector<std::pair<int64_t, int>>& log)
      : inner_(std::move(inner)), log_(log) {}
  const Arch& arch() const override { return inner_->arch(); }
  void begin_epoch(const std::vector<int32_t>& order) override { inner_->begin_epoch(order); }
  void train_step(int64_t begin, int b, const LossConfig& loss) override {
    log_.emplace_back(begin, b);
    inner_->train_step(begin, b, loss);
  }
  TrainStats end_epoch() override { return inner_->end_epoch(); }
  EvalResult evaluate(SplitId s) override { return inner_->evaluate(s); }
  LatencyRecord measure_latency(int batch, int repeats) override { return inner_->measure_latency(batch, repeats); }
  std::vector<float> get_params() override { return inner_->get_params(); }
  void set_params(const std::vector<float>& p) override { inner_->set_params(p); }
  OptimState get_optim_state() override { return inner_->get_optim_state(); }
  void set_optim_state(const OptimState& s) override { inner_->set_optim_state(s); }
  ModelEngine* inner() { return inner_.get(); }

 private:
  std::unique_ptr<ModelEngine> inner_;
  std::vector<std::pair<int64_t, int>>& log_;
};
class RecordingEngine final : public Engine {
 public:
  std::string device_description() const override { return inner_->device_description(); }
  std::string versions() const override { return inner_->versions(); }
  bool is_reference_cpu() const override { return true; }
  void load(const Splits& s) override { inner_->load(s); }
  std::unique_ptr<ModelEngine> create_model(const Arch& a, const std::vector<float>& p,
                                            const TrainSettings& s) override {
    return std::make_unique<RecordingModel>(inner_->create_model(a, p, s), log);
  }
  void compute_soft_targets(ModelEngine& teacher) override {
    inner_->compute_soft_targets(*static_cast<RecordingModel&>(teacher).inner());
  }
  std::vector<std::pair<int64_t, int>> log;

 private:
  std::unique_ptr<Engine> inner_ = make_cpu_engine();
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

TEST(PipelineOrchestration, ResumeAfterInterruptEqualsUninterruptedRun) {
  Options straight = small_run(fresh_dir("straight"));
  straight.no_baseline = true;
  straight.epochs_teacher = 1;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(straight, *engine), 0);

  Options broken = straight;
  broken.out_dir = fresh_dir("broken");
  // 3,000 images / 64 = 47 teacher steps; stop 60 steps in: mid-way through student epoch 1.
  setenv("KD_TEST_INTERRUPT_AFTER_STEPS", "60", 1);
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
  EXPECT_EQ(load_model_file(resumed.out_dir + "/teacher.safetensors").params,
            load_model_file(straight.out_dir + "/teacher.safetensors").params);
}

TEST(PipelineOrchestration, ResumeRefusesDifferentSettings) {
  Options o = small_run(fresh_dir("refuse"));
  o.command = Command::TrainTeacher;
  o.epochs_teacher = 1;
  setenv("KD_TEST_INTERRUPT_AFTER_STEPS", "3", 1);
  auto engine = make_cpu_engine();
  EXPECT_THROW(run_command(o, *engine), Error);
  unsetenv("KD_TEST_INTERRUPT_AFTER_STEPS");
  o.resume_dir = o.out_dir;
  o.lr = 5e-4;
  try {
    run_command(o, *engine);
    FAIL() << "expected a settings mismatch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("other settings"), std::string::npos) << e.what();
  }
}

// A real SIGINT to a real kdtrain process: it finishes the step, writes a
// checkpoint and exits non-zero saying how to resume.
TEST(PipelineOrchestration, SigintWritesACheckpointAndExitsNonZero) {
  const std::string binary = std::string(KD_BINARY_DIR) + "/kdtrain";
  ASSERT_TRUE(fs::exists(binary)) << binary;
  const std::string out = fresh_dir("sigint");
  const std::string err_path = out + "/stderr.txt";
  const std::string data = mnist_dir();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* err = std::freopen(err_path.c_str(), "w", stderr);
    FILE* null_out = std::freopen("/dev/null", "w", stdout);
    (void)err;
    (void)null_out;
    execl(binary.c_str(), binary.c_str(), "train-teacher", "--device", "cpu", "--data", data.c_str(), "--out",
          (out + "/run").c_str(), "--train-limit", "1000", "--val-size", "200", "--epochs-teacher", "1000",
          "--teacher-arch", kSmallTeacher, static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first end-of-epoch checkpoint: by then training is under way.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(out + "/run/checkpoint.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "kdtrain must exit, not die of the signal";
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string err = read_text(err_path);
  EXPECT_NE(err.find("interrupted"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(out + "/run/checkpoint.safetensors"));
  const TrainingCheckpoint ck = load_training_checkpoint(out + "/run/checkpoint.safetensors");
  EXPECT_EQ(ck.phase, "teacher");
  EXPECT_GT(ck.optim.step, 0);
}

}  // namespace
}  // namespace kd
