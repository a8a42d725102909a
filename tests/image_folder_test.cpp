// ImageFolder reading: torchvision's order, decoding, channels, resizing, the
// .npy cache, every rejected layout. Images are written here with
// stb_image_write (from libstb-dev, as the reader's stb_image is).
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "error_test_util.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/image_folder.h"
#include "kd/npy.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using test::Bytes;
using test::error_of;
using test::expect_mentions;

// An h x w image of c interleaved channels, every value `v`.
Bytes constant(int h, int w, int c, uint8_t v) { return Bytes(size_t(h) * w * c, v); }

class ImageFolderTest : public test::TempDirTest {
 protected:
  // Writes an (h, w, c) image as PNG, BMP or JPEG by `name`'s extension; returns the path.
  std::string write_image(const std::string& name, int h, int w, int c, const Bytes& hwc) {
    const fs::path path = fs::path(dir_) / name;
    fs::create_directories(path.parent_path());
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    const std::string p = path.string();
    const int ok = ext == ".bmp"                     ? stbi_write_bmp(p.c_str(), w, h, c, hwc.data())
                   : ext == ".jpg" || ext == ".jpeg" ? stbi_write_jpg(p.c_str(), w, h, c, hwc.data(), 95)
                                                     : stbi_write_png(p.c_str(), w, h, c, hwc.data(), w * c);
    EXPECT_NE(ok, 0) << p;
    return p;
  }
  ImageFolder load(const DataOptions& options = {}) { return load_image_folder(dir_, options); }
  std::string folder_error(const DataOptions& options = {}) {
    return error_of([&] { load(options); });
  }
};

// ------------------------------------------------------------ order and layout

TEST_F(ImageFolderTest, ClassesAndFilesComeInTorchvisionsOrder) {
  // Class folders sorted byte-wise, as Python's sorted(): digits, upper case, lower case.
  const std::vector<std::string> folders = {"b", "a", "B", "10", "9"};
  for (const std::string& f : folders)
    if (f != "a") write_image("train/" + f + "/0.png", 2, 3, 1, constant(2, 3, 1, 0));
  // Within class "a": its own files by name (byte-wise: "IMG" < "img", "img10" < "img2"),
  // then sub-folders by path ("sub" < "sub-x" < "sub/deep", since '-' < '/').
  const std::vector<std::string> a_files = {"IMG1.PNG",  "img10.png",    "img2.png",
                                            "sub/x.png", "sub-x/y.Jpeg", "sub/deep/z.BMP"};
  for (size_t i = 0; i < a_files.size(); ++i)
    write_image("train/a/" + a_files[i], 2, 3, 1, constant(2, 3, 1, uint8_t(10 * (i + 1))));
  write("train/a/notes.txt", {'x'});  // not an image: skipped, as torchvision skips it
  write_image("test/a/t.png", 2, 3, 1, constant(2, 3, 1, 0));

  const ImageFolder f = load();
  EXPECT_EQ(f.data.class_names, (std::vector<std::string>{"10", "9", "B", "a", "b"}));
  const Dataset& d = f.data.train;
  ASSERT_EQ(d.n, 4 + 6);
  EXPECT_EQ(d.labels, (Bytes{0, 1, 2, 3, 3, 3, 3, 3, 3, 4}));
  // Class "a" starts at row 3; JPEG is lossy, so its value is compared loosely.
  for (size_t i = 0; i < a_files.size(); ++i)
    EXPECT_NEAR(d.images[size_t((3 + i) * d.values_per_image())], 10 * (i + 1), 2) << a_files[i];
  EXPECT_EQ(d.num_classes, 5);
  EXPECT_EQ(f.data.test.labels, Bytes{3});
  EXPECT_EQ(f.data.test.num_classes, 5);  // test may lack classes; the count is the training one
}

TEST_F(ImageFolderTest, TheSameImagesViaIdxNpyAndAFolderGiveTheSameBytes) {
  // 12 training and 3 test images of 4 x 5. The training labels repeat 0, 1, 2
  // so that the folder's images, dealt out by class, come back in file order.
  const Bytes train_labels = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, test_labels = {0, 1, 2};
  const Bytes train_pixels = test::image_pixels(12, 4, 5), test_pixels = test::image_pixels(3, 4, 5);
  write("idx/train-images-idx3-ubyte", test::idx_images(12, 4, 5));
  write("idx/train-labels-idx1-ubyte", test::idx_labels(train_labels));
  write("idx/t10k-images-idx3-ubyte", test::idx_images(3, 4, 5));
  write("idx/t10k-labels-idx1-ubyte", test::idx_labels(test_labels));
  write("npy/train_images.npy", test::npy("|u1", "(12, 4, 5)", train_pixels));
  write("npy/train_labels.npy",
        test::npy("<i8", "(12,)", test::le_bytes(std::vector<int64_t>(train_labels.begin(), train_labels.end()))));
  write("npy/test_images.npy", test::npy("|u1", "(3, 1, 4, 5)", test_pixels));
  write("npy/test_labels.npy", test::npy("|u1", "(3,)", test_labels));
  for (const bool train : {true, false}) {
    const Bytes& labels = train ? train_labels : test_labels;
    const Bytes& pixels = train ? train_pixels : test_pixels;
    for (size_t i = 0; i < labels.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "folder/%s/%d/%03zu.png", train ? "train" : "test", labels[i], i);
      write_image(name, 4, 5, 1, Bytes(pixels.begin() + i * 20, pixels.begin() + (i + 1) * 20));
    }
  }
  const TrainTest idx = load_dataset_dir(dir_ + "/idx", {});
  // The folder twice: decoded, then from its cache.
  for (const std::string format : {"npy", "folder", "folder"}) {
    const TrainTest t = load_dataset_dir(dir_ + "/" + format, DataOptions{false, 0, 0, 3});
    for (auto [a, b] : {std::pair{&idx.train, &t.train}, {&idx.test, &t.test}}) {
      EXPECT_EQ(a->n, b->n) << format;
      EXPECT_EQ(a->c, b->c) << format;
      EXPECT_EQ(a->h, b->h) << format;
      EXPECT_EQ(a->w, b->w) << format;
      EXPECT_EQ(a->num_classes, b->num_classes) << format;
      EXPECT_EQ(a->images, b->images) << format;
      EXPECT_EQ(a->labels, b->labels) << format;
    }
  }
  // The folder's splits, with its class names; the validation tail holds more than the last class.
  const Splits s = load_splits(dir_ + "/folder", DataOptions{}, 2, 0);
  EXPECT_EQ(s.class_names, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(s.train.n, 10);
  EXPECT_EQ(s.val.labels, (Bytes{1, 2}));
  // Uneven classes: dealt out while each lasts.
  for (const char* name : {"uneven/train/a/0.png", "uneven/train/a/1.png", "uneven/train/a/2.png",
                           "uneven/train/b/0.png", "uneven/test/a/0.png"})
    write_image(name, 1, 1, 1, constant(1, 1, 1, 0));
  EXPECT_EQ(load_dataset_dir(dir_ + "/uneven", {}).train.labels, (Bytes{0, 1, 0, 0}));
}

TEST_F(ImageFolderTest, DecodingIsTheSameOnAnyNumberOfThreads) {
  for (int i = 0; i < 23; ++i)
    write_image("train/" + std::to_string(i % 3) + "/" + std::to_string(i) + ".png", 3, 2, 3,
                test::image_pixels(1, 3, 6));
  write_image("test/1/a.png", 3, 2, 3, constant(3, 2, 3, 9));
  const ImageFolder one = load(DataOptions{false, 0, 0, 1});
  fs::remove_all(one.cache_dir);
  const ImageFolder many = load(DataOptions{false, 0, 0, 8});
  EXPECT_FALSE(many.cache_hit);
  EXPECT_EQ(one.data.train.images, many.data.train.images);
  EXPECT_EQ(one.data.train.labels, many.data.train.labels);
}

// ------------------------------------------------------------ channels and sizes

TEST_F(ImageFolderTest, RgbaLosesItsAlphaAndGreyJoinsAColourSetAsThreeEqualChannels) {
  // 1 x 2 RGBA: (10, 20, 30, 40), (50, 60, 70, 80); 1 x 2 grey: 7, 8.
  write_image("train/a/rgba.png", 1, 2, 4, {10, 20, 30, 40, 50, 60, 70, 80});
  write_image("train/b/grey.png", 1, 2, 1, {7, 8});
  write_image("test/a/rgb.bmp", 1, 2, 3, {1, 2, 3, 4, 5, 6});
  const ImageFolder f = load();
  const Dataset& d = f.data.train;
  ASSERT_EQ(d.c, 3);
  // (n, c, h, w): channel planes of 2 pixels each.
  EXPECT_EQ(d.images, (Bytes{10, 50, 20, 60, 30, 70, /* grey */ 7, 8, 7, 8, 7, 8}));
  EXPECT_EQ(f.data.test.images, (Bytes{1, 4, 2, 5, 3, 6}));  // BMP is lossless
}

TEST_F(ImageFolderTest, GreyWithAlphaStaysOneChannel) {
  write_image("train/a/ga.png", 1, 2, 2, {7, 255, 8, 0});
  write_image("test/a/g.png", 1, 2, 1, {1, 2});
  const ImageFolder f = load();
  EXPECT_EQ(f.data.train.c, 1);
  EXPECT_EQ(f.data.train.images, (Bytes{7, 8}));
}

TEST_F(ImageFolderTest, ImageSizeResizesEveryImage) {
  // Constant images of three sizes stay constant; a left-to-right ramp stays a ramp.
  write_image("train/a/small.png", 3, 2, 1, constant(3, 2, 1, 40));
  write_image("train/a/wide.png", 4, 9, 3, constant(4, 9, 3, 200));
  Bytes ramp;
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) ramp.push_back(uint8_t(40 * x));
  write_image("train/b/ramp.png", 6, 6, 1, ramp);
  write_image("test/a/same.png", 5, 4, 1, constant(5, 4, 1, 90));  // already the size: kept as is
  const ImageFolder f = load(DataOptions{false, 5, 4, 2});
  const Dataset& d = f.data.train;
  ASSERT_EQ(d.h, 5);
  ASSERT_EQ(d.w, 4);
  ASSERT_EQ(d.c, 3);
  const int64_t v = d.values_per_image();
  EXPECT_EQ(Bytes(d.images.begin(), d.images.begin() + v), Bytes(size_t(v), 40));
  EXPECT_EQ(Bytes(d.images.begin() + v, d.images.begin() + 2 * v), Bytes(size_t(v), 200));
  for (int y = 0; y < 5; ++y)
    for (int x = 1; x < 4; ++x) EXPECT_LT(d.images[size_t(2 * v + y * 4 + x - 1)], d.images[size_t(2 * v + y * 4 + x)]);
  EXPECT_EQ(f.data.test.images, Bytes(size_t(v), 90));
}

TEST_F(ImageFolderTest, RejectsMixedSizesWithoutAnImageSize) {
  const std::string first = write_image("train/a/0.png", 28, 28, 1, constant(28, 28, 1, 0));
  const std::string other = write_image("train/b/0.png", 30, 28, 1, constant(30, 28, 1, 0));
  write_image("test/a/0.png", 28, 28, 1, constant(28, 28, 1, 0));
  expect_mentions(folder_error(), {other, "30x28", first, "28x28", "one size", "image size"});
  expect_mentions(folder_error(DataOptions{false, 28, 0, 1}), {"image size 28x0", "both sides"});
}

// ------------------------------------------------------------ rejected layouts and files

TEST_F(ImageFolderTest, RejectsMissingTrainOrTestFolder) {
  expect_mentions(folder_error(), {dir_ + "/train", "missing folder", "train/<class>"});
  write_image("train/a/0.png", 1, 1, 1, {0});
  expect_mentions(folder_error(), {dir_ + "/test", "missing folder"});
  fs::create_directories(fs::path(dir_) / "test");
  expect_mentions(folder_error(), {dir_ + "/test", "no class folders"});
}

TEST_F(ImageFolderTest, RejectsTrainFolderWithoutClasses) {
  write_image("train/0.png", 1, 1, 1, {0});  // images straight in train/, no class folder
  write_image("test/a/0.png", 1, 1, 1, {0});
  expect_mentions(folder_error(), {dir_ + "/train", "no class folders"});
}

TEST_F(ImageFolderTest, RejectsAClassFolderWithoutImages) {
  write_image("train/a/0.png", 1, 1, 1, {0});
  write("train/b/readme.txt", {'x'});
  write_image("test/a/0.png", 1, 1, 1, {0});
  expect_mentions(folder_error(), {dir_ + "/train/b", "no images", ".png"});
}

TEST_F(ImageFolderTest, RejectsATestClassTheTrainingSetLacks) {
  write_image("train/cat/0.png", 1, 1, 1, {0});
  write_image("test/cat/0.png", 1, 1, 1, {0});
  write_image("test/dog/0.png", 1, 1, 1, {0});
  expect_mentions(folder_error(), {dir_ + "/test/dog", "'dog'", dir_ + "/train"});
}

TEST_F(ImageFolderTest, RejectsTruncatedAndUndecodableImages) {
  write_image("train/a/0.png", 8, 8, 1, test::image_pixels(1, 8, 8));
  const std::string cut = write_image("train/a/1.png", 8, 8, 1, test::image_pixels(1, 8, 8));
  write_image("test/a/0.png", 8, 8, 1, constant(8, 8, 1, 0));
  fs::resize_file(cut, fs::file_size(cut) - 20);  // into the image data
  expect_mentions(folder_error(), {cut, "cannot decode"});
  const std::string text = write("train/a/1.png", {'n', 'o', 't', ' ', 'p', 'n', 'g'});
  expect_mentions(folder_error(), {text, "cannot decode", "PNG, JPEG or BMP"});
}

TEST_F(ImageFolderTest, DetectedByItsTrainFolder) {
  write_image("train/a/0.png", 2, 2, 1, constant(2, 2, 1, 5));
  write_image("test/a/0.png", 2, 2, 1, constant(2, 2, 1, 6));
  const TrainTest t = load_dataset_dir(dir_, {});
  EXPECT_EQ(t.class_names, std::vector<std::string>{"a"});
  EXPECT_EQ(t.train_images, dir_ + "/train");
  EXPECT_EQ(t.test.images, Bytes(4, 6));
}

// ------------------------------------------------------------ the cache

TEST_F(ImageFolderTest, SecondLoadReadsTheCache) {
  // BMPs of one size are files of one size, so two can swap contents
  // without changing the listing's sizes.
  const std::string a = write_image("train/x/a.bmp", 3, 3, 1, constant(3, 3, 1, 10));
  const std::string b = write_image("train/x/b.bmp", 3, 3, 1, constant(3, 3, 1, 20));
  write_image("test/x/c.bmp", 3, 3, 1, constant(3, 3, 1, 30));
  const ImageFolder first = load();
  EXPECT_FALSE(first.cache_hit);
  EXPECT_EQ(first.data.note, "");
  for (const char* name : {kNpyTrainImages, kNpyTrainLabels, kNpyTestImages, kNpyTestLabels})
    EXPECT_TRUE(fs::is_regular_file(fs::path(first.cache_dir) / name)) << name;
  EXPECT_EQ(fs::path(first.cache_dir).parent_path(), fs::path(dir_));

  const ImageFolder second = load();
  EXPECT_TRUE(second.cache_hit);
  EXPECT_EQ(second.cache_dir, first.cache_dir);
  EXPECT_EQ(second.data.train.images, first.data.train.images);
  EXPECT_EQ(second.data.class_names, first.data.class_names);
  EXPECT_EQ(second.data.train_images, dir_ + "/train");  // errors name the data, not the cache

  // Swap a's and b's contents, keeping sizes and modification times: the
  // listing is unchanged, so the cached (unswapped) pixels come back, which a
  // fresh decode would not give.
  const auto time_a = fs::last_write_time(a), time_b = fs::last_write_time(b);
  fs::rename(a, a + ".tmp");
  fs::rename(b, a);
  fs::rename(a + ".tmp", b);
  fs::last_write_time(a, time_a);
  fs::last_write_time(b, time_b);
  const ImageFolder cached = load();
  EXPECT_TRUE(cached.cache_hit);
  EXPECT_EQ(cached.data.train.images[0], 10);
}

TEST_F(ImageFolderTest, ChangingTheListingOrTheImageSizeMissesTheCache) {
  const std::string a = write_image("train/x/a.png", 3, 3, 1, constant(3, 3, 1, 10));
  write_image("test/x/c.png", 3, 3, 1, constant(3, 3, 1, 30));
  const ImageFolder first = load();

  write_image("train/y/b.png", 3, 3, 1, constant(3, 3, 1, 20));  // a new file
  const ImageFolder added = load();
  EXPECT_FALSE(added.cache_hit);
  EXPECT_NE(added.cache_dir, first.cache_dir);
  EXPECT_EQ(added.data.train.n, 2);
  EXPECT_FALSE(fs::exists(first.cache_dir));  // the stale cache is removed
  EXPECT_TRUE(load().cache_hit);

  fs::last_write_time(a, fs::last_write_time(a) + std::chrono::seconds(5));  // a touched file
  EXPECT_FALSE(load().cache_hit);
  EXPECT_TRUE(load().cache_hit);

  const ImageFolder resized = load(DataOptions{false, 2, 2, 1});  // another image size
  EXPECT_FALSE(resized.cache_hit);
  EXPECT_EQ(resized.data.train.h, 2);
}

TEST_F(ImageFolderTest, AnUnreadableCacheIsRebuilt) {
  write_image("train/x/a.png", 3, 3, 1, constant(3, 3, 1, 10));
  write_image("test/x/c.png", 3, 3, 1, constant(3, 3, 1, 30));
  const ImageFolder first = load();
  const fs::path cached_images = fs::path(first.cache_dir) / kNpyTrainImages;
  fs::resize_file(cached_images, fs::file_size(cached_images) - 1);
  const ImageFolder rebuilt = load();
  EXPECT_FALSE(rebuilt.cache_hit);
  EXPECT_EQ(rebuilt.data.train.images, first.data.train.images);
  EXPECT_EQ(rebuilt.data.note, "");
  EXPECT_TRUE(load().cache_hit);
}

}  // namespace
}  // namespace kd
