// kd/data.h: datasets held as compact u8 arrays, the IDX (MNIST) reader, and
// the train / validation / test splits of a data directory in any format.
//
// IDX files: <dir>/train-images-idx3-ubyte, train-labels-idx1-ubyte,
//            t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte
// each optionally gzip-compressed with a ".gz" suffix (plain file preferred).
// The other formats: kd/npy.h (NumPy .npy files), kd/image_folder.h
// (torchvision's ImageFolder tree); load_dataset_dir picks one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/normalize.h"

namespace kd {

// A set of n images of c x h x w u8 values with one u8 label each.
struct Dataset {
  int64_t n = 0;
  int c = 1;  // channels: 1 (grey) or 3 (RGB)
  int h = 0, w = 0;
  int num_classes = 0;          // 1 + max label over the file(s) it came from; class folders for ImageFolder
  std::vector<uint8_t> images;  // (n, c, h, w) row-major
  std::vector<uint8_t> labels;  // (n)

  // Values of one channel plane (h * w); values_per_image() is the stride
  // from one image to the next in `images`.
  int64_t pixels() const { return int64_t(h) * w; }
  int64_t values_per_image() const { return int64_t(c) * h * w; }
  // "28x28" for one channel (as MNIST is described), "3x32x32" otherwise.
  std::string size_text() const;
  // Rows [begin, begin + count) as a new dataset (same c, h, w, num_classes).
  Dataset slice(int64_t begin, int64_t count) const;
};

// Reads a whole file, transparently gunzipping when it starts with the gzip
// magic. Throws kd::Error naming the path on any failure.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path);

// Parses IDX image bytes (magic 2051, rank 3, u8). `what` names the source in
// errors. Returns a Dataset with images, n, h, w set and no labels.
Dataset parse_idx_images(const std::vector<uint8_t>& bytes, const std::string& what);
// Parses IDX label bytes (magic 2049, rank 1, u8).
std::vector<uint8_t> parse_idx_labels(const std::vector<uint8_t>& bytes, const std::string& what);

// Loads and cross-checks an image file and a label file (counts must agree,
// at least one image). num_classes = 1 + max label.
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path);

// Gives `d` (images read from images_path) the labels read from labels_path:
// the counts must agree; sets num_classes = 1 + max label. Every format's
// image/label pair goes through this check.
void attach_labels(Dataset& d, std::vector<uint8_t> labels, const std::string& images_path,
                   const std::string& labels_path);

// The three splits of a run. train and val come from the training files
// (val = the last val_size images; train_limit > 0 keeps only the first
// train_limit images of what remains); test comes from the t10k files.
// num_classes is the max over train and test so all three agree.
struct Splits {
  Dataset train, val, test;
  int num_classes = 0;
  std::vector<std::string> class_names;  // index = label; empty unless the format names classes
  std::string format;                    // TrainTest::format
  std::string note;                      // TrainTest::note
  // What the engines apply to every split's pixels; the loader leaves the
  // default, the session chooses it (kdtrain --normalize).
  Normalization normalization;
};
// IDX files only (the layout above).
Splits load_splits(const std::string& dir, int64_t val_size, int64_t train_limit);

// A directory's training and test sets before splitting, with where each
// came from so that errors can name the files.
struct TrainTest {
  Dataset train, test;
  std::string train_images, train_labels, test_images, test_labels;  // paths, for errors
  std::vector<std::string> class_names;                              // index = label; ImageFolder only
  std::string format;  // "IDX", ".npy" or "image folder" (load_dataset_dir sets it)
  std::string note;    // one line for the user, or "" (ImageFolder: why its cache could not be written)
};

// How to read the non-IDX formats.
struct DataOptions {
  bool channels_last = false;    // .npy images are (N, H, W, C), transposed to (N, C, H, W)
  int image_h = 0, image_w = 0;  // ImageFolder: resize every image to image_h x image_w (0: keep, one size)
  int threads = 0;               // ImageFolder decoding threads (0: one per hardware thread)
};

// Reads <dir> in whichever layout it holds: IDX files when
// train-images-idx3-ubyte(.gz) is there, else .npy files when
// train_images.npy is there (kd/npy.h), else an ImageFolder tree when
// train/ is there (kd/image_folder.h), its training images dealt out by
// class (the first image of every class, then the second, ...) so that the
// validation split, the tail, holds every class; else an error listing all three.
// An option for another format (channels_last, image_h) is refused.
// Each image/label pair is cross-checked; train against test is
// split_train_test's check.
TrainTest load_dataset_dir(const std::string& dir, const DataOptions& options);
// The four IDX files of <dir> (train, t10k), each pair cross-checked.
TrainTest load_idx_dir(const std::string& dir);

// load_splits for any layout load_dataset_dir reads.
Splits load_splits(const std::string& dir, const DataOptions& options, int64_t val_size, int64_t train_limit);
// The split rules of load_splits applied to a loaded directory (test images
// the same shape as the training images, test labels within its classes).
Splits split_train_test(TrainTest data, int64_t val_size, int64_t train_limit);

// The per-channel mean and (population) standard deviation of pixel / 255
// over every image of `d`, accumulated in double and rounded to float. A
// constant channel gets std 1, so it normalises to a constant, not to inf.
Normalization normalization_of(const Dataset& d);
// "0.1307/0.3081", "0.49,0.48,0.45/0.25,0.24,0.26": the --normalize syntax,
// each value printed so that it reads back as the same float.
std::string normalization_text(const Normalization& n);
// Parses normalization_text's syntax: MEAN[,MEAN...]/STD[,STD...], as many
// means as stds, 1 to kMaxChannels of each, every std > 0, all finite.
// Throws kd::Error starting with `what` (a flag or a file's metadata key).
Normalization parse_normalization(const std::string& text, const std::string& what);
// Throws unless s.normalization has one mean and std per channel of s's
// images: the engines gather s.normalization.c planes per image.
void check_normalization(const Splits& s);

// Finds <dir>/<base> or <dir>/<base>.gz; throws naming both when neither exists.
std::string find_idx_file(const std::string& dir, const std::string& base);

}  // namespace kd
