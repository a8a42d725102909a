// Train / validation / test splits of a data directory (see kd/data.h).
#include <algorithm>
#include <filesystem>

#include "kd/data.h"
#include "kd/error.h"
#include "kd/image_folder.h"
#include "kd/npy.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// Checked before any file is read, so a bad flag is reported first.
void check_split_flags(int64_t val_size, int64_t train_limit) {
  if (val_size < 0) fail("--val-size must be >= 0 (got " + std::to_string(val_size) + ")");
  if (train_limit < 0) fail("--train-limit must be >= 0, 0 meaning all (got " + std::to_string(train_limit) + ")");
}

// An image folder lists its images class by class, and the validation split
// is the tail of the training images: left so, it would hold only the last
// classes, which training would never see. The images are dealt out by class
// instead: the first of every class (in class order), then the second, ...
// A set already in that order (equal classes, labels 0, 1, 2, ... repeating) is unchanged.
Dataset interleave_classes(const Dataset& d) {
  std::vector<std::vector<int64_t>> by_class(size_t(d.num_classes));
  for (int64_t i = 0; i < d.n; ++i) by_class[d.labels[size_t(i)]].push_back(i);
  Dataset out = d;
  int64_t next = 0;
  for (size_t k = 0; next < d.n; ++k)
    for (const std::vector<int64_t>& rows : by_class) {
      if (k >= rows.size()) continue;
      std::copy_n(d.images.begin() + rows[k] * d.values_per_image(), d.values_per_image(),
                  out.images.begin() + next * d.values_per_image());
      out.labels[size_t(next++)] = d.labels[size_t(rows[k])];
    }
  return out;
}

}  // namespace

std::string Dataset::size_text() const {
  return (c == 1 ? "" : std::to_string(c) + "x") + std::to_string(h) + "x" + std::to_string(w);
}

Dataset Dataset::slice(int64_t begin, int64_t count) const {
  if (begin < 0 || count < 0 || begin > n || count > n - begin)
    fail("Dataset::slice: rows [" + std::to_string(begin) + ", " + std::to_string(begin) + " + " +
         std::to_string(count) + ") are outside the " + std::to_string(n) + " rows of the dataset");
  Dataset out;
  out.n = count;
  out.c = c;
  out.h = h;
  out.w = w;
  out.num_classes = num_classes;
  const auto first_value = images.begin() + begin * values_per_image();
  out.images.assign(first_value, first_value + count * values_per_image());
  out.labels.assign(labels.begin() + begin, labels.begin() + begin + count);
  return out;
}

TrainTest load_idx_dir(const std::string& dir) {
  TrainTest t;
  t.train_images = find_idx_file(dir, "train-images-idx3-ubyte");
  t.train_labels = find_idx_file(dir, "train-labels-idx1-ubyte");
  t.test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  t.test_labels = find_idx_file(dir, "t10k-labels-idx1-ubyte");
  t.train = load_idx_pair(t.train_images, t.train_labels);
  t.test = load_idx_pair(t.test_images, t.test_labels);
  return t;
}

TrainTest load_dataset_dir(const std::string& dir, const DataOptions& options) {
  std::error_code ec;
  const fs::path root(dir);
  const auto labelled = [](TrainTest t, const char* format) {
    t.format = format;
    return t;
  };
  // An option that the detected format has no use for is refused, not
  // ignored: the user meant it for data that is not there.
  const auto refuse = [&](bool given, const char* flag, const char* format, const char* only) {
    if (given)
      fail(std::string(flag) + ": " + dir + " holds " + format + " files; the flag applies to " + only +
           " only, drop it");
  };
  const bool channels_last = options.channels_last, resize = options.image_h > 0;
  if (fs::exists(root / "train-images-idx3-ubyte", ec) || fs::exists(root / "train-images-idx3-ubyte.gz", ec)) {
    refuse(channels_last, "--channels-last", "IDX", ".npy data");
    refuse(resize, "--image-size", "IDX", "image folders");
    return labelled(load_idx_dir(dir), "IDX");
  }
  if (fs::exists(root / "train_images.npy", ec)) {
    refuse(resize, "--image-size", ".npy", "image folders");
    return labelled(load_npy_dir(dir, channels_last), ".npy");
  }
  if (fs::is_directory(root / "train", ec)) {
    refuse(channels_last, "--channels-last", "image", ".npy data");
    TrainTest t = load_image_folder(dir, options).data;
    t.train = interleave_classes(t.train);
    return labelled(std::move(t), "image folder");
  }
  if (!fs::is_directory(root, ec)) fail(dir + ": missing data directory; run data/fetch.sh or pass --data DIR");
  fail(dir +
       ": no dataset found: expected IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte, "
       "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), or NumPy files (train_images.npy, "
       "train_labels.npy, test_images.npy, test_labels.npy), or an image folder (train/<class>/*.png|jpg|bmp, "
       "test/<class>/*)");
}

Splits split_train_test(TrainTest data, int64_t val_size, int64_t train_limit) {
  check_split_flags(val_size, train_limit);
  const Dataset& train_file = data.train;
  if (val_size >= train_file.n)
    fail("--val-size " + std::to_string(val_size) + " must be smaller than the " + std::to_string(train_file.n) +
         " images in " + data.train_images + " so that some remain for training");

  Splits s;
  s.test = std::move(data.test);
  if (s.test.c != train_file.c || s.test.h != train_file.h || s.test.w != train_file.w)
    fail(data.test_images + ": images are " + s.test.size_text() + " but the training images in " + data.train_images +
         " are " + train_file.size_text() + "; both must hold images of one size");
  // A class the model never trains on cannot be scored fairly; a test label
  // past the training classes means the two files do not belong together.
  if (s.test.num_classes > train_file.num_classes) {
    const auto bad = std::find_if(s.test.labels.begin(), s.test.labels.end(),
                                  [&](uint8_t y) { return y >= train_file.num_classes; });
    fail(data.test_labels + ": label " + std::to_string(*bad) + " at index " +
         std::to_string(bad - s.test.labels.begin()) + " is outside the " + std::to_string(train_file.num_classes) +
         " classes (0.." + std::to_string(train_file.num_classes - 1) + ") of the training labels in " +
         data.train_labels + "; do the test and training files come from the same dataset?");
  }
  s.num_classes = std::max(train_file.num_classes, s.test.num_classes);
  s.class_names = std::move(data.class_names);
  s.format = std::move(data.format);
  s.note = std::move(data.note);

  // The validation split is the tail of the training file, so it does not
  // move with --train-limit; a limit above what remains keeps all of it.
  const int64_t remaining = train_file.n - val_size;
  s.val = train_file.slice(remaining, val_size);
  s.train = train_file.slice(0, train_limit > 0 ? std::min(train_limit, remaining) : remaining);
  s.train.num_classes = s.val.num_classes = s.test.num_classes = s.num_classes;
  return s;
}

Splits load_splits(const std::string& dir, int64_t val_size, int64_t train_limit) {
  check_split_flags(val_size, train_limit);
  return split_train_test(load_idx_dir(dir), val_size, train_limit);
}

Splits load_splits(const std::string& dir, const DataOptions& options, int64_t val_size, int64_t train_limit) {
  check_split_flags(val_size, train_limit);
  return split_train_test(load_dataset_dir(dir, options), val_size, train_limit);
}

}  // namespace kd
