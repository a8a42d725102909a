// A colour data set through the whole pipeline: coloured shapes drawn here
// (3x32x32, four classes), written as .npy files and as an image folder, then
// trained end to end. The two formats must give the same metrics to the last
// digit, since they hold the same pixels and labels.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/data.h"
#include "kd/npy.h"

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

// `d` ordered as an image folder lists it: by class, then by file name
// (the index). The .npy files hold this order so both formats hold the same
// sequence of images.
Dataset in_folder_order(const Dataset& d) {
  Dataset out = d;
  int64_t next = 0;
  for (int label = 0; label < d.num_classes; ++label)
    for (int64_t i = 0; i < d.n; ++i)
      if (d.labels[size_t(i)] == label) {
        std::copy_n(d.images.begin() + i * d.values_per_image(), d.values_per_image(),
                    out.images.begin() + next * d.values_per_image());
        out.labels[size_t(next++)] = uint8_t(label);
      }
  return out;
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

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// metrics.csv without its two timing columns, which differ run to run.
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

class ColourData : public ::testing::Test {
 protected:
  // 500 training images (the last 100 validate) and 200 test images, both formats.
  static void SetUpTestSuite() {
    root_ = (fs::path(::testing::TempDir()) / ("kd_colour_" + std::to_string(getpid()))).string();
    fs::remove_all(root_);
    TrainTest data;
    data.train = in_folder_order(coloured_shapes(500, 1));
    data.test = in_folder_order(coloured_shapes(200, 2));
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
    // The default teacher (kd/arch.h adapt_default_arch) costs ~15 M
    // multiply-adds per 3x32x32 image; this one keeps the layer kinds at ~1/20.
    o.teacher_arch = "conv:8:3,relu,maxpool:2,dropout:0.1,flatten,dense:32,relu,dense:4";
    o.student_arch = "flatten,dense:32,relu,dense:4";
    o.latency_batches = {1};
    o.no_ort = true;
    o.quiet = true;
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
  ASSERT_EQ(a["models"].size(), 3u);
  for (size_t m = 0; m < a["models"].size(); ++m) {
    EXPECT_EQ(a["models"][m]["test_errors"], b["models"][m]["test_errors"]) << a["models"][m]["role"];
    // Chance is 25 %.
    EXPECT_GE(a["models"][m]["test_acc"].get<double>(), 0.35) << a["models"][m]["role"];
  }
}

TEST_F(ColourData, ReferenceEngineTrainsOnColour) {
  Options o = run_on("npy", "out_reference", DeviceChoice::Reference);
  o.epochs_teacher = o.epochs_student = 1;
  o.no_baseline = true;
  auto engine = make_cpu_engine();
  ASSERT_EQ(run_command(o, *engine), 0);
  const auto s = summary(o);
  ASSERT_EQ(s["models"].size(), 2u);
  for (const auto& m : s["models"]) EXPECT_GE(m["test_acc"].get<double>(), 0.3) << m["role"];
}

}  // namespace
}  // namespace kd
