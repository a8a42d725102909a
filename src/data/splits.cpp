// Train / validation / test splits of an MNIST-format directory (see kd/data.h).
#include <algorithm>

#include "kd/data.h"
#include "kd/error.h"

namespace kd {
namespace {

std::string size_text(const Dataset& d) { return std::to_string(d.h) + "x" + std::to_string(d.w); }

}  // namespace

Dataset Dataset::slice(int64_t begin, int64_t count) const {
  if (begin < 0 || count < 0 || begin > n || count > n - begin)
    fail("Dataset::slice: rows [" + std::to_string(begin) + ", " + std::to_string(begin) + " + " +
         std::to_string(count) + ") are outside the " + std::to_string(n) + " rows of the dataset");
  Dataset out;
  out.n = count;
  out.h = h;
  out.w = w;
  out.num_classes = num_classes;
  const auto first_pixel = images.begin() + begin * pixels();
  out.images.assign(first_pixel, first_pixel + count * pixels());
  out.labels.assign(labels.begin() + begin, labels.begin() + begin + count);
  return out;
}

Splits load_splits(const std::string& dir, int64_t val_size, int64_t train_limit) {
  if (val_size < 0) fail("--val-size must be >= 0 (got " + std::to_string(val_size) + ")");
  if (train_limit < 0) fail("--train-limit must be >= 0, 0 meaning all (got " + std::to_string(train_limit) + ")");

  const std::string train_images = find_idx_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_idx_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_idx_file(dir, "t10k-labels-idx1-ubyte");
  const Dataset train_file = load_idx_pair(train_images, train_labels);
  if (val_size >= train_file.n)
    fail("--val-size " + std::to_string(val_size) + " must be smaller than the " + std::to_string(train_file.n) +
         " images in " + train_images + " so that some remain for training");

  Splits s;
  s.test = load_idx_pair(test_images, test_labels);
  if (s.test.h != train_file.h || s.test.w != train_file.w)
    fail(test_images + ": images are " + size_text(s.test) + " but the training images in " + train_images +
         " are " + size_text(train_file) + "; both files must hold images of one size");
  // A class the model never trains on cannot be scored fairly; a test label
  // past the training classes means the two files do not belong together.
  if (s.test.num_classes > train_file.num_classes) {
    const auto bad = std::find_if(s.test.labels.begin(), s.test.labels.end(),
                                  [&](uint8_t y) { return y >= train_file.num_classes; });
    fail(test_labels + ": label " + std::to_string(*bad) + " at index " + std::to_string(bad - s.test.labels.begin()) +
         " is outside the " + std::to_string(train_file.num_classes) + " classes (0.." +
         std::to_string(train_file.num_classes - 1) + ") of the training labels in " + train_labels +
         "; do the test and training files come from the same dataset?");
  }
  s.num_classes = std::max(train_file.num_classes, s.test.num_classes);

  // The validation split is the tail of the training file, so it does not
  // move with --train-limit; a limit above what remains keeps all of it.
  const int64_t remaining = train_file.n - val_size;
  s.val = train_file.slice(remaining, val_size);
  s.train = train_file.slice(0, train_limit > 0 ? std::min(train_limit, remaining) : remaining);
  s.train.num_classes = s.val.num_classes = s.test.num_classes = s.num_classes;
  return s;
}

}  // namespace kd
