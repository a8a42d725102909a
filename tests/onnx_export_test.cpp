// ONNX export and ONNX Runtime: the graph the exporter writes (read back with
// ONNX's own protobuf classes), its errors, and the round trip through ONNX
// Runtime (scripts/ort_run.js, onnxruntime-node) against kdtrain's CPU engine
// on the MNIST test images. The ONNX Runtime tests skip, saying why, when node
// or the package is missing (scripts/onnxruntime.sh installs it).
//
// Environment for the full acceptance check (CI uses subsets for speed):
//   KD_ORT_TEST_LIMIT=0       every one of the 10,000 test images for every model
//   KD_ORT_TEST_MODELS=DIR    DIR/teacher.safetensors and DIR/student.safetensors
//                             (a trained run) instead of freshly initialised ones
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error_test_util.h"
#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/data.h"
#include "kd/cpu_model.h"
#include "kd/model_io.h"
#include "kd/onnx_export.h"
#include "kd/onnx_runtime.h"
#include "kd/reference.h"
#include "kd/engine.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using test::error_of;
using test::expect_mentions;

// Padding and stride in both convolutions, and a 7x7 map pooled to 3x3 so the
// pool's floor rounding matters.
constexpr const char* kStridedArch =
    "conv:8:3:2:1,relu,conv:16:3:2:1,relu,maxpool:2,dropout:0.3,flatten,dense:32,relu,dense:10";

const Shape kMnistInput{1, 28, 28, false};

Arch mnist_arch(const std::string& text) { return parse_arch(text, kMnistInput, 10, "--arch"); }

std::vector<float> initial_params(const Arch& arch, uint64_t seed) {
  std::vector<float> p(size_t(arch.param_count));
  init_params(arch, seed, p.data());
  return p;
}

onnx::ModelProto parse_model(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::vector<std::string> op_types(const onnx::ModelProto& m) {
  std::vector<std::string> ops;
  for (const onnx::NodeProto& n : m.graph().node()) ops.push_back(n.op_type());
  return ops;
}

std::map<std::string, std::string> metadata_of(const onnx::ModelProto& m) {
  std::map<std::string, std::string> props;
  for (const onnx::StringStringEntryProto& e : m.metadata_props()) props[e.key()] = e.value();
  return props;
}

const onnx::TensorProto* initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const onnx::TensorProto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

// (dim_param or dim_value as text) of a graph input/output.
std::vector<std::string> dims_of(const onnx::ValueInfoProto& v) {
  std::vector<std::string> dims;
  for (const onnx::TensorShapeProto_Dimension& d : v.type().tensor_type().shape().dim())
    dims.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  return dims;
}

std::map<std::string, std::vector<int64_t>> int_attributes(const onnx::NodeProto& n) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const onnx::AttributeProto& a : n.attribute())
    out[a.name()] = a.type() == onnx::AttributeProto_AttributeType_INTS
                        ? std::vector<int64_t>(a.ints().begin(), a.ints().end())
                        : std::vector<int64_t>{a.i()};
  return out;
}

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kd_onnx_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// ---------------------------------------------------------------- the graph

TEST(OnnxExport, TeacherIsOpset13WithNormalisationFoldedInAndNoDropout) {
  const Arch arch = mnist_arch(kDefaultTeacherArch);
  const std::vector<float> params = initial_params(arch, 1);
  const onnx::ModelProto m = parse_model(onnx_model_bytes(arch, params, Normalization{}, {{"role", "teacher"}}));

  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).domain(), "");
  EXPECT_EQ(m.opset_import(0).version(), 13);
  EXPECT_EQ(m.producer_name(), "kdtrain");
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Div", "Sub", "Div", "Conv", "Relu", "Conv", "Relu", "MaxPool",
                                                   "Flatten", "Gemm", "Relu", "Gemm"}));
  ASSERT_EQ(m.graph().input_size(), 1);
  EXPECT_EQ(m.graph().input(0).name(), "pixels");
  EXPECT_EQ(dims_of(m.graph().input(0)), (std::vector<std::string>{"N", "1", "28", "28"}));
  ASSERT_EQ(m.graph().output_size(), 1);
  EXPECT_EQ(m.graph().output(0).name(), "logits");
  EXPECT_EQ(dims_of(m.graph().output(0)), (std::vector<std::string>{"N", "10"}));
  EXPECT_EQ(m.graph().node(m.graph().node_size() - 1).output(0), "logits");

  // Every parameter tensor under its state_dict name and shape, bytes unchanged.
  for (const ParamTensor& p : param_tensors(arch)) {
    SCOPED_TRACE(p.name);
    const onnx::TensorProto* t = initializer(m, p.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(std::vector<int64_t>(t->dims().begin(), t->dims().end()), p.shape);
    ASSERT_EQ(t->raw_data().size(), size_t(p.count) * sizeof(float));
    EXPECT_EQ(std::memcmp(t->raw_data().data(), params.data() + p.offset, t->raw_data().size()), 0);
  }

  const std::map<std::string, std::string> meta = metadata_of(m);
  EXPECT_EQ(meta.at("role"), "teacher");
  EXPECT_EQ(meta.at("arch"), arch.text);
  EXPECT_EQ(meta.at("input"), "1x28x28");
  EXPECT_EQ(meta.at("classes"), "10");
  EXPECT_EQ(meta.at("normalisation"),
            "folded into the graph: x = (pixels / 255 - mean[c]) / std[c], mean/std = 0.1307/0.3081");
  EXPECT_NE(meta.at("input_format").find("0..255"), std::string::npos);
}

// Colour: the input is (N, 3, H, W) and the mean and std are per channel,
// shaped (1, 3, 1, 1) to broadcast; a normalisation for other channels is refused.
TEST(OnnxExport, ColourInputHasPerChannelNormalisation) {
  const Arch arch = parse_arch("conv:4:3,relu,flatten,dense:5", Shape{3, 8, 6, false}, 5, "--arch");
  const Normalization norm{3, {0.4f, 0.5f, 0.6f}, {0.2f, 0.25f, 0.3f}};
  const onnx::ModelProto m = parse_model(onnx_model_bytes(arch, initial_params(arch, 4), norm, {}));
  EXPECT_EQ(dims_of(m.graph().input(0)), (std::vector<std::string>{"N", "3", "8", "6"}));
  for (const auto& [name, values] : {std::pair{"normalise.mean", norm.mean}, {"normalise.std", norm.std}}) {
    const onnx::TensorProto* t = initializer(m, name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(std::vector<int64_t>(t->dims().begin(), t->dims().end()), (std::vector<int64_t>{1, 3, 1, 1})) << name;
    ASSERT_EQ(t->raw_data().size(), 3 * sizeof(float)) << name;
    EXPECT_EQ(std::memcmp(t->raw_data().data(), values, 3 * sizeof(float)), 0) << name;
  }
  Normalization two = norm;
  two.c = 2;
  const std::string msg = error_of([&] { onnx_model_bytes(arch, initial_params(arch, 4), two, {}); });
  EXPECT_NE(msg.find("the normalisation has 2 channels, the model takes 3"), std::string::npos) << msg;
}

TEST(OnnxExport, StrideAndPaddingBecomeConvAttributesAndFlattenKeepsCHWOrder) {
  const Arch arch = mnist_arch(kStridedArch);
  const onnx::ModelProto m = parse_model(onnx_model_bytes(arch, initial_params(arch, 2), Normalization{}, {}));
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Div", "Sub", "Div", "Conv", "Relu", "Conv", "Relu", "MaxPool",
                                                   "Flatten", "Gemm", "Relu", "Gemm"}));
  const auto conv = int_attributes(m.graph().node(3));
  EXPECT_EQ(conv.at("kernel_shape"), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(conv.at("strides"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(conv.at("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  const auto pool = int_attributes(m.graph().node(7));
  EXPECT_EQ(pool.at("kernel_shape"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(pool.at("strides"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(pool.count("ceil_mode"), 0u) << "floor, as kdtrain and PyTorch pool";
  EXPECT_EQ(int_attributes(m.graph().node(8)).at("axis"), (std::vector<int64_t>{1}));
  EXPECT_EQ(int_attributes(m.graph().node(9)).at("transB"), (std::vector<int64_t>{1}));
  EXPECT_EQ(initializer(m, "fc1.weight")->dims(1), 16 * 3 * 3);
}

TEST(OnnxExport, StudentStartsWithFlattenOnTheImage) {
  const Arch arch = mnist_arch(kDefaultStudentArch);
  const onnx::ModelProto m = parse_model(onnx_model_bytes(arch, initial_params(arch, 3), Normalization{}, {}));
  EXPECT_EQ(op_types(m),
            (std::vector<std::string>{"Div", "Sub", "Div", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"}));
  EXPECT_EQ(dims_of(m.graph().input(0)), (std::vector<std::string>{"N", "1", "28", "28"}));
}

TEST(OnnxExport, RejectsParametersOfAnotherSize) {
  const Arch arch = mnist_arch(kDefaultStudentArch);
  const std::string msg = error_of([&] { onnx_model_bytes(arch, std::vector<float>(10), Normalization{}, {}); });
  expect_mentions(msg, {"10 parameters", "235146"});
}

// ---------------------------------------------------------------- kdtrain export

class OnnxExportCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_dir("command");
    const Arch arch = mnist_arch(kDefaultStudentArch);
    model_ = dir_ + "/student.safetensors";
    save_model_file(model_, arch, initial_params(arch, 4), {{"role", "student"}});
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_, model_;
};

TEST_F(OnnxExportCommand, WritesTheModelWithItsFileMetadataAndNoTemporaryLeft) {
  export_model_file(model_, dir_ + "/student.onnx", /*quiet=*/true);
  std::ifstream in(dir_ + "/student.onnx", std::ios::binary);
  const onnx::ModelProto m = parse_model(std::string(std::istreambuf_iterator<char>(in), {}));
  EXPECT_EQ(metadata_of(m).at("role"), "student");
  EXPECT_EQ(metadata_of(m).at("format"), "kdtrain");
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 2) << "the model and the .onnx, no temporary";
}

TEST_F(OnnxExportCommand, BadPathsAreOneLineErrorsNamingTheFlagAndPath) {
  expect_mentions(error_of([&] { export_model_file(model_, dir_ + "/no/such/dir/m.onnx", true); }),
                  {"--onnx", dir_ + "/no/such/dir/m.onnx", "does not exist"});
  expect_mentions(error_of([&] { export_model_file(model_, dir_, true); }), {"--onnx", dir_, "is a directory"});
  // /proc takes no new files, even for root.
  expect_mentions(error_of([&] { export_model_file(model_, "/proc/kd_model.onnx", true); }),
                  {"--onnx", "/proc/kd_model.onnx"});
  expect_mentions(error_of([&] { export_model_file(dir_ + "/missing.safetensors", dir_ + "/m.onnx", true); }),
                  {dir_ + "/missing.safetensors"});
  EXPECT_FALSE(fs::exists(dir_ + "/m.onnx"));
}

// ---------------------------------------------------------------- ONNX Runtime

// Why ONNX Runtime cannot run here, or "" when it can.
std::string ort_missing() {
  std::string why;
  ort_version(why);
  return why;
}

// Sets an environment variable for one scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// Hides the in-process library, so ONNX Runtime can only come through node.
struct HideInProcessOrt {
  ScopedEnv lib{"KD_ORT_LIB", "/nonexistent/libonnxruntime.so.1"};
};

TEST(OnnxRuntime, MissingLibraryAndRunnerOrNodeIsANoteNamingBoth) {
  const Arch arch = mnist_arch("flatten,dense:10");
  const std::vector<float> params = initial_params(arch, 5);
  const HideInProcessOrt hide;
  {
    ScopedEnv runner("KD_ORT_RUNNER", "/nonexistent/ort_run.js");
    const OrtLatency ort = ort_latency(arch, params);
    EXPECT_FALSE(ort.measured);
    expect_mentions(ort.note, {"ONNX Runtime not installed", "/nonexistent/libonnxruntime.so.1", "KD_ORT_LIB",
                               "scripts/onnxruntime.sh", "/nonexistent/ort_run.js", "KD_ORT_RUNNER"});
  }
  {
    ScopedEnv path("PATH", "/nonexistent");
    const OrtLatency ort = ort_latency(arch, params);
    EXPECT_FALSE(ort.measured);
    expect_mentions(ort.note, {"ONNX Runtime not installed", "KD_ORT_LIB", "node not found"});
    const std::string text = latency_side_by_side_text({latency_stats(1, {0.5})}, ort);
    EXPECT_EQ(text.substr(text.size() - ort.note.size() - 1), ort.note + "\n") << text;
  }
}

// In this process when the library loads; each batch size timed by kdtrain's rule.
TEST(OnnxRuntime, LatencyTimesEveryBatchSizeAskedInProcess) {
  if (const std::string why = ort_missing(); !why.empty()) GTEST_SKIP() << why;
  const Arch arch = mnist_arch(kDefaultStudentArch);
  OrtLatencyOptions options;
  options.batches = {1, 8, 20};
  options.max_repeats = 3;
  options.slice = 8;                      // 20 runs as 8 + 8 + 4
  options.input.assign(5 * 784, 128.0f);  // 5 images, repeated to fill each batch
  options.threads = 1;
  const OrtLatency ort = ort_latency(arch, initial_params(arch, 6), options);
  ASSERT_TRUE(ort.measured) << ort.note;
  EXPECT_EQ(ort.via, "in-process");
  EXPECT_EQ(ort.threads, 1);
  EXPECT_FALSE(ort.version.empty());
  ASSERT_EQ(ort.latency.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ort.latency[i].batch, options.batches[i]);
    EXPECT_EQ(ort.latency[i].repeats, 3);
    EXPECT_GT(ort.latency[i].median_ms, 0);
    EXPECT_GE(ort.latency[i].p90_ms, ort.latency[i].median_ms);
  }
  expect_mentions(ort_description(ort), {"ONNX Runtime " + ort.version, "1 thread)", "in this process"});
}

// The node runner still serves when the library cannot be loaded here.
TEST(OnnxRuntime, NodeIsTheFallback) {
  const HideInProcessOrt hide;
  if (const std::string why = ort_missing(); !why.empty()) GTEST_SKIP() << why;
  const Arch arch = mnist_arch(kDefaultStudentArch);
  OrtLatencyOptions options;
  options.batches = {1};
  options.max_repeats = 3;
  options.budget_ms = 0;  // stop at the minimum, min(5, max_repeats) = 3 runs
  const OrtLatency ort = ort_latency(arch, initial_params(arch, 6), options);
  ASSERT_TRUE(ort.measured) << ort.note;
  EXPECT_EQ(ort.via, "node");
  ASSERT_EQ(ort.latency.size(), 1u);
  EXPECT_EQ(ort.latency[0].repeats, 3);
  EXPECT_NE(ort_description(ort).find("from node (fallback)"), std::string::npos);
}

// One row per kdtrain batch: both medians and p90s, and ONNX Runtime / kdtrain.
TEST(OnnxRuntime, SideBySideTextPutsTheRatioBesideBothTimings) {
  OrtLatency ort;
  ort.measured = true;
  ort.version = "1.2.3";
  ort.threads = 2;
  ort.via = "in-process";
  ort.latency = {latency_stats(1, {0.3}), latency_stats(64, {2.0})};
  const std::string text =
      latency_side_by_side_text({latency_stats(1, {0.1}), latency_stats(64, {4.0}), latency_stats(1024, {9.0})}, ort);
  std::istringstream lines(text);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 5u) << text;
  expect_mentions(rows[0], {"kdtrain ms", "ORT ms", "ORT / kdtrain"});
  expect_mentions(rows[1], {"0.1000", "0.3000", "3.00x"});
  expect_mentions(rows[2], {"4.0000", "2.0000", "0.50x"});
  expect_mentions(rows[3], {"1024", "9.0000", "-"});
  EXPECT_EQ(rows[4],
            "ONNX Runtime 1.2.3 (CPU, 2 threads): the exported ONNX model, forward only, timed in this "
            "process through its C API");
}

// kdtrain's CPU engine's logits for the first n test images: the same gather,
// normalisation and forward as CpuEngine's evaluate (kd::ref ops). (n, classes)
std::vector<float> kdtrain_logits(const Arch& arch, const std::vector<float>& params, const Dataset& test, int64_t n) {
  const int batch = 500;
  CpuModel model(arch, batch);
  model.params() = params;
  const int classes = int(arch.output.size());
  std::vector<float> out(size_t(n) * classes), x(size_t(batch) * arch.input.size());
  std::vector<int32_t> idx(batch);
  for (int64_t begin = 0; begin < n; begin += batch) {
    const int b = int(std::min<int64_t>(batch, n - begin));
    for (int i = 0; i < b; ++i) idx[i] = int32_t(begin + i);
    ref::gather_normalize(test.images.data(), idx.data(), x.data(), b, test.pixels(), Normalization{});
    const float* logits = model.forward(x.data(), b, /*training=*/false, 0, 0);
    std::copy_n(logits, size_t(b) * classes, out.begin() + begin * classes);
  }
  return out;
}

int argmax(const float* row, int n) { return int(std::max_element(row, row + n) - row); }

struct RoundTripCase {
  std::string name;  // "teacher", "student" (KD_ORT_TEST_MODELS files) or "strided"
  std::string arch;
  int64_t ci_images;  // test images checked in CI (the reference CPU teacher is slow)
};

void PrintTo(const RoundTripCase& c, std::ostream* os) { *os << c.name << " '" << c.arch << "'"; }

class OnnxRuntimeRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

// Exported model under ONNX Runtime vs kdtrain's CPU engine: the same
// prediction for every image and logits within 1e-4 (the bound).
// Both sides compute in fp32 from the same weights; they differ only in
// summation order (kdtrain's reference accumulates in double, ONNX Runtime's
// MLAS kernels in fp32 blocks) and in the normalisation's rounding (one
// rounding from double vs three fp32 operations, <= 3 ulp of |x| <= 2.9).
// For the longest dot product (9216 terms in the teacher's fc1) the fp32
// error is about sqrt(9216) * 6e-8 * sum|w x| ~ 1e-5 relative to a logit of
// size ~1, so 1e-4 is a bound a wrong graph (flatten order, padding, pool
// rounding, a missing bias) cannot meet: those change logits by ~1e-2 or more.
TEST_P(OnnxRuntimeRoundTrip, SamePredictionsAndLogitsWithin1e4) {
  if (const std::string why = ort_missing(); !why.empty()) GTEST_SKIP() << why;
  const RoundTripCase& c = GetParam();
  const std::string images = std::string(KD_SOURCE_DIR) + "/data/mnist/t10k-images-idx3-ubyte";
  ASSERT_TRUE(fs::exists(images)) << images << " missing: run scripts/setup.sh (or data/fetch.sh)";
  const Dataset test = parse_idx_images(read_file_maybe_gzip(images), images);

  Arch arch = mnist_arch(c.arch);
  std::vector<float> params;
  const char* trained = std::getenv("KD_ORT_TEST_MODELS");
  if (trained && c.name != "strided") {
    ModelFile f = load_model_file(std::string(trained) + "/" + c.name + ".safetensors");
    arch = f.arch;
    params = f.params;
  } else {
    params = initial_params(arch, 7);
  }
  const char* limit_env = std::getenv("KD_ORT_TEST_LIMIT");
  int64_t n = limit_env ? std::atoll(limit_env) : c.ci_images;
  if (n <= 0 || n > test.n) n = test.n;

  const std::string dir = fresh_dir("roundtrip_" + c.name);
  const std::string onnx_path = dir + "/" + c.name + ".onnx";
  export_onnx(onnx_path, arch, params, Normalization{}, {});
  const std::vector<float> ort = ort_infer_images(onnx_path, images, n, 10);
  fs::remove_all(dir);
  ASSERT_EQ(ort.size(), size_t(n) * 10);
  const std::vector<float> ref = kdtrain_logits(arch, params, test, n);

  double max_diff = 0, max_logit = 0;
  int64_t same_prediction = 0;
  for (int64_t i = 0; i < n; ++i) {
    same_prediction += argmax(&ort[size_t(i) * 10], 10) == argmax(&ref[size_t(i) * 10], 10);
    for (int k = 0; k < 10; ++k) {
      max_diff = std::max(max_diff, double(std::fabs(ort[size_t(i) * 10 + k] - ref[size_t(i) * 10 + k])));
      max_logit = std::max(max_logit, double(std::fabs(ref[size_t(i) * 10 + k])));
    }
  }
  std::printf("%s (%s): %lld images, same prediction for %lld, max |logit difference| %.3g (max |logit| %.3g)\n",
              c.name.c_str(), trained && c.name != "strided" ? trained : "initialised", (long long)n,
              (long long)same_prediction, max_diff, max_logit);
  EXPECT_EQ(same_prediction, n);
  EXPECT_LE(max_diff, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Models, OnnxRuntimeRoundTrip,
                         ::testing::Values(RoundTripCase{"teacher", kDefaultTeacherArch, 200},
                                           RoundTripCase{"student", kDefaultStudentArch, 2000},
                                           RoundTripCase{"strided", kStridedArch, 2000}),
                         [](const ::testing::TestParamInfo<RoundTripCase>& info) { return info.param.name; });

// ---------------------------------------------------------------- the report

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A tiny run: summary.json and the table carry each model's ONNX Runtime
// latency at batch 1 and 1024 when it is installed, and its absence as a note
// that does not stop the run.
TEST(OnnxRuntimeReport, RunReportsOrtLatencyOrSaysItIsNotInstalled) {
  const std::string data = std::string(KD_SOURCE_DIR) + "/data/mnist";
  ASSERT_TRUE(fs::exists(data + "/train-images-idx3-ubyte")) << data << ": run scripts/setup.sh first";
  const std::string why = ort_missing();
  for (const bool installed : {true, false}) {
    if (installed && !why.empty()) continue;
    SCOPED_TRACE(installed ? "installed" : "not installed");
    std::unique_ptr<ScopedEnv> hide;
    std::unique_ptr<HideInProcessOrt> hide_lib;
    if (!installed) hide = std::make_unique<ScopedEnv>("KD_ORT_RUNNER", "/nonexistent/ort_run.js");
    if (!installed) hide_lib = std::make_unique<HideInProcessOrt>();
    Options o;
    o.data_dir = data;
    o.device = DeviceChoice::Cpu;
    o.out_dir = fresh_dir(installed ? "report" : "report_missing");
    o.train_limit = 200;
    o.val_size = 100;
    o.test_limit = 100;
    o.epochs_teacher = 1;
    o.epochs_student = 1;
    o.teacher_arch = "flatten,dense:16,relu,dense:10";
    o.student_arch = "flatten,dense:8,relu,dense:10";
    o.no_baseline = true;
    o.quiet = true;
    o.latency_batches = {1};
    auto engine = make_cpu_engine();
    ASSERT_EQ(run_command(o, *engine), 0);
    const nlohmann::json j = nlohmann::json::parse(read_text(o.out_dir + "/summary.json"));
    ASSERT_EQ(j["models"].size(), 2u);
    for (const nlohmann::json& m : j["models"]) {
      const nlohmann::json& ort = m["onnxruntime"];
      if (installed) {  // the batch sizes kdtrain timed, side by side
        ASSERT_EQ(ort["latency"].size(), 1u) << ort;
        EXPECT_EQ(ort["latency"][0]["batch"], 1);
        EXPECT_GT(ort["latency"][0]["median_ms"].get<double>(), 0);
        EXPECT_GT(ort["latency"][0]["vs_kdtrain"].get<double>(), 0);
        EXPECT_EQ(ort["threads"], 1);  // the reference engine runs on one thread, and so does ONNX Runtime beside it
      } else {
        EXPECT_EQ(ort["note"].get<std::string>().rfind("ONNX Runtime not installed", 0), 0u) << ort;
      }
    }
    if (installed) {
      EXPECT_EQ(j["comparisons"]["student_vs_teacher"]["speedup_onnxruntime"].size(), 1u);
    }
    fs::remove_all(o.out_dir);
  }
}

}  // namespace
}  // namespace kd
