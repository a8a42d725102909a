// A colour data set through the whole pipeline: coloured shapes drawn here
// (3x32x32, four classes), written as .npy files and as an image folder, then
// trained end to end. The two formats must give the same metrics to the last
// digit, since they hold the same pixels and labels; the normalisation comes
// from the training split and travels with the model into its ONNX export.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/model_io.h"
#include "kd/npy.h"
#include "kd/onnx_export.h"
#include "kd/onnx_runtime.h"
#include "kd/params.h"
#include "kd/safetensors.h"
#include "run_test_util.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// Sorted byte-wise, as torchvision and kdtrain order class folders, so the
// folder names give the labels 0..3 in this order.
const char* const kShapes[] = {"0_square", "1_disc", "2_bar", "3_cross"};
constexpr int kClasses = 4, kSize = 32;

// n images (n, 3, 32, 32): image i is shape i % 4 in a random saturated colour
// at a random place and scale, on a dim noisy background. A 64-bit LCG keeps it
// the same on every machine.
Dataset coloured_shapes(int64_t n, uint64_t seed) {
  Dataset d;
  d.n = n, d.c = 3, d.h = d.w = kSize, d.num_classes = kClasses;
  d.images.resize(size_t(n * d.values_per_image()));
  d.labels.resize(size_t(n));
  uint64_t state = seed;
  const auto next = [&](int range) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return int((state >> 33) % uint64_t(range));
  };
  for (int64_t i = 0; i < n; ++i) {
    const int label = int(i % kClasses);
    d.labels[size_t(i)] = uint8_t(label);
    const int r = 5 + next(6), cy = r + 1 + next(kSize - 2 * r - 2), cx = r + 1 + next(kSize - 2 * r - 2);
    uint8_t colour[3];
    for (uint8_t& v : colour) v = uint8_t(next(2) ? 160 + next(96) : next(60));
    uint8_t* img = d.images.data() + i * d.values_per_image();
    for (int y = 0; y < kSize; ++y)
      for (int x = 0; x < kSize; ++x) {
        const int dy = y - cy, dx = x - cx, ay = dy < 0 ? -dy : dy, ax = dx < 0 ? -dx : dx;
        const bool inside = label == 0   ? ay <= r && ax <= r
                            : label == 1 ? dy * dy + dx * dx <= r * r
                            : label == 2 ? ay <= 1 && ax <= r
                                         : (ay <= 1 && ax <= r) || (ax <= 1 && ay <= r);
        for (int ch = 0; ch < 3; ++ch) img[(ch * kSize + y) * kSize + x] = inside ? colour[ch] : uint8_t(next(40));
      }
  }
  return d;
}

// The same images as <dir>/<split>/<class>/<index>.png.
void write_image_folder(const std::string& dir, const std::string& split, const Dataset& d) {
  std::vector<uint8_t> hwc(size_t(d.values_per_image()));
  for (int64_t i = 0; i < d.n; ++i) {
    const uint8_t* chw = d.images.data() + i * d.values_per_image();
    for (int64_t p = 0; p < d.pixels(); ++p)
      for (int ch = 0; ch < d.c; ++ch) hwc[size_t(p * d.c + ch)] = chw[ch * d.pixels() + p];
    const fs::path folder = fs::path(dir) / split / kShapes[d.labels[size_t(i)]];
    fs::create_directories(folder);
    char name[32];
    std::snprintf(name, sizeof name, "%05lld.png", static_cast<long long>(i));
    ASSERT_NE(stbi_write_png((folder / name).c_str(), d.w, d.h, d.c, hwc.data(), d.w * d.c), 0) << folder / name;
  }
}

// A teacher saved by PyTorch, safetensors.torch.save_file(model.state_dict(), F):
// state_dict names, no kdtrain metadata. Written by hand here: the parameters
// of a kdtrain-initialised teacher under their PyTorch names.
constexpr const char* kTorchTeacher = "conv:8:3,relu,maxpool:2,flatten,dense:4";

void write_state_dict(const std::string& path, const Arch& arch, const std::vector<float>& params) {
  SafeTensors st;  // no __metadata__ at all, as save_file without metadata= writes
  for (const ParamTensor& p : param_tensors(arch))
    st.tensors.push_back(TensorData::from_f32(p.name, p.shape, params.data() + p.offset));
  save_safetensors(path, st);
}

using test::metrics_without_timings;
using test::read_text;

class ColourData : public ::testing::Test {
 protected:
  // 500 training images (the last 100 validate) and 200 test images, both formats.
  static void SetUpTestSuite() {
    root_ = (fs::path(::testing::TempDir()) / ("kd_colour_" + std::to_string(getpid()))).string();
    fs::remove_all(root_);
    TrainTest data;
    // Labels 0, 1, 2, 3 repeating, as kdtrain deals an image folder's training
    // images out by class: both formats hold the same sequence of images.
    data.train = coloured_shapes(500, 1);
    data.test = coloured_shapes(200, 2);
    fs::create_directories(root_ + "/npy");
    save_npy_dir(root_ + "/npy", data);
    write_image_folder(root_ + "/folder", "train", data.train);
    write_image_folder(root_ + "/folder", "test", data.test);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  // A short run on `data` (a sub-folder of root_) written to <root_>/<out>.
  static Options run_on(const std::string& data, const std::string& out, DeviceChoice device) {
    Options o;
    o.data_dir = root_ + "/" + data;
    o.out_dir = root_ + "/" + out;
    o.device = device;
    o.seed = 7;
    o.val_size = 100;
    o.epochs_teacher = 2;
    o.epochs_student = 2;
    o.batch_size = 32;
    o.no_baseline = true;  // the scratch student adds cost, and nothing a format could change
    // The default teacher (kd/arch.h adapt_default_arch) costs ~15 M
    // multiply-adds per 3x32x32 image; this one keeps the layer kinds at ~1/20.
    o.teacher_arch = "conv:8:3,relu,maxpool:2,dropout:0.1,flatten,dense:32,relu,dense:4";
    o.student_arch = "flatten,dense:32,relu,dense:4";
    o.latency_batches = {1};
    o.no_ort = true;
    o.quiet = true;
    return o;
  }
  // distill --teacher `teacher` --teacher-arch kTorchTeacher, one student epoch.
  static Options distill_from(const std::string& teacher, const std::string& out) {
    Options o = run_on("npy", out, DeviceChoice::Cpu);
    o.command = Command::Distill;
    o.teacher_path = teacher;
    o.teacher_arch = kTorchTeacher;
    o.epochs_student = 1;
    return o;
  }
  static nlohmann::json summary(const Options& o) {
    return nlohmann::json::parse(read_text(o.out_dir + "/summary.json"));
  }

  static std::string root_;
};
std::string ColourData::root_;

TEST_F(ColourData, NpyAndImageFolderGiveIdenticalResultsAndLearn) {
  const Options npy = run_on("npy", "out_npy", DeviceChoice::Cpu);
  const Options folder = run_on("folder", "out_folder", DeviceChoice::Cpu);
  for (const Options& o : {npy, folder}) {
    auto engine = make_fast_cpu_engine(2);
    ASSERT_EQ(run_command(o, *engine), 0) << o.data_dir;
  }
  EXPECT_EQ(metrics_without_timings(read_text(npy.out_dir + "/metrics.csv")),
            metrics_without_timings(read_text(folder.out_dir + "/metrics.csv")));
  const auto a = summary(npy), b = summary(folder);
  EXPECT_EQ(a["data"]["classes"], kClasses);
  ASSERT_EQ(a["models"].size(), 2u);
  for (size_t m = 0; m < a["models"].size(); ++m) {
    EXPECT_EQ(a["models"][m]["test_errors"], b["models"][m]["test_errors"]) << a["models"][m]["role"];
    // Chance is 25 %.
    EXPECT_GE(a["models"][m]["test_acc"].get<double>(), 0.35) << a["models"][m]["role"];
  }
}

// The normalisation is the training split's (the first 400 images, not the
// 100 validation images), saved with the model; the exported ONNX model folds
// it in and, under ONNX Runtime on the raw test pixels, makes as many errors
// as kdtrain's test evaluation of the same model did.
TEST_F(ColourData, TrainingSplitNormalisationIsSavedAndTheOnnxModelAgrees) {
  const Options o = run_on("npy", "out_onnx", DeviceChoice::Cpu);
  {
    auto engine = make_fast_cpu_engine(2);
    ASSERT_EQ(run_command(o, *engine), 0);
  }
  const TrainTest data = load_dataset_dir(o.data_dir, {});
  const std::string expected = normalization_text(normalization_of(data.train.slice(0, 400)));
  EXPECT_NE(expected, normalization_text(normalization_of(data.train))) << "the validation images must not count";
  const ModelFile student = load_model_file(o.out_dir + "/student.safetensors");
  EXPECT_EQ(student.metadata.at(kNormalizeKey), expected);
  EXPECT_EQ(summary(o)["data"]["normalize"], expected);

  if (const std::string why =
          [] {
            std::string w;
            ort_version(w);
            return w;
          }();
      !why.empty())
    GTEST_SKIP() << why;
  const std::string onnx = o.out_dir + "/student.onnx";
  export_model_file(o.out_dir + "/student.safetensors", onnx, /*quiet=*/true);
  const std::vector<float> logits = ort_infer_images(onnx, o.data_dir + "/test_images.npy", 0, kClasses);
  ASSERT_EQ(logits.size(), size_t(data.test.n) * kClasses);
  int64_t errors = 0;
  for (int64_t i = 0; i < data.test.n; ++i) {
    const float* row = &logits[size_t(i) * kClasses];
    errors += std::max_element(row, row + kClasses) - row != data.test.labels[size_t(i)];
  }
  const nlohmann::json models = summary(o)["models"];
  EXPECT_EQ(errors, models[1]["test_errors"].get<int64_t>()) << models[1]["role"];
}

// A saved model runs with its own normalisation: distilling from a teacher
// with a different --normalize is refused before anything is written.
TEST_F(ColourData, DistillRefusesANormalisationOtherThanTheTeachers) {
  Options teach = run_on("npy", "out_teach", DeviceChoice::Cpu);
  teach.command = Command::TrainTeacher;
  teach.epochs_teacher = 1;
  {
    auto engine = make_fast_cpu_engine(2);
    ASSERT_EQ(run_command(teach, *engine), 0);
  }
  Options distill = run_on("npy", "out_refused", DeviceChoice::Cpu);
  distill.command = Command::Distill;
  distill.teacher_path = teach.out_dir + "/teacher.safetensors";
  distill.normalize = "0.5,0.5,0.5/0.25,0.25,0.25";
  auto engine = make_fast_cpu_engine(2);
  try {
    run_command(distill, *engine);
    FAIL() << "expected the --normalize refusal";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--normalize: " + distill.teacher_path + " was trained with mean/std"), std::string::npos)
        << msg;
  }
  EXPECT_FALSE(fs::exists(distill.out_dir)) << "nothing is written on a refusal";
}

TEST_F(ColourData, TeacherWithoutKdtrainMetadataDistillsWithTeacherArch) {
  const Shape input{3, kSize, kSize, false};
  const Arch arch = parse_arch(kTorchTeacher, input, kClasses, "--teacher-arch");
  std::vector<float> params(size_t(arch.param_count));
  init_params(arch, 5, params.data());
  const std::string file = root_ + "/torch_teacher.safetensors";
  write_state_dict(file, arch, params);

  Options o = distill_from(file, "out_torch");
  {
    auto engine = make_fast_cpu_engine(2);
    ASSERT_EQ(run_command(o, *engine), 0);
  }
  ASSERT_EQ(summary(o)["models"].size(), 2u);
  EXPECT_EQ(summary(o)["models"][0]["arch"], kTorchTeacher);
  // No saved normalisation: the training split's, as for a teacher trained here.
  EXPECT_EQ(load_model_file(o.out_dir + "/student.safetensors").metadata.at(kNormalizeKey),
            summary(o)["data"]["normalize"]);

  // The wrong architecture: the error names the file, the arch and the first tensor that does not fit.
  o.teacher_arch = "conv:16:3,relu,maxpool:2,flatten,dense:4";
  o.out_dir = root_ + "/out_torch_bad";
  auto engine = make_fast_cpu_engine(2);
  try {
    run_command(o, *engine);
    FAIL() << "expected a shape mismatch";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file + " (no kdtrain metadata, read as 'conv:16:3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tensor 'conv1.weight' has shape [8,3,3,3], the arch needs [16,3,3,3]"), std::string::npos)
        << msg;
  }
}

// The same with a teacher trained and saved by PyTorch itself, where a
// python3 has torch (CI installs none: it skips). The state dict is written
// with safetensors.torch.save_file when that package exists, else in the same
// format by hand (an 8-byte little-endian header size, the JSON header of
// dtype, shape and byte offsets, the raw tensors), as the package writes it.
TEST_F(ColourData, TeacherTrainedByPytorchDistills) {
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"})
    if (python.empty() && std::system((std::string(candidate) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0)
      python = candidate;
  if (python.empty()) GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  const std::string file = root_ + "/pytorch_teacher.safetensors";
  // kTorchTeacher as an nn.Module with kdtrain's parameter names, two epochs on the .npy data.
  const std::string script =
      "import sys, json, struct, numpy as np, torch, torch.nn as nn\n"
      "d = sys.argv[1]\n"
      "x = torch.tensor(np.load(d + '/train_images.npy')[:400], dtype=torch.float32) / 255\n"
      "y = torch.tensor(np.load(d + '/train_labels.npy')[:400], dtype=torch.long)\n"
      "x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), unbiased=False, keepdim=True)\n"
      "class Net(nn.Module):\n"
      "    def __init__(s):\n"
      "        super().__init__(); s.conv1 = nn.Conv2d(3, 8, 3); s.fc1 = nn.Linear(8 * 15 * 15, 4)\n"
      "    def forward(s, x):\n"
      "        return s.fc1(torch.flatten(nn.functional.max_pool2d(torch.relu(s.conv1(x)), 2), 1))\n"
      "torch.manual_seed(0); m = Net(); opt = torch.optim.Adam(m.parameters(), 1e-3)\n"
      "for epoch in range(2):\n"
      "    for i in range(0, 400, 32):\n"
      "        opt.zero_grad(); nn.functional.cross_entropy(m(x[i:i + 32]), y[i:i + 32]).backward(); opt.step()\n"
      "try:\n"
      "    import safetensors.torch\n"
      "    safetensors.torch.save_file(m.state_dict(), sys.argv[2])\n"
      "except ImportError:\n"
      "    header, blobs, at = {}, [], 0\n"
      "    for name, t in m.state_dict().items():\n"
      "        b = t.detach().contiguous().numpy().astype('<f4').tobytes()\n"
      "        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [at, at + len(b)]}\n"
      "        blobs.append(b); at += len(b)\n"
      "    h = json.dumps(header).encode()\n"
      "    open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))\n";
  const std::string script_path = root_ + "/train_teacher.py";
  std::ofstream(script_path) << script;
  ASSERT_EQ(std::system((python + " " + script_path + " " + root_ + "/npy " + file).c_str()), 0);

  const Options o = distill_from(file, "out_pytorch");
  auto engine = make_fast_cpu_engine(2);
  ASSERT_EQ(run_command(o, *engine), 0);
  // Chance is 25 %: a teacher PyTorch trained on the same pixels, normalised the same way, does better.
  EXPECT_GE(summary(o)["models"][0]["test_acc"].get<double>(), 0.35);
}

// Which normalisation a model file's metadata gives: its own; MNIST's for a
// kdtrain file from before it was saved; none for a file from elsewhere.
TEST(ModelFileNormalisation, SavedOlderAndForeignFiles) {
  const std::optional<Normalization> own = saved_normalization({{kNormalizeKey, "0.5,0.4,0.3/0.2,0.2,0.25"}}, "m");
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(normalization_text(*own), "0.5,0.4,0.3/0.2,0.2,0.25");
  for (const char* key : {"format", "arch"}) {
    const std::optional<Normalization> older = saved_normalization({{key, "x"}}, "m");
    ASSERT_TRUE(older.has_value()) << key;
    EXPECT_EQ(normalization_text(*older), "0.1307/0.3081") << key;
  }
  EXPECT_FALSE(saved_normalization({}, "m").has_value());
  try {
    saved_normalization({{kNormalizeKey, "0.5"}}, "m.safetensors");
    FAIL() << "expected a parse error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("m.safetensors: metadata 'normalize': '0.5' is not", 0), 0u) << e.what();
  }
}

TEST_F(ColourData, ReferenceEngineTrainsOnColour) {
  Options o = run_on("npy", "out_reference", DeviceChoice::Reference);
  o.epochs_teacher = o.epochs_student = 1;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const auto s = summary(o);
  ASSERT_EQ(s["models"].size(), 2u);
  for (const auto& m : s["models"]) EXPECT_GE(m["test_acc"].get<double>(), 0.3) << m["role"];
}

}  // namespace
}  // namespace kd
