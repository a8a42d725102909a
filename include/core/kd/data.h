// kd/data.h: MNIST-format (IDX) datasets held as compact u8 arrays.
//
// Files: <dir>/train-images-idx3-ubyte, train-labels-idx1-ubyte,
//        t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte
// each optionally gzip-compressed with a ".gz" suffix (plain file preferred).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kd {

// Normalisation applied after /255 (MNIST statistics, used for every dataset
// so that checkpoints record one fixed convention).
constexpr float kPixelMean = 0.1307f;
constexpr float kPixelStd = 0.3081f;

// A set of n images of h x w u8 pixels with one u8 label each.
struct Dataset {
  int64_t n = 0;
  int h = 0, w = 0;
  int num_classes = 0;           // 1 + max label over the file it came from
  std::vector<uint8_t> images;   // (n, h, w) row-major
  std::vector<uint8_t> labels;   // (n)

  int64_t pixels() const { return int64_t(h) * w; }
  // Rows [begin, begin + count) as a new dataset (same h, w, num_classes).
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

// The three splits of a run. train and val come from the training files
// (val = the last val_size images; train_limit > 0 keeps only the first
// train_limit images of what remains); test comes from the t10k files.
// num_classes is the max over train and test so all three agree.
struct Splits {
  Dataset train, val, test;
  int num_classes = 0;
};
Splits load_splits(const std::string& dir, int64_t val_size, int64_t train_limit);

// Finds <dir>/<base> or <dir>/<base>.gz; throws naming both when neither exists.
std::string find_idx_file(const std::string& dir, const std::string& base);

}  // namespace kd
