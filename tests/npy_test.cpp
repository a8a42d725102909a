// .npy reading and validation, and the choice of format in a data directory.
// Every .npy file is built here byte by byte (data_test_util.h), so the
// reader is not checked against its own writer; one test reads numpy.save's
// output when a python3 with numpy exists.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "error_test_util.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/npy.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using test::Bytes;
using test::error_of;
using test::expect_mentions;
using test::image_pixels;
using test::le_bytes;
using test::npy;
using test::npy_raw;

class NpyTest : public test::TempDirTest {
 protected:
  // The error for `bytes` read as an image file; it must name the file.
  std::string image_error(const Bytes& bytes, bool channels_last = false) {
    const std::string path = write("bad_images.npy", bytes);
    const std::string labels = write("labels.npy", npy("|u1", "(1,)", {0}));
    const std::string msg = error_of([&] { load_npy_pair(path, labels, channels_last); });
    expect_mentions(msg, {path});
    return msg;
  }
  std::string label_error(const Bytes& bytes) {
    const std::string images = write("images.npy", npy("|u1", "(1, 1, 1)", {0}));
    const std::string path = write("bad_labels.npy", bytes);
    const std::string msg = error_of([&] { load_npy_pair(images, path, false); });
    expect_mentions(msg, {path});
    return msg;
  }
  // The four files of load_npy_dir: train and test images (n, 3, 2) u8, given labels.
  void write_npy_dir(const Bytes& train_labels, const Bytes& test_labels) {
    const std::string n_train = std::to_string(train_labels.size()), n_test = std::to_string(test_labels.size());
    write(kNpyTrainImages, npy("|u1", "(" + n_train + ", 3, 2)", image_pixels(uint32_t(train_labels.size()), 3, 2)));
    write(kNpyTrainLabels, npy("|u1", "(" + n_train + ",)", train_labels));
    write(kNpyTestImages, npy("|u1", "(" + n_test + ", 3, 2)", image_pixels(uint32_t(test_labels.size()), 3, 2)));
    write(kNpyTestLabels, npy("|u1", "(" + n_test + ",)", test_labels));
  }
};

// ------------------------------------------------------------ images

TEST_F(NpyTest, U8ImagesRoundTripInEveryFormatVersion) {
  const Bytes pixels = image_pixels(4, 3, 5);
  for (int major : {1, 2, 3}) {
    const Dataset d = parse_npy_images(npy("|u1", "(4, 3, 5)", pixels, major), false, "v" + std::to_string(major));
    EXPECT_EQ(d.n, 4);
    EXPECT_EQ(d.c, 1);
    EXPECT_EQ(d.h, 3);
    EXPECT_EQ(d.w, 5);
    EXPECT_EQ(d.images, pixels);
    EXPECT_TRUE(d.labels.empty());
  }
}

TEST_F(NpyTest, HeaderSpellingsNumpyHasUsedAreAccepted) {
  // Double quotes, no trailing comma, keys in another order, Python 2's 3L, no padding.
  const Bytes pixels = image_pixels(2, 1, 3);
  for (const std::string dict : {"{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (2, 1, 3)}",
                                 "{'shape': (2L, 1L, 3L), 'fortran_order': False, 'descr': '<u1'}",
                                 "{'descr':'|u1','fortran_order':False,'shape':(2,1,3,),}"}) {
    Bytes bytes = npy_raw(dict, pixels);
    EXPECT_EQ(parse_npy_images(bytes, false, dict).images, pixels) << dict;
  }
}

TEST_F(NpyTest, Float32ImagesAreQuantisedToTheNearestU8) {
  // Every u8 value v stored as float32(v / 255) comes back as v: the float is
  // within 2^-24 relative of v / 255, far inside the 1/510 rounding margin.
  std::vector<float> f(256);
  for (int v = 0; v < 256; ++v) f[size_t(v)] = float(v) / 255.0f;
  Bytes expected(256);
  for (int v = 0; v < 256; ++v) expected[size_t(v)] = uint8_t(v);
  EXPECT_EQ(parse_npy_images(npy("<f4", "(1, 16, 16)", le_bytes(f)), false, "f").images, expected);

  // Anywhere in [0, 1] the u8 is round(v * 255): off by at most 1/510 after /255;
  // the half-way point 0.5 * 255 = 127.5 rounds up, as do 1/510 above a step.
  const std::vector<float> g = {0.0f, 1.0f, 0.5f, 0.3f, 1.0f / 510, 0.999f};
  const Dataset d = parse_npy_images(npy("<f4", "(1, 2, 3)", le_bytes(g)), false, "g");
  EXPECT_EQ(d.images, (Bytes{0, 255, 128, 77, 1, 255}));
  for (size_t i = 0; i < g.size(); ++i) EXPECT_LE(std::fabs(d.images[i] / 255.0 - g[i]), 1.0 / 510 + 1e-7) << i;
}

TEST_F(NpyTest, ChannelsFirstImagesKeepTheirLayout) {
  const Bytes pixels = image_pixels(2, 3, 4);  // (2, 3, 2, 2) read as 3 channels of 2 x 2
  const Dataset d = parse_npy_images(npy("|u1", "(2, 3, 2, 2)", pixels), false, "nchw");
  EXPECT_EQ(d.c, 3);
  EXPECT_EQ(d.h, 2);
  EXPECT_EQ(d.w, 2);
  EXPECT_EQ(d.values_per_image(), 12);
  EXPECT_EQ(d.images, pixels);
}

TEST_F(NpyTest, ChannelsLastImagesAreTransposedToChannelsFirst) {
  // (N, H, W, C) = (2, 3, 4, 3) with value 100 c + 10 y + x + 50 i, distinct per position.
  const int n = 2, h = 3, w = 4, c = 3;
  Bytes nhwc;
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k) nhwc.push_back(uint8_t(50 * i + 100 * k + 10 * y + x));
  const Dataset d = parse_npy_images(npy("|u1", "(2, 3, 4, 3)", nhwc), true, "nhwc");
  ASSERT_EQ(d.c, 3);
  ASSERT_EQ(d.h, 3);
  ASSERT_EQ(d.w, 4);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < c; ++k)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          EXPECT_EQ(d.images[size_t(((i * c + k) * h + y) * w + x)], uint8_t(50 * i + 100 * k + 10 * y + x));
  // The same for float32 images, and a 3-d array has no channel axis to move.
  std::vector<float> f(nhwc.begin(), nhwc.end());
  for (float& v : f) v /= 255.0f;
  EXPECT_EQ(parse_npy_images(npy("<f4", "(2, 3, 4, 3)", le_bytes(f)), true, "f").images, d.images);
  EXPECT_EQ(parse_npy_images(npy("|u1", "(1, 2, 2)", {1, 2, 3, 4}), true, "3d").c, 1);
}

TEST_F(NpyTest, RejectsOutOfRangeAndNanFloatImages) {
  for (const float bad : {1.5f, -0.25f, 255.0f, std::nanf("")}) {
    const std::string msg = image_error(npy("<f4", "(1, 1, 2)", le_bytes(std::vector<float>{0.5f, bad})));
    expect_mentions(msg, {"outside [0, 1]", "element 1", "uint8", "0-255", "float32"});
  }
}

TEST_F(NpyTest, RejectsBigEndianWithTheFix) {
  const std::string msg = image_error(npy(">f4", "(1, 1, 1)", {0, 0, 0, 0}));
  expect_mentions(msg, {"big-endian", "'>f4'", "arr.astype('<f4')"});
  expect_mentions(label_error(npy(">i8", "(1,)", Bytes(8))), {"big-endian", "arr.astype('<i8')"});
  // One byte has no order: '>u1' is '|u1'.
  EXPECT_EQ(parse_npy_images(npy(">u1", "(1, 1, 1)", {9}), false, "u1").images, Bytes{9});
}

TEST_F(NpyTest, RejectsFortranOrderWithTheFix) {
  const Bytes bytes = npy_raw("{'descr': '|u1', 'fortran_order': True, 'shape': (1, 2, 2), }", Bytes(4));
  expect_mentions(image_error(bytes), {"Fortran", "ascontiguousarray"});
}

TEST_F(NpyTest, RejectsUnsupportedImageDtypes) {
  expect_mentions(image_error(npy("<f8", "(1, 1, 1)", Bytes(8))), {"'<f8'", "astype('<f4')"});
  expect_mentions(image_error(npy("<i4", "(1, 1, 1)", Bytes(4))), {"'<i4'", "uint8 (0-255)", "astype('u1')"});
  expect_mentions(image_error(npy("|b1", "(1, 1, 1)", Bytes(1))), {"'|b1'", "unsupported dtype"});
  // NUL bytes in descr (found by npy_fuzz: strchr matched them, giving an item size of -48).
  expect_mentions(image_error(npy(std::string("<\0\0", 3), "(1, 1, 2)", Bytes(2))), {"unsupported dtype '<?"});
  expect_mentions(image_error(npy_raw("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", Bytes(4))),
                  {"structured"});
}

TEST_F(NpyTest, RejectsImageShapesItCannotRead) {
  expect_mentions(image_error(npy("|u1", "(4, 4)", Bytes(16))), {"(4, 4)", "(N, H, W)"});
  expect_mentions(image_error(npy("|u1", "(0, 28, 28)", {})), {"zero images"});
  expect_mentions(image_error(npy("|u1", "(2, 0, 28)", {})), {"zero dimension", "(2, 0, 28)"});
  // (N, H, W, C) read as channels first: 28 channels, with the hint.
  expect_mentions(image_error(npy("|u1", "(1, 28, 28, 1)", Bytes(784))), {"28 channels", "1 or 3", "channels last"});
  expect_mentions(image_error(npy("|u1", "(1, 2, 2, 4)", Bytes(16)), true), {"4 channels", "1 or 3"});
  expect_mentions(image_error(npy("|u1", "(1, 3000000000, 1)", Bytes(1))), {"size mismatch"});
  expect_mentions(image_error(npy("|u1", "(99999999999, 99999999999, 99999999999)", Bytes(1))), {"overflow"});
  expect_mentions(image_error(npy("|u1", "(1, 99999999999999999999, 1)", Bytes(1))), {"too large"});
}

// ------------------------------------------------------------ the file around the array

TEST_F(NpyTest, RejectsWhatIsNotANpyFile) {
  expect_mentions(image_error({}), {"not a .npy file", "0 bytes", "numpy.save"});
  expect_mentions(image_error(test::idx_images(1, 2, 2)), {"not a .npy file", "magic"});
  Bytes v4 = npy("|u1", "(1, 1, 1)", {0});
  v4[6] = 4;
  expect_mentions(image_error(v4), {"version 4.0", "1.0, 2.0 and 3.0"});
}

TEST_F(NpyTest, RejectsHeaderThatLiesAboutItsLength) {
  const Bytes whole = npy("|u1", "(1, 1, 1)", {0});
  expect_mentions(image_error(Bytes(whole.begin(), whole.begin() + 9)), {"truncated .npy header", "9 bytes"});
  Bytes long_header = whole;
  long_header[8] = 0xff;  // claims 0x..ff header bytes, more than the file holds
  long_header[9] = 0xff;
  expect_mentions(image_error(long_header), {"truncated .npy header", "65535"});
  // A version 2.0 length is 4 bytes: a 1.0 file read as 2.0 claims a huge header.
  Bytes as_v2 = whole;
  as_v2[6] = 2;
  expect_mentions(image_error(as_v2), {"truncated .npy header"});
}

TEST_F(NpyTest, RejectsDataThatDisagreesWithTheShape) {
  Bytes bytes = npy("<f4", "(2, 2, 2)", Bytes(32));
  bytes.pop_back();
  expect_mentions(image_error(bytes), {"size mismatch", "(2, 2, 2)", "32 data bytes", "holds 31", "truncated"});
  bytes.push_back(0);
  bytes.push_back(0);
  expect_mentions(image_error(bytes), {"size mismatch", "holds 33", "trailing"});
}

TEST_F(NpyTest, RejectsMalformedHeaderDicts) {
  const Bytes data(1);
  auto header_error = [&](const std::string& dict) { return image_error(npy_raw(dict, data)); };
  expect_mentions(header_error("{'descr': '|u1', 'shape': (1, 1, 1), }"),
                  {"bad .npy header", "missing key 'fortran_order'"});
  expect_mentions(header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1), 'x': 1}"),
                  {"bad .npy header", "'x'"});
  expect_mentions(header_error("{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1)}"),
                  {"repeated key 'descr'"});
  expect_mentions(header_error("{'descr: '|u1', 'fortran_order': False, 'shape': (1, 1, 1)}"), {"bad .npy header"});
  expect_mentions(header_error("{'descr': '|u1', 'fortran_order': Maybe, 'shape': (1, 1, 1)}"), {"True or False"});
  expect_mentions(header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1, -1, 1)}"), {"dimension"});
  expect_mentions(header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1)} x"),
                  {"after the closing"});
  expect_mentions(header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1"), {"expected ')'"});
  expect_mentions(header_error(std::string("{'descr': '|u1'\x01\x02, \n")), {"bad .npy header"});
}

// ------------------------------------------------------------ labels

TEST_F(NpyTest, LabelsOfEveryIntegerDtypeAreRead) {
  const Bytes want = {0, 7, 255, 3};
  EXPECT_EQ(parse_npy_labels(npy("|u1", "(4,)", want), "u1"), want);
  EXPECT_EQ(parse_npy_labels(npy("<u2", "(4,)", le_bytes(std::vector<uint16_t>{0, 7, 255, 3})), "u2"), want);
  EXPECT_EQ(parse_npy_labels(npy("<i2", "(4,)", le_bytes(std::vector<int16_t>{0, 7, 255, 3})), "i2"), want);
  EXPECT_EQ(parse_npy_labels(npy("<u4", "(4,)", le_bytes(std::vector<uint32_t>{0, 7, 255, 3})), "u4"), want);
  EXPECT_EQ(parse_npy_labels(npy("<i4", "(4,)", le_bytes(std::vector<int32_t>{0, 7, 255, 3})), "i4"), want);
  EXPECT_EQ(parse_npy_labels(npy("<u8", "(4,)", le_bytes(std::vector<uint64_t>{0, 7, 255, 3})), "u8"), want);
  EXPECT_EQ(parse_npy_labels(npy("<i8", "(4,)", le_bytes(std::vector<int64_t>{0, 7, 255, 3})), "i8"), want);
  EXPECT_EQ(parse_npy_labels(npy("|i1", "(2,)", le_bytes(std::vector<int8_t>{0, 127})), "i1"), (Bytes{0, 127}));
}

TEST_F(NpyTest, RejectsLabelsOutsideZeroTo255) {
  expect_mentions(label_error(npy("|i1", "(2,)", le_bytes(std::vector<int8_t>{0, -1}))),
                  {"label -1", "index 1", "0..255"});
  expect_mentions(label_error(npy("<i2", "(1,)", le_bytes(std::vector<int16_t>{-300}))), {"label -300", "index 0"});
  expect_mentions(label_error(npy("<u2", "(1,)", le_bytes(std::vector<uint16_t>{256}))), {"label 256", "0..255"});
  expect_mentions(label_error(npy("<i8", "(1,)", le_bytes(std::vector<int64_t>{INT64_MIN}))),
                  {"label -9223372036854775808"});
  expect_mentions(label_error(npy("<u8", "(1,)", le_bytes(std::vector<uint64_t>{UINT64_MAX}))),
                  {"label 18446744073709551615"});
}

TEST_F(NpyTest, RejectsLabelsThatAreNotOneDimensionalIntegers) {
  expect_mentions(label_error(npy("<f4", "(1,)", Bytes(4))), {"'<f4'", "not integers"});
  expect_mentions(label_error(npy("|u1", "(2, 1)", Bytes(2))), {"(2, 1)", "one-dimensional", "ravel"});
  expect_mentions(label_error(npy("|u1", "(0,)", {})), {"zero labels"});
}

TEST_F(NpyTest, RejectsImageLabelCountMismatch) {
  const std::string images = write("i.npy", npy("|u1", "(3, 1, 1)", Bytes(3)));
  const std::string labels = write("l.npy", npy("|u1", "(2,)", Bytes(2)));
  expect_mentions(error_of([&] { load_npy_pair(images, labels, false); }),
                  {images, labels, "count mismatch", "3 images", "2 labels"});
}

// ------------------------------------------------------------ directories

TEST_F(NpyTest, DirectoryClassCountIsOnePlusTheLargestLabelOverBothSets) {
  write_npy_dir({0, 1, 2, 1}, {4, 0});
  const TrainTest t = load_npy_dir(dir_, false);
  EXPECT_EQ(t.train.n, 4);
  EXPECT_EQ(t.test.n, 2);
  EXPECT_EQ(t.train.num_classes, 5);
  EXPECT_EQ(t.test.num_classes, 5);
  EXPECT_EQ(t.train.images, image_pixels(4, 3, 2));
  EXPECT_EQ(t.test_labels, dir_ + "/test_labels.npy");
}

TEST_F(NpyTest, DirectoryNamesAMissingFile) {
  write_npy_dir({0, 1}, {1});
  fs::remove(fs::path(dir_) / kNpyTestLabels);
  expect_mentions(error_of([&] { load_npy_dir(dir_, false); }), {dir_ + "/test_labels.npy", "missing"});
  expect_mentions(error_of([&] { load_dataset_dir(dir_, {}); }), {dir_ + "/test_labels.npy", "missing"});
}

TEST_F(NpyTest, SavedDirectoryReadsBackTheSameBytes) {
  write_npy_dir({0, 1, 2, 1}, {1, 0});
  const TrainTest t = load_npy_dir(dir_, false);
  const std::string copy = dir_ + "/copy";
  fs::create_directory(copy);
  save_npy_dir(copy, t);
  const TrainTest back = load_npy_dir(copy, false);
  EXPECT_EQ(back.train.images, t.train.images);
  EXPECT_EQ(back.train.labels, t.train.labels);
  EXPECT_EQ(back.test.images, t.test.images);
  EXPECT_EQ(back.test.labels, t.test.labels);
  // numpy's layout: the data starts 64-byte aligned.
  const Bytes file = npy_bytes_u8({2, 3}, Bytes(6));
  EXPECT_EQ((file.size() - 6) % 64, 0u);
}

TEST_F(NpyTest, FormatDetectionPrefersIdxThenNpy) {
  write_npy_dir({0, 1, 1}, {1});
  const TrainTest from_npy = load_dataset_dir(dir_, {});
  EXPECT_EQ(from_npy.train_images, dir_ + "/train_images.npy");
  // The IDX files win when both are there.
  write("train-images-idx3-ubyte", test::idx_images(2, 3, 2));
  write("train-labels-idx1-ubyte", test::idx_labels({0, 1}));
  write("t10k-images-idx3-ubyte", test::idx_images(1, 3, 2));
  write("t10k-labels-idx1-ubyte", test::idx_labels({1}));
  const TrainTest from_idx = load_dataset_dir(dir_, {});
  EXPECT_EQ(from_idx.train_images, dir_ + "/train-images-idx3-ubyte");
  EXPECT_EQ(from_idx.train.n, 2);
}

TEST_F(NpyTest, FormatDetectionNamesTheFormatAndRefusesFlagsForAnother) {
  write_npy_dir({0, 1, 1}, {1});
  EXPECT_EQ(load_dataset_dir(dir_, {}).format, ".npy");
  DataOptions resize;
  resize.image_h = resize.image_w = 8;
  expect_mentions(error_of([&] { load_dataset_dir(dir_, resize); }), {"--image-size", dir_, ".npy", "drop it"});
  write("train-images-idx3-ubyte", test::idx_images(2, 3, 2));
  write("train-labels-idx1-ubyte", test::idx_labels({0, 1}));
  write("t10k-images-idx3-ubyte", test::idx_images(1, 3, 2));
  write("t10k-labels-idx1-ubyte", test::idx_labels({1}));
  EXPECT_EQ(load_dataset_dir(dir_, {}).format, "IDX");
  DataOptions nhwc;
  nhwc.channels_last = true;
  expect_mentions(error_of([&] { load_dataset_dir(dir_, nhwc); }), {"--channels-last", "IDX", "drop it"});
}

TEST_F(NpyTest, FormatDetectionListsTheThreeLayoutsWhenNoneIsThere) {
  write("README", {'h', 'i'});
  expect_mentions(error_of([&] { load_dataset_dir(dir_, {}); }),
                  {dir_, "no dataset found", "train-images-idx3-ubyte", "train_images.npy", "train/<class>"});
  expect_mentions(error_of([&] { load_dataset_dir(dir_ + "/nowhere", {}); }), {"missing data directory"});
}

TEST_F(NpyTest, SplitsFromNpyEqualSplitsFromIdx) {
  const Bytes train_labels = {0, 1, 2, 0, 1, 2, 0}, test_labels = {2, 1};
  write_npy_dir(train_labels, test_labels);
  write("idx/train-images-idx3-ubyte", test::idx_images(7, 3, 2));
  write("idx/train-labels-idx1-ubyte", test::idx_labels(train_labels));
  write("idx/t10k-images-idx3-ubyte", test::idx_images(2, 3, 2));
  write("idx/t10k-labels-idx1-ubyte", test::idx_labels(test_labels));
  const Splits a = load_splits(dir_ + "/idx", 2, 4), b = load_splits(dir_, DataOptions{}, 2, 4);
  for (auto [x, y] : {std::pair{&a.train, &b.train}, {&a.val, &b.val}, {&a.test, &b.test}}) {
    EXPECT_EQ(x->n, y->n);
    EXPECT_EQ(x->images, y->images);
    EXPECT_EQ(x->labels, y->labels);
    EXPECT_EQ(x->num_classes, y->num_classes);
  }
  EXPECT_EQ(b.train.n, 4);
  EXPECT_EQ(b.val.n, 2);
  // The split rules hold for every format: here, --val-size.
  expect_mentions(error_of([&] { load_splits(dir_, DataOptions{}, 7, 0); }),
                  {"--val-size", dir_ + "/train_images.npy"});
}

// ------------------------------------------------------------ real data

// Fashion-MNIST's IDX files (data/fetch.sh) converted to .npy here load byte-identical.
TEST_F(NpyTest, FashionMnistAsNpyEqualsItsIdx) {
  const std::string fashion = std::string(KD_SOURCE_DIR) + "/data/fashion";
  std::error_code ec;
  if (!fs::exists(fs::path(fashion) / "train-images-idx3-ubyte", ec) &&
      !fs::exists(fs::path(fashion) / "train-images-idx3-ubyte.gz", ec))
    GTEST_SKIP() << "no Fashion-MNIST in " << fashion << " (data/fetch.sh)";
  const TrainTest idx = load_idx_dir(fashion);
  for (const Dataset* d : {&idx.train, &idx.test}) {
    const bool train = d == &idx.train;
    const std::string n = std::to_string(d->n), side = std::to_string(d->h) + ", " + std::to_string(d->w);
    write(train ? kNpyTrainImages : kNpyTestImages, npy("|u1", "(" + n + ", " + side + ")", d->images));
    write(train ? kNpyTrainLabels : kNpyTestLabels, npy("|u1", "(" + n + ",)", d->labels));
  }
  const TrainTest from_npy = load_dataset_dir(dir_, {});
  EXPECT_EQ(from_npy.train.n, 60000);
  EXPECT_EQ(from_npy.train.images, idx.train.images);
  EXPECT_EQ(from_npy.train.labels, idx.train.labels);
  EXPECT_EQ(from_npy.test.images, idx.test.images);
  EXPECT_EQ(from_npy.test.labels, idx.test.labels);
  EXPECT_EQ(from_npy.train.num_classes, 10);

  // The test set again as float32 / 255 with int64 labels, as torchvision users save it.
  std::vector<float> f(idx.test.images.begin(), idx.test.images.end());
  for (float& v : f) v /= 255.0f;
  const std::string images = write("f32_images.npy", npy("<f4", "(10000, 28, 28)", le_bytes(f)));
  const std::string labels =
      write("i64_labels.npy",
            npy("<i8", "(10000,)", le_bytes(std::vector<int64_t>(idx.test.labels.begin(), idx.test.labels.end()))));
  const Dataset from_f32 = load_npy_pair(images, labels, false);
  EXPECT_EQ(from_f32.images, idx.test.images);
  EXPECT_EQ(from_f32.labels, idx.test.labels);
}

// numpy.save's own files, when a python3 with numpy is installed.
TEST_F(NpyTest, ReadsWhatNumpySaveWrites) {
  if (std::system("python3 -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 with numpy";
  const std::string script =
      "import numpy as np, sys; d = sys.argv[1]; "
      "x = (np.arange(2 * 3 * 4 * 3) % 256).astype(np.uint8).reshape(2, 3, 4, 3); "
      "np.save(d + '/nhwc.npy', x); np.save(d + '/f4.npy', x.astype('<f4') / 255); "
      "np.save(d + '/labels.npy', np.array([3, 0], dtype=np.int64)); "
      "np.save(d + '/nchw.npy', np.ascontiguousarray(x.transpose(0, 3, 1, 2)))";
  ASSERT_EQ(std::system(("python3 -c \"" + script + "\" " + dir_).c_str()), 0);
  const Dataset nhwc = load_npy_pair(dir_ + "/nhwc.npy", dir_ + "/labels.npy", true);
  const Dataset nchw = load_npy_pair(dir_ + "/nchw.npy", dir_ + "/labels.npy", false);
  EXPECT_EQ(nhwc.c, 3);
  EXPECT_EQ(nhwc.images, nchw.images);
  EXPECT_EQ(nhwc.labels, (Bytes{3, 0}));
  EXPECT_EQ(load_npy_pair(dir_ + "/f4.npy", dir_ + "/labels.npy", true).images, nchw.images);
}

}  // namespace
}  // namespace kd
