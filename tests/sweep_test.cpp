// kdtrain sweep: the Pareto front, aggregation and recommendation on
// constructed tables, the resume state, and small sweeps end to end on the
// CPU reference (2 architectures x 2 temperatures x 1 alpha on a few hundred
// MNIST images): files, resume after a stop, seed 0 equal to `kdtrain run`,
// constraints that nothing meets. Needs data/mnist (scripts/setup.sh).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/error.h"
#include "kd/model_io.h"
#include "kd/onnx_runtime.h"
#include "kd/sweep.h"
#include "kd/engine.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// ------------------------------------------------------------ pure functions
TEST(SweepPareto, ConstructedTableWithTies) {
  const std::vector<ParetoPoint> points = {
      {0.95, 10},  // 0: optimal, tied with 1 (equal points dominate neither)
      {0.95, 10},  // 1: optimal
      {0.97, 20},  // 2: optimal, tied with 7
      {0.96, 20},  // 3: dominated by 2 (same latency, less accurate)
      {0.95, 15},  // 4: dominated by 0 (same accuracy, slower)
      {0.99, 0},   // 5: not timed: never optimal, dominates nothing
      {0.90, 5},   // 6: optimal (the fastest)
      {0.97, 20},  // 7: optimal
      {0.94, 12},  // 8: dominated by 0 (more accurate and faster)
      {0.98, 40},  // 9: optimal (the most accurate timed)
  };
  const std::vector<bool> expected = {true, true, true, false, false, false, true, true, false, true};
  EXPECT_EQ(pareto_optimal(points), expected);
  EXPECT_TRUE(pareto_optimal({}).empty());
  EXPECT_EQ(pareto_optimal({{0.5, 3}}), std::vector<bool>{true});
}

SweepRun made_run(RunKind kind, const std::string& arch, double t, int seed_index, double val, double test,
                  double b1_ms) {
  SweepRun r;
  r.kind = kind, r.arch = arch, r.temperature = t, r.alpha = kind == RunKind::Scratch ? 0 : 0.9,
  r.seed_index = seed_index;
  r.seed = 100 + uint64_t(seed_index);
  r.params = arch == "a" ? 1000 : 5000;
  r.bytes = 4 * r.params;
  r.selected_epoch = 2;
  r.val_acc = val, r.test_acc = test;
  r.train_seconds = 1.5;
  r.latency_b1_ms = b1_ms, r.latency_large_ms = 100 * b1_ms, r.large_batch = 1024;
  r.model_file =
      "models/" + std::string(run_kind_name(kind)) + arch + std::to_string(t) + "_" + std::to_string(seed_index);
  return r;
}

TEST(SweepAggregate, MeanStdMedianLatencyAndKeptSeed) {
  const std::vector<SweepRun> runs = {
      made_run(RunKind::Distilled, "a", 4, 0, 0.90, 0.91, 0.010),
      made_run(RunKind::Distilled, "a", 4, 1, 0.93, 0.93, 0.030),
      made_run(RunKind::Scratch, "a", 1, 0, 0.93, 0.89, 0.020),
      made_run(RunKind::Scratch, "a", 1, 1, 0.92, 0.87, 0.500),
      made_run(RunKind::Distilled, "b", 4, 0, 0.95, 0.96, 0.050),
      made_run(RunKind::Distilled, "b", 4, 1, 0.95, 0.94, 0.070),
  };
  const std::vector<SweepConfig> c = aggregate_sweep(runs);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].kind, RunKind::Distilled);
  EXPECT_EQ(c[1].kind, RunKind::Scratch);
  EXPECT_EQ(c[2].arch, "b");
  EXPECT_EQ(c[0].seeds, 2);
  EXPECT_NEAR(c[0].acc_mean, 0.92, 1e-12);
  EXPECT_NEAR(c[0].acc_std, 0.01414213562373095, 1e-12);  // sample std of {0.91, 0.93}
  // Architecture a's latency: the median of all four of its runs, 0.025 ms.
  EXPECT_NEAR(c[0].latency_b1_us, 25.0, 1e-9);
  EXPECT_NEAR(c[1].latency_b1_us, 25.0, 1e-9);
  EXPECT_NEAR(c[2].latency_b1_us, 60.0, 1e-9);
  EXPECT_NEAR(c[0].latency_large_us, 2500.0, 1e-6);
  // The kept seed: best validation accuracy; ties go to the lower seed index.
  EXPECT_EQ(c[0].model_file, runs[1].model_file);
  EXPECT_EQ(c[1].model_file, runs[2].model_file);
  EXPECT_EQ(c[2].model_file, runs[4].model_file);
  // a-distilled (92%, 25 us) dominates a-scratch (88%, 25 us); b (95%, 60 us) is slower but more accurate.
  EXPECT_TRUE(c[0].pareto);
  EXPECT_FALSE(c[1].pareto);
  EXPECT_TRUE(c[2].pareto);
  // One seed: std 0, not NaN.
  const std::vector<SweepConfig> one = aggregate_sweep({runs[0]});
  EXPECT_EQ(one[0].acc_std, 0.0);
}

std::vector<SweepConfig> constraint_table() {
  std::vector<SweepConfig> t(4);
  t[0].arch = "small", t[0].acc_mean = 0.950, t[0].latency_b1_us = 5, t[0].params = 10000;
  t[1].arch = "medium", t[1].acc_mean = 0.975, t[1].latency_b1_us = 12, t[1].params = 100000;
  t[2].arch = "medium-tie", t[2].acc_mean = 0.975, t[2].latency_b1_us = 11, t[2].params = 100000;
  t[3].arch = "large", t[3].acc_mean = 0.985, t[3].latency_b1_us = 40, t[3].params = 1000000;
  return t;
}

TEST(SweepRecommend, MostAccurateMeetingEveryConstraint) {
  const std::vector<SweepConfig> t = constraint_table();
  std::string why;
  EXPECT_EQ(recommend_student(t, {}, why), 3);  // unconstrained: the most accurate
  EXPECT_EQ(why, "");
  EXPECT_EQ(recommend_student(t, {20.0, std::nullopt, std::nullopt}, why), 2);  // tie at 97.5%: the faster
  EXPECT_EQ(recommend_student(t, {std::nullopt, int64_t(50000), std::nullopt}, why), 0);
  EXPECT_EQ(recommend_student(t, {5.0, std::nullopt, 95.0}, why), 0);  // bounds are inclusive
  EXPECT_EQ(recommend_student(t, {std::nullopt, std::nullopt, 98.0}, why), 3);
}

TEST(SweepRecommend, NothingQualifiesSaysWhichConstraintsAndHowMany) {
  std::string why;
  EXPECT_EQ(recommend_student(constraint_table(), {10.0, std::nullopt, 97.0}, why), -1);
  EXPECT_EQ(why, "no student meets all of --max-latency-us 10 (1 of 4 do), --min-accuracy 97 (3 of 4 do)");
  EXPECT_EQ(recommend_student(constraint_table(), {std::nullopt, int64_t(5), std::nullopt}, why), -1);
  EXPECT_EQ(why, "no student meets all of --max-params 5 (0 of 4 do)");
}

TEST(SweepPlan, EveryArchitectureDistilledAtEveryTAndAlphaThenFromScratch) {
  const std::vector<SweepRun> plan = sweep_plan({"a", "b"}, {2, 4}, {0.5, 0.9}, 2);
  ASSERT_EQ(plan.size(), 2u * (2 * 2 + 1) * 2);
  std::set<std::string> keys;
  for (const SweepRun& r : plan) keys.insert(sweep_run_key(r));
  EXPECT_EQ(keys.size(), plan.size());
  EXPECT_EQ(sweep_run_key(plan[0]), "distilled a T=2 alpha=0.5 seed=0");
  EXPECT_EQ(sweep_run_key(plan[1]), "distilled a T=2 alpha=0.5 seed=1");
  EXPECT_EQ(sweep_run_key(plan[8]), "scratch a T=1 alpha=0 seed=0");
  EXPECT_EQ(plan[10].arch, "b");
  for (const SweepRun& r : sweep_plan({"a", "b"}, {2, 4}, {0.5, 0.9}, 2, /*no_scratch=*/true))
    EXPECT_EQ(r.kind, RunKind::Distilled) << "--no-baseline";
  EXPECT_EQ(sweep_plan({"a", "b"}, {2, 4}, {0.5, 0.9}, 2, true).size(), 2u * 2 * 2 * 2);
}

TEST(SweepState, RoundTripAndRejection) {
  SweepState s;
  s.fingerprint = "seed=1 batch=64";
  s.teacher_done = true;
  s.teacher_history_csv = "teacher,1,0.5,0,0.4,0.9,1.0,100\n";
  s.teacher_train_seconds = 12.5;
  s.runs = {made_run(RunKind::Distilled, "a", 4, 0, 0.9, 0.91, 0.01),
            made_run(RunKind::Scratch, "b", 1, 1, 0.8, 0.81, 0)};
  s.runs[0].seed = 18446744073709551615ull;  // every uint64 seed survives JSON
  const SweepState back = parse_sweep_state(sweep_state_json(s), "x.json");
  EXPECT_EQ(back.fingerprint, s.fingerprint);
  EXPECT_TRUE(back.teacher_done);
  EXPECT_EQ(back.teacher_history_csv, s.teacher_history_csv);
  EXPECT_EQ(back.teacher_train_seconds, 12.5);
  ASSERT_EQ(back.runs.size(), 2u);
  EXPECT_EQ(sweep_state_json(back), sweep_state_json(s));
  EXPECT_EQ(back.runs[0].seed, s.runs[0].seed);
  EXPECT_EQ(back.runs[1].latency_b1_ms, 0.0);  // untimed stays untimed (null in JSON)
  try {
    parse_sweep_state("{\"format\": \"something else\"}", "dir/sweep_state.json");
    FAIL() << "accepted a foreign file";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("dir/sweep_state.json: not a kdtrain sweep state", 0), 0u) << e.what();
  }
}

// ------------------------------------------------------------ end to end
constexpr const char* kSmallTeacher = "conv:8:3,relu,maxpool:2,dropout:0.1,flatten,dense:64,relu,dense:10";
constexpr const char* kArchA = "flatten,dense:16,relu,dense:10";
constexpr const char* kArchB = "flatten,dense:10";

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kd_sweep_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir.string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// 300 training images (5 steps of 64 per epoch), 100 more for validation, 200 test images.
Options small_sweep(const std::string& out) {
  Options o;
  o.command = Command::Sweep;
  o.data_dir = std::string(KD_SOURCE_DIR) + "/data/mnist";
  if (!fs::exists(o.data_dir + "/train-images-idx3-ubyte"))
    ADD_FAILURE() << o.data_dir << " has no MNIST: run scripts/setup.sh (or data/fetch.sh) first";
  o.device = DeviceChoice::Cpu;
  o.out_dir = out;
  o.seed = 7;
  o.train_limit = 300;
  o.val_size = 100;
  o.test_limit = 200;
  o.epochs_teacher = 1;
  o.epochs_student = 1;
  o.teacher_arch = kSmallTeacher;
  o.student_archs = {kArchA, kArchB};
  o.temperatures = {2, 4};
  o.alphas = {0.9};
  o.quiet = true;
  o.no_ort = true;  // SweepOrt times ONNX Runtime; the others need not wait for it
  return o;
}

SweepState state_of(const std::string& dir) {
  return parse_sweep_state(read_text(dir + "/sweep_state.json"), dir + "/sweep_state.json");
}

class SmallSweep : public ::testing::Test {
 protected:
  // One uninterrupted sweep, shared by the tests below.
  static void SetUpTestSuite() {
    dir_ = new std::string(fresh_dir("straight"));
    auto engine = make_cpu_engine();
    ASSERT_EQ(run_command(small_sweep(*dir_), *engine), 0);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string* dir_;
};
std::string* SmallSweep::dir_ = nullptr;

TEST_F(SmallSweep, WritesFilesThatParse) {
  const std::string& dir = *dir_;
  for (const char* f :
       {"sweep.csv", "sweep.json", "sweep_state.json", "teacher.safetensors", "recommended.safetensors"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    EXPECT_GT(fs::file_size(dir + "/pareto.png"), 1000u);
  }
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.safetensors")) << "students write no checkpoints";

  const nlohmann::json j = nlohmann::json::parse(read_text(dir + "/sweep.json"));
  ASSERT_EQ(j.at("configs").size(), 6u);  // 2 archs x (2 T x 1 alpha + scratch)
  ASSERT_EQ(j.at("runs").size(), 6u);
  EXPECT_EQ(j.at("teacher").at("arch"), kSmallTeacher);
  std::vector<ParetoPoint> points;
  int recommended = -1;
  for (size_t i = 0; i < 6; ++i) {
    const nlohmann::json& c = j.at("configs")[i];
    EXPECT_GT(c.at("test_acc_mean").get<double>(), 0.1) << "above chance after one epoch";
    EXPECT_GT(c.at("latency_b1_us").get<double>(), 0);
    EXPECT_TRUE(fs::exists(dir + "/" + c.at("model_file").get<std::string>()));
    points.push_back({c.at("test_acc_mean").get<double>(), c.at("latency_b1_us").get<double>()});
    if (c.at("recommended").get<bool>()) recommended = int(i);
  }
  const std::vector<bool> optimal = pareto_optimal(points);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(j.at("configs")[i].at("pareto").get<bool>(), optimal[i]) << i;
  // Unconstrained: the most accurate student is recommended, and its weights are what was saved.
  ASSERT_EQ(recommended, j.at("recommended").get<int>());
  for (const auto& c : j.at("configs"))
    EXPECT_LE(c.at("test_acc_mean").get<double>(),
              j.at("configs")[size_t(recommended)].at("test_acc_mean").get<double>());
  EXPECT_EQ(
      load_model_file(dir + "/recommended.safetensors").params,
      load_model_file(dir + "/" + j.at("configs")[size_t(recommended)].at("model_file").get<std::string>()).params);

  // sweep.csv: a header, the teacher, one row per configuration, the same marks.
  std::istringstream csv(read_text(dir + "/sweep.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[0].rfind("kind,arch,temperature,alpha,seeds,test_acc_mean,", 0), 0u);
  EXPECT_EQ(lines[1].rfind(std::string("teacher,\"") + kSmallTeacher + "\"", 0), 0u);
  EXPECT_EQ(lines[2].rfind(std::string("distilled,\"") + kArchA + "\",2,0.9,1,", 0), 0u) << lines[2];
  EXPECT_EQ(lines[4].rfind(std::string("scratch,\"") + kArchA + "\",,,1,", 0), 0u) << lines[4];
  for (size_t i = 0; i < 6; ++i) {
    const std::string& row = lines[i + 2];
    EXPECT_EQ(row.substr(row.size() - 3),
              std::string(optimal[i] ? "1" : "0") + "," + (int(i) == recommended ? "1" : "0"))
        << row;
  }
}

TEST_F(SmallSweep, SeedZeroTrainsWhatRunTrains) {
  // `kdtrain run` with the sweep's first architecture at T = 4: the same
  // teacher, the same distilled student and the same scratch baseline.
  Options run = small_sweep(fresh_dir("run"));
  run.command = Command::Run;
  run.student_arch = kArchA;
  run.temperature = 4;
  run.alpha = 0.9;
  run.student_archs.clear(), run.temperatures.clear(), run.alphas.clear();
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(run, *engine), 0);
  const std::string& dir = *dir_;
  EXPECT_EQ(load_model_file(run.out_dir + "/teacher.safetensors").params,
            load_model_file(dir + "/teacher.safetensors").params);
  EXPECT_EQ(load_model_file(run.out_dir + "/student.safetensors").params,
            load_model_file(dir + "/models/distilled_flatten_dense-16_relu_dense-10_T4_a0.9_s0.safetensors").params);
  EXPECT_EQ(load_model_file(run.out_dir + "/student_scratch.safetensors").params,
            load_model_file(dir + "/models/scratch_flatten_dense-16_relu_dense-10_s0.safetensors").params);
}

// Runs `o` with the test hook stopping it after `steps` training steps, as a signal would.
std::string stopped_after(const Options& o, int steps) {
  setenv("KD_TEST_INTERRUPT_AFTER_STEPS", std::to_string(steps).c_str(), 1);
  std::string message;
  try {
    auto engine = make_cpu_engine();
    run_command(o, *engine);
    ADD_FAILURE() << "not stopped after " << steps << " steps";
  } catch (const Error& e) {
    message = e.what();
  }
  unsetenv("KD_TEST_INTERRUPT_AFTER_STEPS");
  return message;
}

TEST_F(SmallSweep, ResumeSkipsFinishedRunsAndEqualsUninterrupted) {
  Options broken = small_sweep(fresh_dir("broken"));
  // Stop 1: step 2 of the teacher's 5.
  std::string stop = stopped_after(broken, 2);
  EXPECT_NE(stop.find("kdtrain sweep --resume " + broken.out_dir), std::string::npos) << stop;
  EXPECT_TRUE(fs::exists(broken.out_dir + "/checkpoint.safetensors"));
  EXPECT_FALSE(state_of(broken.out_dir).teacher_done);

  // Stop 2: the teacher's last 3 steps, runs 1 and 2 (5 steps each), then step 1 of run 3 (A from scratch).
  Options resumed = broken;
  resumed.resume_dir = broken.out_dir;
  resumed.out_dir.clear();
  stop = stopped_after(resumed, 3 + 5 + 5 + 1);
  EXPECT_NE(stop.find("during scratch epoch 1 after batch 1"), std::string::npos) << stop;  // run 3: scratch
  EXPECT_NE(stop.find("a resumed sweep skips them"), std::string::npos) << stop;
  const SweepState partial = state_of(broken.out_dir);
  EXPECT_TRUE(partial.teacher_done);
  ASSERT_EQ(partial.runs.size(), 2u);
  EXPECT_FALSE(fs::exists(broken.out_dir + "/checkpoint.safetensors")) << "the finished teacher's checkpoint is gone";

  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(resumed, *engine), 0);
  const SweepState done = state_of(broken.out_dir);
  ASSERT_EQ(done.runs.size(), 6u);
  EXPECT_EQ(done.teacher_history_csv, partial.teacher_history_csv) << "one teacher epoch, recorded once";
  EXPECT_EQ(done.teacher_train_seconds, partial.teacher_train_seconds);
  EXPECT_GT(done.teacher_train_seconds, 0);
  std::set<std::string> keys;
  for (const SweepRun& r : done.runs) keys.insert(sweep_run_key(r));
  EXPECT_EQ(keys.size(), 6u) << "no run trained twice";
  // The two runs finished before the stop were not trained again: their
  // records (timings included) are the ones written before it.
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(sweep_run_key(done.runs[i]), sweep_run_key(partial.runs[i]));
    EXPECT_EQ(done.runs[i].train_seconds, partial.runs[i].train_seconds);
    EXPECT_EQ(done.runs[i].latency_b1_ms, partial.runs[i].latency_b1_ms);
  }
  // Results equal the uninterrupted sweep's: every run's accuracies and weights.
  const SweepState straight = state_of(*dir_);
  ASSERT_EQ(straight.runs.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    SCOPED_TRACE(sweep_run_key(done.runs[i]));
    EXPECT_EQ(sweep_run_key(done.runs[i]), sweep_run_key(straight.runs[i]));
    EXPECT_EQ(done.runs[i].test_acc, straight.runs[i].test_acc);
    EXPECT_EQ(done.runs[i].val_acc, straight.runs[i].val_acc);
    EXPECT_EQ(load_model_file(broken.out_dir + "/" + done.runs[i].model_file).params,
              load_model_file(*dir_ + "/" + straight.runs[i].model_file).params);
  }
  EXPECT_EQ(load_model_file(broken.out_dir + "/teacher.safetensors").params,
            load_model_file(*dir_ + "/teacher.safetensors").params);
}

TEST_F(SmallSweep, ConstraintsNothingMeetsIsAClearErrorAfterTheResults) {
  // A finished sweep resumed with other constraints trains nothing and chooses again.
  Options o = small_sweep("");
  o.resume_dir = *dir_;
  o.out_dir.clear();
  o.max_params = 5;
  o.export_best = fresh_dir("best") + ".onnx";
  const auto before = state_of(*dir_).runs.size();
  try {
    auto engine = make_cpu_engine();
    run_command(o, *engine);
    FAIL() << "no student has 5 parameters";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("no student meets all of --max-params 5 (0 of 6 do)", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find(o.export_best + " was not written"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.export_best));
  EXPECT_EQ(state_of(*dir_).runs.size(), before);
  EXPECT_FALSE(fs::exists(*dir_ + "/recommended.safetensors"));
  const nlohmann::json j = nlohmann::json::parse(read_text(*dir_ + "/sweep.json"));
  EXPECT_TRUE(j.at("recommended").is_null());
  EXPECT_EQ(j.at("configs").size(), 6u);

  // The smallest architecture under a parameter cap between the two.
  o.max_params = 10000;  // kArchB has 7,850, kArchA 12,730
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const nlohmann::json k = nlohmann::json::parse(read_text(*dir_ + "/sweep.json"));
  const auto& chosen = k.at("configs")[k.at("recommended").get<size_t>()];
  EXPECT_EQ(chosen.at("arch"), kArchB);
  EXPECT_TRUE(fs::exists(*dir_ + "/recommended.safetensors"));
  EXPECT_GT(fs::file_size(o.export_best), 4u * 7850) << "the recommended student as ONNX, weights included";
  fs::remove(o.export_best);
}

// With ONNX Runtime installed (scripts/onnxruntime.sh) every configuration
// gets its latency under it; without, the sweep says why and goes on.
TEST(SweepOrt, LatencyPerArchitectureOrANote) {
  Options o = small_sweep(fresh_dir("ort"));
  o.student_archs = {kArchB};
  o.temperatures = {4};
  o.no_ort = false;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const nlohmann::json j = nlohmann::json::parse(read_text(o.out_dir + "/sweep.json"));
  ASSERT_EQ(j.at("configs").size(), 2u);
  std::string why_not;
  if (ort_version(why_not).empty()) {
    EXPECT_EQ(j.at("onnx_runtime"), why_not);
    EXPECT_TRUE(j.at("configs")[0].at("ort_latency_b1_us").is_null());
    GTEST_SKIP() << why_not;
  }
  // One measurement for the architecture, shared by its distilled and scratch rows.
  EXPECT_GT(j.at("configs")[0].at("ort_latency_b1_us").get<double>(), 0);
  EXPECT_EQ(j.at("configs")[0].at("ort_latency_b1_us"), j.at("configs")[1].at("ort_latency_b1_us"));
  int measured = 0;
  for (const auto& run : j.at("runs")) measured += !run.at("ort_latency_b1_ms").is_null();
  EXPECT_EQ(measured, 1);
}

TEST(SweepErrors, BadArchitectureInTheListNamesWhichValue) {
  Options o = small_sweep(fresh_dir("bad_arch"));
  o.student_archs = {kArchA, "flatten,dense:7"};
  auto engine = make_cpu_engine();
  try {
    run_command(o, *engine);
    FAIL() << "accepted dense:7 for 10 classes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--student-arch (value 2 of 2): token 2 'dense:7'"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out_dir)) << "nothing written before the grid is checked";
  o.student_archs = {kArchA, "flatten, dense:16, relu, dense:10"};
  try {
    run_command(o, *engine);
    FAIL() << "accepted the same architecture twice";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--student-arch: values 1 and 2 are the same architecture"), std::string::npos)
        << e.what();
  }
}

TEST(SweepErrors, ResumeNeedsASweepDirectoryAndTheSameSettings) {
  Options o = small_sweep("");
  o.resume_dir = fresh_dir("not_a_sweep");
  fs::create_directories(o.resume_dir);
  auto engine = make_cpu_engine();
  try {
    run_command(o, *engine);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume: no sweep state at"), std::string::npos) << e.what();
  }
  SweepState other;
  other.fingerprint = "seed=1";
  std::ofstream(o.resume_dir + "/sweep_state.json") << sweep_state_json(other);
  try {
    run_command(o, *engine);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sweep_state.json was written with --seed 1, this run has --seed " +
                                         std::to_string(o.seed) + "; pass the same flags as the interrupted sweep"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kd
