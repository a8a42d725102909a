// metrics.csv, summary.json, the report table and the plots, from a RunReport
// built by hand so every derived number can be checked against arithmetic
// done here.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kd/report.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace kd {
namespace {

EpochRecord epoch(Phase phase, int n, double loss, double val_acc) {
  EpochRecord e;
  e.phase = phase;
  e.epoch = n;
  e.train_loss = loss;
  e.train_kl = phase == Phase::Student ? loss / 3 : 0;
  e.val_loss = loss * 1.25;
  e.val_acc = val_acc;
  e.seconds = 12.5 / n;
  e.samples_per_s = 55000 / e.seconds;
  return e;
}

LatencyRecord latency(int batch, double median_ms) {
  LatencyRecord l;
  l.batch = batch;
  l.median_ms = median_ms;
  l.p90_ms = median_ms * 1.1;
  l.repeats = 50;
  l.samples_per_s = batch / (median_ms / 1000);
  return l;
}

ModelReport model(Phase role, int64_t params, double test_acc, std::vector<double> latency_ms) {
  ModelReport m;
  m.role = role;
  m.arch = role == Phase::Teacher ? kDefaultTeacherArch : kDefaultStudentArch;
  m.params = params;
  m.bytes = params * 4;
  m.test_acc = test_acc;
  m.test_errors = std::llround((1 - test_acc) * 10000);
  m.test_loss = 1 - test_acc;
  m.train_seconds = role == Phase::Teacher ? 120.3 : 30.5;
  m.curve = {epoch(role, 1, 0.5, test_acc - 0.01), epoch(role, 2, 0.25, test_acc - 0.005)};
  const int batches[] = {1, 64};
  for (size_t i = 0; i < latency_ms.size(); ++i) m.latency.push_back(latency(batches[i], latency_ms[i]));
  return m;
}

// Teacher 99.00 %, distilled student 97.50 %, scratch student 97.00 %; the
// student is 4x faster at batch 1 and 16x at batch 64.
RunReport full_report() {
  RunReport r;
  r.options.batch_size = 64;
  r.options.temperature = 4.0;
  r.options.alpha = 0.9;
  r.options.seed = 7;
  r.device = "CPU (2 threads, test)";
  r.versions = "kdtrain test";
  r.data_dir = "data/mnist";
  r.data_format = "IDX";
  r.input = "28x28";
  r.normalization = "0.1307/0.3081";
  r.train_n = 55000;
  r.val_n = 5000;
  r.test_n = 10000;
  r.num_classes = 10;
  r.models = {model(Phase::Teacher, 1199882, 0.99, {2.0, 4.0}), model(Phase::Student, 235146, 0.975, {0.5, 0.25}),
              model(Phase::Scratch, 235146, 0.97, {0.5, 0.25})};
  r.phases = {{"load data", 0.5}, {"teacher training", 120.25}};
  r.total_seconds = 200.75;
  r.started_at = "2025-01-02T03:04:05Z";
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ------------------------------------------------------------ metrics.csv
TEST(MetricsCsv, HeaderThenOneRowPerEpochOfEveryModel) {
  const RunReport r = full_report();
  const std::vector<std::string> lines = lines_of(metrics_csv(r));
  ASSERT_EQ(lines.size(), 1u + 6u);
  EXPECT_EQ(lines[0], "phase,epoch,train_loss,train_kl,val_loss,val_acc,seconds,samples_per_s");
  size_t row = 1;
  for (const ModelReport& m : r.models)
    for (const EpochRecord& e : m.curve) {
      SCOPED_TRACE(lines[row]);
      char phase[32] = {0};
      EpochRecord back;
      ASSERT_EQ(
          std::sscanf(lines[row].c_str(), "%31[^,],%d,%lf,%lf,%lf,%lf,%lf,%lf", phase, &back.epoch, &back.train_loss,
                      &back.train_kl, &back.val_loss, &back.val_acc, &back.seconds, &back.samples_per_s),
          8);
      EXPECT_EQ(std::string(phase), phase_name(e.phase));
      EXPECT_EQ(back.epoch, e.epoch);
      // 9 significant digits: relative error at most 5e-9 (and float values read back exactly).
      const double rel = 5e-9;
      EXPECT_NEAR(back.train_loss, e.train_loss, rel * std::fabs(e.train_loss));
      EXPECT_NEAR(back.train_kl, e.train_kl, rel * std::fabs(e.train_kl));
      EXPECT_NEAR(back.val_loss, e.val_loss, rel * std::fabs(e.val_loss));
      EXPECT_NEAR(back.val_acc, e.val_acc, rel * std::fabs(e.val_acc));
      EXPECT_NEAR(back.seconds, e.seconds, rel * std::fabs(e.seconds));
      EXPECT_NEAR(back.samples_per_s, e.samples_per_s, rel * std::fabs(e.samples_per_s));
      ++row;
    }
}

TEST(MetricsCsv, HeaderOnlyWhenNothingWasTrained) {
  RunReport r;
  r.models.push_back(ModelReport{});
  EXPECT_EQ(metrics_csv(r), "phase,epoch,train_loss,train_kl,val_loss,val_acc,seconds,samples_per_s\n");
}

// ------------------------------------------------------------ summary.json
TEST(SummaryJson, HoldsConfigDataModelsAndDerivedComparisons) {
  const RunReport r = full_report();
  const json j = json::parse(summary_json(r));

  EXPECT_EQ(j["config"]["batch-size"], 64);
  EXPECT_EQ(j["config"]["seed"], 7);
  EXPECT_EQ(j["config"]["temperature"], 4.0);
  EXPECT_EQ(j["config"]["alpha"], 0.9);
  EXPECT_EQ(j["config"]["epochs-teacher"], 5);
  EXPECT_EQ(j["config"]["teacher-arch"], kDefaultTeacherArch);
  EXPECT_EQ(j["config"]["optimizer"], "adam");
  EXPECT_EQ(j["config"]["no-baseline"], false);
  EXPECT_EQ(j["config"]["latency-batches"], json({1, 64, 1024, 10000}));
  EXPECT_EQ(j["device"], r.device);
  EXPECT_EQ(j["versions"], r.versions);
  EXPECT_EQ(j["started_at"], r.started_at);
  EXPECT_EQ(j["total_seconds"], 200.75);
  EXPECT_EQ(j["data"], json({{"dir", "data/mnist"},
                             {"format", "IDX"},
                             {"input", "28x28"},
                             {"class_names", json::array()},
                             {"normalize", "0.1307/0.3081"},
                             {"train", 55000},
                             {"val", 5000},
                             {"test", 10000},
                             {"classes", 10}}));
  EXPECT_EQ(j["phases"][1], json({{"phase", "teacher training"}, {"seconds", 120.25}}));

  ASSERT_EQ(j["models"].size(), 3u);
  const json& student = j["models"][1];
  EXPECT_EQ(student["role"], "student");
  EXPECT_EQ(student["params"], 235146);
  EXPECT_EQ(student["bytes"], 940584);
  EXPECT_EQ(student["test_acc"], 0.975);
  EXPECT_EQ(student["test_errors"], 250);
  EXPECT_EQ(student["train_seconds"], 30.5);
  ASSERT_EQ(student["curve"].size(), 2u);
  EXPECT_EQ(student["curve"][1]["epoch"], 2);
  EXPECT_EQ(student["curve"][1]["train_loss"], 0.25);
  ASSERT_EQ(student["latency"].size(), 2u);
  EXPECT_EQ(student["latency"][1]["batch"], 64);
  EXPECT_EQ(student["latency"][1]["median_ms"], 0.25);

  // Each derived number is one division or subtraction of the inputs, so the
  // only error is the rounding of that one operation: 1e-12 is ample.
  const json& vs = j["comparisons"]["student_vs_teacher"];
  ASSERT_EQ(vs["speedup"].size(), 2u);
  EXPECT_EQ(vs["speedup"][0]["batch"], 1);
  EXPECT_NEAR(vs["speedup"][0]["speedup"].get<double>(), 2.0 / 0.5, 1e-12);
  EXPECT_EQ(vs["speedup"][1]["batch"], 64);
  EXPECT_NEAR(vs["speedup"][1]["speedup"].get<double>(), 4.0 / 0.25, 1e-12);
  EXPECT_NEAR(vs["size_ratio"].get<double>(), 4799528.0 / 940584.0, 1e-12);
  EXPECT_NEAR(vs["accuracy_gap"].get<double>(), 0.99 - 0.975, 1e-12);
  EXPECT_NEAR(j["comparisons"]["distillation_gain"].get<double>(), 0.975 - 0.97, 1e-12);
}

TEST(SummaryJson, ComparisonsOnlyForModelsThatRan) {
  RunReport r = full_report();
  r.models.pop_back();  // no scratch baseline
  json j = json::parse(summary_json(r));
  EXPECT_TRUE(j["comparisons"].contains("student_vs_teacher"));
  EXPECT_FALSE(j["comparisons"].contains("distillation_gain"));
  r.models.pop_back();  // teacher only
  j = json::parse(summary_json(r));
  EXPECT_TRUE(j["comparisons"].empty());
}

TEST(SummaryJson, NonFiniteNumbersBecomeNull) {
  RunReport r = full_report();
  r.models[0].test_loss = NAN;
  r.models[0].curve[0].train_loss = INFINITY;
  r.models[1].latency[0].median_ms = 0;  // a speed-up of teacher / 0 = inf
  const std::string text = summary_json(r);
  const json j = json::parse(text);  // throws (and fails the test) on NaN/Infinity tokens
  EXPECT_TRUE(j["models"][0]["test_loss"].is_null());
  EXPECT_TRUE(j["models"][0]["curve"][0]["train_loss"].is_null());
  EXPECT_TRUE(j["comparisons"]["student_vs_teacher"]["speedup"][0]["speedup"].is_null());
  EXPECT_FALSE(contains(text, "nan") || contains(text, "NaN") || contains(text, "inf") || contains(text, "Inf"));
}

// ------------------------------------------------------------ table
TEST(ReportTable, ModelColumnsRowsAndVerdicts) {
  const std::string table = report_table(full_report());
  for (const char* part : {"teacher",
                           "student (distilled)",
                           "student (scratch)",
                           "1,199,882",
                           "235,146",
                           "4.58 MiB",   // 4,799,528 / 2^20 = 4.577
                           "918.5 KiB",  // 940,584 / 1024 = 918.54
                           "99.00 %",
                           "97.50 %",
                           "97.00 %",
                           "test errors",
                           "100",
                           "250",
                           "300",
                           "120.3 s",
                           "30.5 s",
                           "latency b=1 (ms, median)",
                           "2.000",
                           "0.500",
                           "latency b=64",
                           "0.250",
                           "throughput b=64 (samples/s)",
                           "256,000",  // 64 / 0.25 ms
                           "4.00x at batch 1",
                           "16.00x at batch 64",
                           "size ratio (teacher / student): 5.10x",
                           "accuracy gap (teacher - student): +1.50 points",
                           "distillation gain (distilled - scratch student): +0.50 points",
                           "data: IDX, 28x28 images, 10 classes; normalisation mean/std 0.1307/0.3081"})
    EXPECT_TRUE(contains(table, part)) << "'" << part << "' not in:\n" << table;

  // Every row of the aligned block is as wide as the others.
  const std::vector<std::string> lines = lines_of(table);
  const auto first_row =
      std::find_if(lines.begin(), lines.end(), [](const std::string& l) { return contains(l, "params"); });
  ASSERT_NE(first_row, lines.end());
  for (auto it = first_row; it != lines.end() && !it->empty(); ++it) EXPECT_EQ(it->size(), first_row->size()) << *it;
}

TEST(ReportTable, ImageFolderDataNamesItsClasses) {
  RunReport r = full_report();
  r.data_format = "image folder";
  r.input = "3x32x32";
  r.num_classes = 2;
  r.class_names = {"cat", "dog"};
  r.normalization = "0.5,0.4,0.3/0.2,0.2,0.2";
  const std::string table = report_table(r);
  EXPECT_TRUE(contains(table,
                       "data: image folder, 3x32x32 images, 2 classes (cat, dog); normalisation mean/std "
                       "0.5,0.4,0.3/0.2,0.2,0.2"))
      << table;
  EXPECT_EQ(json::parse(summary_json(r))["data"]["class_names"], json({"cat", "dog"}));
}

TEST(ReportTable, SelectedEpochsTheirRuleAndCappedBatches) {
  RunReport r = full_report();
  for (ModelReport& m : r.models) m.selection = "last", m.selected_epoch = 2, m.last_epoch_test_acc = m.test_acc;
  r.models[2].selection = "best";
  r.models[2].selected_epoch = 1;
  r.models[2].last_epoch_test_acc = 0.955;
  r.options.batch_size = 100000;
  r.batch_size_used = 55000;
  r.eval_batch_size_used = r.options.eval_batch_size;
  const std::string table = report_table(r);
  for (const char* part : {"selected epoch", "2 of 2 (last)", "1 of 2 (best)", "test accuracy, last epoch", "95.50 %",
                           "selected epoch: the best validation accuracy of every model",
                           "batch sizes capped at the data: --batch-size 100,000 -> 55,000"})
    EXPECT_TRUE(contains(table, part)) << "'" << part << "' not in:\n" << table;
  r.val_n = 0;
  EXPECT_TRUE(contains(report_table(r), "--val-size 0 leaves nothing to select on"));

  const auto summary = nlohmann::json::parse(summary_json(r));
  EXPECT_EQ(summary["models"][2]["selected_epoch"], 1);
  EXPECT_EQ(summary["models"][2]["selection"], "best");
  EXPECT_EQ(summary["models"][2]["last_epoch_test_acc"], 0.955);
  EXPECT_EQ(summary["batch_sizes_used"]["batch-size"], 55000);
  EXPECT_EQ(summary["config"]["select"], "best");
}

TEST(ReportTable, TeacherOnlyHasNoComparisons) {
  RunReport r = full_report();
  r.models.resize(1);
  const std::string table = report_table(r);
  EXPECT_TRUE(contains(table, "teacher"));
  EXPECT_TRUE(contains(table, "recipe seed: teacher 5 epochs; adam lr 0.001"));  // the resolved recipe, no students
  EXPECT_FALSE(contains(table, "student"));
  EXPECT_FALSE(contains(table, "speed-up"));
  EXPECT_FALSE(contains(table, "distillation gain"));
}

TEST(ReportTable, EvalReportShowsOnlyTestNumbers) {
  RunReport r = full_report();
  r.models.resize(1);
  r.models[0].curve.clear();
  r.models[0].latency.clear();
  r.models[0].train_seconds = 0;
  const std::string table = report_table(r);
  EXPECT_TRUE(contains(table, "99.00 %"));
  EXPECT_FALSE(contains(table, "training time"));
  EXPECT_FALSE(contains(table, "latency"));
}

// ONNX Runtime timings: rows per batch size with the ratio to kdtrain's, a speed-up verdict and one line
// naming the runtime; the JSON keeps them per model; a note stands in for
// models it could not time, and nothing appears when it was not asked.
TEST(ReportTable, OnnxRuntimeRowsVerdictAndNotes) {
  RunReport r = full_report();
  for (ModelReport& m : r.models) {
    m.ort.measured = true;
    m.ort.version = "1.23.2";
    const double base = m.role == Phase::Teacher ? 3.0 : 0.5;
    m.ort.latency = {latency(1, base), latency(1024, base * 100)};
  }
  r.models[2].ort = OrtLatency{};
  r.models[2].ort.note = "ONNX Runtime not installed (test)";
  const std::string table = report_table(r);
  for (const char* part : {"ONNX Runtime b=1 (ms, median)", "3.000", "ONNX Runtime b=1024 (ms, median)", "300.0",
                           "speed-up under ONNX Runtime: 6.00x at batch 1, 6.00x at batch 1024",
                           "ONNX Runtime / kdtrain b=1", "1.50x",  // teacher: ONNX Runtime 3 ms, kdtrain 2 ms
                           "ONNX Runtime 1.23.2 (CPU, its default threads)", "ONNX Runtime not installed (test)"})
    EXPECT_TRUE(contains(table, part)) << "'" << part << "' not in:\n" << table;

  const json j = json::parse(summary_json(r));
  EXPECT_EQ(j["models"][0]["onnxruntime"]["version"], "1.23.2");
  EXPECT_EQ(j["models"][0]["onnxruntime"]["latency"][1]["batch"], 1024);
  EXPECT_EQ(j["models"][0]["onnxruntime"]["latency"][1]["median_ms"], 300.0);
  EXPECT_EQ(j["models"][0]["onnxruntime"]["latency"][0]["vs_kdtrain"], 1.5);
  EXPECT_TRUE(j["models"][0]["onnxruntime"]["latency"][1]["vs_kdtrain"].is_null());  // kdtrain not timed at 1024
  EXPECT_EQ(j["models"][2]["onnxruntime"]["note"], "ONNX Runtime not installed (test)");
  EXPECT_NEAR(j["comparisons"]["student_vs_teacher"]["speedup_onnxruntime"][0]["speedup"].get<double>(), 6.0, 1e-12);

  const RunReport plain = full_report();  // not asked (--no-ort)
  EXPECT_FALSE(contains(report_table(plain), "ONNX Runtime"));
  EXPECT_TRUE(json::parse(summary_json(plain))["models"][0]["onnxruntime"].is_null());
}

TEST(ReportTable, NonFiniteShownAsNotAvailable) {
  RunReport r = full_report();
  r.models[1].test_acc = NAN;
  const std::string table = report_table(r);
  EXPECT_TRUE(contains(table, "n/a"));
  EXPECT_FALSE(contains(table, "nan"));
}

// ------------------------------------------------------------ files
class ReportFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "kd_report_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string read(const std::string& name) const {
    std::ifstream in(dir_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  void expect_no_temporaries() const {
    for (const auto& e : fs::directory_iterator(dir_))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  }
  // Runs f with PATH set to `path`, then restores it.
  template <class F>
  static void with_path(const std::string& path, F f) {
    const char* old = std::getenv("PATH");
    const std::string saved = old ? old : "";
    ASSERT_EQ(setenv("PATH", path.c_str(), 1), 0);
    f();
    setenv("PATH", saved.c_str(), 1);
  }
  bool is_png(const std::string& name) const {
    const std::string bytes = read(name);
    return bytes.size() > 1000 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
  }

  fs::path dir_;
};

TEST_F(ReportFiles, WritesCsvAndJsonAndDrawsPlots) {
  const RunReport r = full_report();
  const std::string note = write_report_files(r, dir_.string());
  EXPECT_EQ(read("metrics.csv"), metrics_csv(r));
  EXPECT_EQ(read("summary.json"), summary_json(r));
  expect_no_temporaries();

  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot not installed; " << note;
  EXPECT_EQ(note, "");
  EXPECT_TRUE(is_png("curves.png"));
  EXPECT_TRUE(is_png("latency.png"));
  EXPECT_TRUE(contains(read("latency.csv"), "student,64,0.25,"));
}

TEST_F(ReportFiles, FailingGnuplotGivesItsMessageAndLeavesNoPartialPictures) {
  // A stand-in gnuplot that complains and fails, first on PATH.
  fs::create_directory(dir_ / "bin");
  {
    std::ofstream(dir_ / "bin" / "gnuplot")
        << "#!/bin/sh\necho 'plot ...' >&2\necho '\"plots.gp\" line 9: boom' >&2\nexit 3\n";
  }
  fs::permissions(dir_ / "bin" / "gnuplot", fs::perms::owner_all);
  with_path((dir_ / "bin").string() + ":/usr/bin:/bin", [&] {
    const std::string note = write_report_files(full_report(), dir_.string());
    EXPECT_TRUE(contains(note, "gnuplot failed (exit 3)")) << note;
    EXPECT_TRUE(contains(note, "line 9: boom")) << note;
    EXPECT_TRUE(contains(note, (dir_ / "plots.gp").string())) << note;
  });
  EXPECT_FALSE(fs::exists(dir_ / "curves.png"));
  expect_no_temporaries();
}

TEST_F(ReportFiles, GnuplotThatWritesNothingIsReported) {
  fs::create_directory(dir_ / "bin");
  { std::ofstream(dir_ / "bin" / "gnuplot") << "#!/bin/sh\nexit 0\n"; }
  fs::permissions(dir_ / "bin" / "gnuplot", fs::perms::owner_all);
  with_path((dir_ / "bin").string() + ":/usr/bin:/bin", [&] {
    EXPECT_TRUE(contains(write_report_files(full_report(), dir_.string()), "gnuplot wrote no curves.png"));
  });
  expect_no_temporaries();
}

TEST_F(ReportFiles, NoPicturesWithoutCurvesOrLatencies) {
  RunReport r = full_report();
  for (ModelReport& m : r.models) {
    m.curve.clear();
    m.latency.clear();
  }
  EXPECT_EQ(write_report_files(r, dir_.string()), "");
  EXPECT_FALSE(fs::exists(dir_ / "curves.png"));
  EXPECT_FALSE(fs::exists(dir_ / "latency.png"));
  EXPECT_TRUE(fs::exists(dir_ / "summary.json"));
}

TEST_F(ReportFiles, MissingGnuplotOnlySkipsThePlots) {
  std::string note;
  with_path(dir_.string(), [&] { note = write_report_files(full_report(), dir_.string()); });  // no gnuplot there
  EXPECT_EQ(note, "plots skipped: gnuplot not found (apt-get install gnuplot-nox)");
  EXPECT_TRUE(fs::exists(dir_ / "metrics.csv"));
  EXPECT_TRUE(fs::exists(dir_ / "summary.json"));
  EXPECT_FALSE(fs::exists(dir_ / "curves.png"));
}

}  // namespace
}  // namespace kd
