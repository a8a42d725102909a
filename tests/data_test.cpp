// IDX reading, validation and splitting. Every input is crafted here, byte by
// byte, in a fresh temporary directory.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "error_test_util.h"
#include "kd/data.h"
#include "kd/error.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using test::Bytes;
using test::error_of;
using test::expect_mentions;
using test::idx_bytes;
using test::idx_images;
using test::idx_labels;
using test::image_pixels;

class DataTest : public test::TempDirTest {
 protected:
  std::string write_gzip(const std::string& name, const Bytes& bytes) {
    const std::string path = (fs::path(dir_) / name).string();
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    EXPECT_EQ(gzclose(f), Z_OK);
    return path;
  }
  Bytes read_raw(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
  }

  // Error from parsing `bytes` written as an image file; the message must name the file.
  std::string image_error(const Bytes& bytes) {
    const std::string path = write("bad-images-idx3-ubyte", bytes);
    const std::string good_labels = write("labels-idx1-ubyte", idx_labels(Bytes(1, 0)));
    const std::string msg = error_of([&] { load_idx_pair(path, good_labels); });
    expect_mentions(msg, {path});
    return msg;
  }
  std::string label_error(const Bytes& bytes) {
    const std::string good_images = write("images-idx3-ubyte", idx_images(1, 2, 2));
    const std::string path = write("bad-labels-idx1-ubyte", bytes);
    const std::string msg = error_of([&] { load_idx_pair(good_images, path); });
    expect_mentions(msg, {path});
    return msg;
  }

  // Writes a training pair of `train_labels.size()` 3x2 images and a test pair.
  void write_mnist_dir(const Bytes& train_labels, const Bytes& test_labels, uint32_t test_h = 3) {
    write("train-images-idx3-ubyte", idx_images(uint32_t(train_labels.size()), 3, 2));
    write("train-labels-idx1-ubyte", idx_labels(train_labels));
    write("t10k-images-idx3-ubyte", idx_images(uint32_t(test_labels.size()), test_h, 2));
    write("t10k-labels-idx1-ubyte", idx_labels(test_labels));
  }
};

// ------------------------------------------------------------ round trips

TEST_F(DataTest, PlainPairRoundTrips) {
  const Bytes labels = {0, 3, 1, 2, 3};
  const Dataset d = load_idx_pair(write("i", idx_images(5, 3, 4)), write("l", idx_labels(labels)));
  EXPECT_EQ(d.n, 5);
  EXPECT_EQ(d.h, 3);
  EXPECT_EQ(d.w, 4);
  EXPECT_EQ(d.pixels(), 12);
  EXPECT_EQ(d.num_classes, 4);  // 1 + max label 3
  EXPECT_EQ(d.images, image_pixels(5, 3, 4));
  EXPECT_EQ(d.labels, labels);
}

TEST_F(DataTest, GzipPairRoundTripsAndIsFoundByItsSuffix) {
  const Bytes labels = {7, 0, 2};
  const Bytes images = idx_images(3, 5, 2);
  write_gzip("train-images-idx3-ubyte.gz", images);
  write_gzip("train-labels-idx1-ubyte.gz", idx_labels(labels));
  const std::string images_path = find_idx_file(dir_, "train-images-idx3-ubyte");
  EXPECT_EQ(images_path, dir_ + "/train-images-idx3-ubyte.gz");
  EXPECT_EQ(read_file_maybe_gzip(images_path), images);
  EXPECT_NE(read_raw(images_path), images);  // really compressed on disk

  const Dataset d = load_idx_pair(images_path, find_idx_file(dir_, "train-labels-idx1-ubyte"));
  EXPECT_EQ(d.n, 3);
  EXPECT_EQ(d.h, 5);
  EXPECT_EQ(d.w, 2);
  EXPECT_EQ(d.num_classes, 8);
  EXPECT_EQ(d.images, image_pixels(3, 5, 2));
  EXPECT_EQ(d.labels, labels);
}

TEST_F(DataTest, ConcatenatedGzipMembersAreAllRead) {
  // gzip allows several members back to back; gunzip reads them all.
  const Bytes images = idx_images(2, 2, 2);
  const Bytes head(images.begin(), images.begin() + 10), tail(images.begin() + 10, images.end());
  Bytes both = read_raw(write_gzip("a.gz", head));
  const Bytes second = read_raw(write_gzip("b.gz", tail));
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(read_file_maybe_gzip(write("both.gz", both)), images);
}

TEST_F(DataTest, FindPrefersThePlainFile) {
  write("x-idx1-ubyte", idx_labels({1}));
  write_gzip("x-idx1-ubyte.gz", idx_labels({1}));
  EXPECT_EQ(find_idx_file(dir_, "x-idx1-ubyte"), dir_ + "/x-idx1-ubyte");
}

// ------------------------------------------------------------ missing and unreadable files

TEST_F(DataTest, FindNamesBothCandidatesWhenNeitherExists) {
  const std::string msg = error_of([&] { find_idx_file(dir_, "t10k-images-idx3-ubyte"); });
  expect_mentions(msg, {dir_ + "/t10k-images-idx3-ubyte ", dir_ + "/t10k-images-idx3-ubyte.gz", "missing"});
}

TEST_F(DataTest, FindNamesAMissingDirectory) {
  const std::string missing_dir = dir_ + "/nowhere";
  expect_mentions(error_of([&] { find_idx_file(missing_dir, "train-images-idx3-ubyte"); }),
                  {missing_dir, "missing", "--data"});
}

TEST_F(DataTest, RejectsMissingFile) {
  const std::string path = dir_ + "/absent-images-idx3-ubyte";
  const std::string labels = write("l", idx_labels({0}));
  expect_mentions(error_of([&] { load_idx_pair(path, labels); }), {path, "missing"});
}

TEST_F(DataTest, RejectsDirectoryAsFile) {
  expect_mentions(error_of([&] { read_file_maybe_gzip(dir_); }), {dir_, "directory"});
}

TEST_F(DataTest, RejectsTruncatedGzip) {
  const Bytes whole = read_raw(write_gzip("full.gz", idx_images(4, 8, 8)));
  const std::string path = write("cut-images-idx3-ubyte.gz", Bytes(whole.begin(), whole.begin() + whole.size() / 2));
  expect_mentions(error_of([&] { read_file_maybe_gzip(path); }), {path, "truncated gzip"});
}

TEST_F(DataTest, RejectsCorruptGzip) {
  Bytes bytes = read_raw(write_gzip("full.gz", idx_images(4, 8, 8)));
  // Damage the deflate data or, failing that, its CRC-32: either is caught.
  for (size_t i = 12; i < bytes.size() - 8; ++i) bytes[i] ^= 0x5a;
  const std::string path = write("bad-images-idx3-ubyte.gz", bytes);
  expect_mentions(error_of([&] { read_file_maybe_gzip(path); }), {path, "corrupt gzip"});
}

// ------------------------------------------------------------ header rejections

TEST_F(DataTest, RejectsFileShorterThanMagic) {
  expect_mentions(image_error({0, 0}), {"truncated", "2 bytes", "magic"});
  expect_mentions(label_error({}), {"truncated", "0 bytes", "magic"});
}

TEST_F(DataTest, RejectsTruncatedHeader) {
  // An image header is 4 + 3 * 4 = 16 bytes, a label header 4 + 4 = 8.
  expect_mentions(image_error(Bytes{0, 0, 8, 3, 0, 0, 0, 1, 0, 0}), {"truncated", "10 bytes", "16"});
  expect_mentions(label_error(Bytes{0, 0, 8, 1, 0, 0}), {"truncated", "6 bytes", "8"});
}

TEST_F(DataTest, RejectsWrongMagicSayingExpectedAndFound) {
  const std::string msg = image_error(idx_bytes(0x12345678, {1, 2, 2}, Bytes(4)));
  expect_mentions(msg, {"wrong magic", "2051", "305419896"});  // 0x12345678 == 305419896
  expect_mentions(label_error(idx_bytes(0x4d4e4953, {1}, Bytes(1))), {"wrong magic", "2049", "0x4D4E4953"});
}

TEST_F(DataTest, HintsWhenImagesAndLabelsAreSwapped) {
  const std::string images = write("train-images-idx3-ubyte", idx_images(2, 2, 2));
  const std::string labels = write("train-labels-idx1-ubyte", idx_labels({0, 1}));
  const std::string msg = error_of([&] { load_idx_pair(labels, images); });
  expect_mentions(msg, {labels, "2049", "expected magic 2051", "swapped"});
  expect_mentions(error_of([&] { parse_idx_labels(idx_images(2, 2, 2), images); }),
                  {images, "2051", "expected magic 2049", "swapped"});
}

TEST_F(DataTest, RejectsWrongRank) {
  // 0x00000802: u8 of rank 2, neither an image nor a label file.
  expect_mentions(image_error(idx_bytes(0x0802, {1, 4}, Bytes(4))), {"wrong rank 2", "rank 3"});
  expect_mentions(label_error(idx_bytes(0x0802, {1, 1}, Bytes(1))), {"wrong rank 2", "rank 1"});
}

TEST_F(DataTest, RejectsNonU8ElementType) {
  // 0x0D is IDX float32.
  expect_mentions(image_error(idx_bytes(0x0D03, {1, 1, 1}, Bytes(4))), {"element type", "0x0D", "0x08"});
  expect_mentions(label_error(idx_bytes(0x0C01, {1}, Bytes(4))), {"element type", "0x0C", "0x08"});
}

TEST_F(DataTest, RejectsZeroImagesAndZeroLabels) {
  expect_mentions(image_error(idx_bytes(2051, {0, 28, 28}, {})), {"zero images"});
  expect_mentions(label_error(idx_bytes(2049, {0}, {})), {"zero labels"});
}

TEST_F(DataTest, RejectsZeroImageDimension) {
  expect_mentions(image_error(idx_bytes(2051, {3, 28, 0}, {})), {"zero dimension", "3 x 28 x 0"});
}

TEST_F(DataTest, RejectsDimensionsThatOverflow) {
  // 2^32-1 cubed overflows 64 bits; a 2^31 side does not fit the int that holds it.
  expect_mentions(image_error(idx_bytes(2051, {0xffffffffu, 0xffffffffu, 0xffffffffu}, Bytes(4))), {"overflow"});
  expect_mentions(image_error(idx_bytes(2051, {1, 0x80000000u, 1}, Bytes(4))), {"overflow"});
}

TEST_F(DataTest, RejectsFileShorterThanItsHeaderSays) {
  Bytes bytes = idx_images(3, 4, 4);  // 16 + 48 = 64 bytes
  bytes.pop_back();
  expect_mentions(image_error(bytes), {"size mismatch", "64", "63", "truncated"});
  Bytes labels = idx_labels({1, 2, 3});  // 8 + 3 = 11 bytes
  labels.pop_back();
  expect_mentions(label_error(labels), {"size mismatch", "11", "10"});
}

TEST_F(DataTest, RejectsFileLongerThanItsHeaderSays) {
  Bytes bytes = idx_images(3, 4, 4);
  bytes.push_back(0);
  expect_mentions(image_error(bytes), {"size mismatch", "64", "65", "trailing"});
}

TEST_F(DataTest, RejectsImageLabelCountMismatch) {
  const std::string images = write("i", idx_images(4, 2, 2));
  const std::string labels = write("l", idx_labels({0, 1, 2}));
  expect_mentions(error_of([&] { load_idx_pair(images, labels); }), {images, labels, "count mismatch", "4", "3"});
}

TEST_F(DataTest, ClassCountIsOnePlusTheLargestLabel) {
  // u8 labels cap the class count at 256.
  const Dataset d = load_idx_pair(write("i", idx_images(2, 1, 1)), write("l", idx_labels({255, 4})));
  EXPECT_EQ(d.num_classes, 256);
}

// ------------------------------------------------------------ slicing and splits

TEST_F(DataTest, SliceKeepsTheRequestedRows) {
  const Dataset d = load_idx_pair(write("i", idx_images(6, 2, 3)), write("l", idx_labels({5, 4, 3, 2, 1, 0})));
  const Dataset s = d.slice(2, 3);
  EXPECT_EQ(s.n, 3);
  EXPECT_EQ(s.h, 2);
  EXPECT_EQ(s.w, 3);
  EXPECT_EQ(s.num_classes, 6);
  EXPECT_EQ(s.labels, (Bytes{3, 2, 1}));
  const Bytes all = image_pixels(6, 2, 3);
  EXPECT_EQ(s.images, Bytes(all.begin() + 2 * 6, all.begin() + 5 * 6));
  EXPECT_EQ(d.slice(6, 0).n, 0);
  expect_mentions(error_of([&] { d.slice(4, 3); }), {"slice", "[4, 4 + 3)", "6 rows"});
  expect_mentions(error_of([&] { d.slice(-1, 1); }), {"slice"});
}

TEST_F(DataTest, SliceCopiesEveryChannelOfARow) {
  // 3 images of 2 channels x 1 x 2: a row is c * h * w = 4 values.
  Dataset d;
  d.n = 3;
  d.c = 2;
  d.h = 1;
  d.w = 2;
  d.images = image_pixels(3, 2, 2);
  d.labels = {0, 1, 2};
  EXPECT_EQ(d.pixels(), 2);
  EXPECT_EQ(d.values_per_image(), 4);
  const Dataset s = d.slice(1, 2);
  EXPECT_EQ(s.c, 2);
  EXPECT_EQ(s.images, Bytes(d.images.begin() + 4, d.images.end()));
}

// Which rows of the training file a split holds, recovered from its pixels.
std::vector<int> row_ids(const Dataset& d) {
  std::vector<int> ids;
  for (int64_t i = 0; i < d.n; ++i) ids.push_back(d.images[size_t(i * d.pixels())] / 7);
  return ids;
}

TEST_F(DataTest, ValidationIsTheTailOfTheTrainingFile) {
  write_mnist_dir({0, 1, 2, 0, 1, 2, 0, 1, 2, 1}, {2, 1, 0, 0});
  const Splits s = load_splits(dir_, 3, 0);
  EXPECT_EQ(row_ids(s.train), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(row_ids(s.val), (std::vector<int>{7, 8, 9}));
  EXPECT_EQ(s.val.labels, (Bytes{1, 2, 1}));
  EXPECT_EQ(s.test.n, 4);
  EXPECT_EQ(s.test.labels, (Bytes{2, 1, 0, 0}));
  EXPECT_EQ(s.train.h, 3);
  EXPECT_EQ(s.train.w, 2);
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_EQ(s.train.num_classes, 3);
  EXPECT_EQ(s.val.num_classes, 3);
  EXPECT_EQ(s.test.num_classes, 3);
}

TEST_F(DataTest, TrainLimitKeepsTheFirstImagesAndLeavesValidationAlone) {
  write_mnist_dir({0, 1, 2, 0, 1, 2, 0, 1, 2, 1}, {0});
  const Splits s = load_splits(dir_, 3, 5);
  EXPECT_EQ(row_ids(s.train), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(row_ids(s.val), (std::vector<int>{7, 8, 9}));
  // A limit above what remains after the validation split keeps all of it.
  EXPECT_EQ(load_splits(dir_, 3, 100).train.n, 7);
}

TEST_F(DataTest, ZeroValidationSizeKeepsEveryTrainingImage) {
  write_mnist_dir({0, 1, 1}, {1});
  const Splits s = load_splits(dir_, 0, 0);
  EXPECT_EQ(s.train.n, 3);
  EXPECT_EQ(s.val.n, 0);
  EXPECT_TRUE(s.val.images.empty());
}

TEST_F(DataTest, ClassCountComesFromTheWholeTrainingFile) {
  // Class 4 appears only in the validation tail; the count still includes it.
  write_mnist_dir({0, 1, 0, 1, 4}, {0, 1});
  const Splits s = load_splits(dir_, 1, 0);
  EXPECT_EQ(s.num_classes, 5);
  EXPECT_EQ(s.train.num_classes, 5);
  EXPECT_EQ(s.test.num_classes, 5);
}

TEST_F(DataTest, RejectsValidationSizeNotBelowTrainingSize) {
  write_mnist_dir({0, 1, 0, 1}, {0});
  expect_mentions(error_of([&] { load_splits(dir_, 4, 0); }), {"--val-size", "4 images", "train-images-idx3-ubyte"});
  expect_mentions(error_of([&] { load_splits(dir_, -1, 0); }), {"--val-size", ">= 0"});
}

TEST_F(DataTest, RejectsNegativeTrainLimit) {
  write_mnist_dir({0, 1}, {0});
  expect_mentions(error_of([&] { load_splits(dir_, 0, -5); }), {"--train-limit", "-5"});
}

TEST_F(DataTest, RejectsTestImagesOfAnotherSize) {
  write_mnist_dir({0, 1}, {0}, /*test_h=*/4);
  expect_mentions(error_of([&] { load_splits(dir_, 0, 0); }), {"t10k-images-idx3-ubyte", "4x2", "3x2"});
}

TEST_F(DataTest, RejectsTestLabelOutsideTrainingClasses) {
  write_mnist_dir({0, 1, 2}, {1, 3, 0});
  expect_mentions(error_of([&] { load_splits(dir_, 0, 0); }),
                  {"t10k-labels-idx1-ubyte", "label 3", "index 1", "3 classes"});
}

// ------------------------------------------------------------ normalisation

TEST(Normalization, PerChannelMeanAndPopulationStdOfPixelsOver255) {
  Dataset d;
  d.n = 2, d.c = 3, d.h = 1, d.w = 2;
  // Channel 0: 0, 255, 0, 255 -> mean 0.5, std 0.5. Channel 1: all 51 -> mean 0.2,
  // std 0 -> 1. Channel 2: 0, 0, 0, 255 -> mean 0.25, std sqrt(0.25 - 0.0625) = sqrt(3)/4.
  d.images = {0, 255, 51, 51, 0, 0, /* image 2 */ 0, 255, 51, 51, 0, 255};
  const Normalization n = normalization_of(d);
  EXPECT_EQ(n.c, 3);
  EXPECT_FLOAT_EQ(n.mean[0], 0.5f);
  EXPECT_FLOAT_EQ(n.std[0], 0.5f);
  EXPECT_FLOAT_EQ(n.mean[1], 0.2f);
  EXPECT_EQ(n.std[1], 1.0f) << "a constant channel normalises to a constant, not to inf";
  EXPECT_FLOAT_EQ(n.mean[2], 0.25f);
  EXPECT_FLOAT_EQ(n.std[2], float(std::sqrt(3.0) / 4));
}

TEST(Normalization, TextReadsBackToTheSameFloats) {
  Normalization n;
  n.c = 3;
  const float mean[] = {0.4914f, 0.48216f, 0.44653f}, std[] = {0.24703f, 0.24349f, 0.26159f};
  for (int ch = 0; ch < 3; ++ch) n.mean[ch] = mean[ch], n.std[ch] = std[ch];
  const Normalization back = parse_normalization(normalization_text(n), "--normalize");
  EXPECT_EQ(back.c, 3);
  for (int ch = 0; ch < 3; ++ch) {
    EXPECT_EQ(back.mean[ch], n.mean[ch]);
    EXPECT_EQ(back.std[ch], n.std[ch]);
  }
  EXPECT_EQ(normalization_text(Normalization{}), "0.1307/0.3081");
  EXPECT_EQ(parse_normalization("0.1307/0.3081", "--normalize").mean[0], kPixelMean);
}

TEST(Normalization, RejectsMalformedText) {
  for (const char* bad : {"0.5", "0.5/0.2/0.1", "a/0.2", "0.5/", "0.5,0.5/0.2", "1,2,3,4/1,1,1,1", "0.5/0", "0.5/-1",
                          "0.5/nan", "0.5/inf"}) {
    const std::string msg = error_of([&] { parse_normalization(bad, "--normalize"); });
    EXPECT_EQ(msg.rfind("--normalize: ", 0), 0u) << bad << ": " << msg;
  }
}

TEST_F(DataTest, RejectsDirectoryWithoutTestFiles) {
  write("train-images-idx3-ubyte", idx_images(2, 1, 1));
  write("train-labels-idx1-ubyte", idx_labels({0, 1}));
  expect_mentions(error_of([&] { load_splits(dir_, 0, 0); }), {"t10k-images-idx3-ubyte", "missing"});
}

}  // namespace
}  // namespace kd
