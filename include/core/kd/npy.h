// kd/npy.h: NumPy .npy files (format versions 1.0, 2.0, 3.0) as kdtrain datasets.
//
// A .npy file is the magic "\x93NUMPY", a version byte pair, a little-endian
// header length (u16 in 1.0, u32 in 2.0 and 3.0), a Python-dict header
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, H, W), }
// padded with spaces and ended by '\n', then the elements in C order.
//
// Images: dtype |u1, or <f4 with every value in [0, 1], quantised to u8 as
// round(v * 255) (half away from zero), so a float image is off by at most
// 0.5 / 255 = 1/510 from its value; u8 / 255.0 in float32 comes back exactly.
// Shape (N, H, W), (N, C, H, W), or (N, H, W, C) with channels_last, C = 1 or
// 3; channels-last images are transposed to (N, C, H, W).
// Labels: any integer dtype (|u1 |i1 <u2 <i2 <u4 <i4 <u8 <i8), shape (N),
// values in [0, 255].
// Big-endian data and Fortran order are refused with the astype / copy fix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/data.h"

namespace kd {

// The four files load_npy_dir reads.
constexpr const char* kNpyTrainImages = "train_images.npy";
constexpr const char* kNpyTrainLabels = "train_labels.npy";
constexpr const char* kNpyTestImages = "test_images.npy";
constexpr const char* kNpyTestLabels = "test_labels.npy";

// Parses .npy image bytes (see above). `what` names the source in errors.
// Returns a Dataset with images, n, c, h, w set and no labels.
Dataset parse_npy_images(const std::vector<uint8_t>& bytes, bool channels_last, const std::string& what);
// Parses .npy label bytes: (n) integers in [0, 255].
std::vector<uint8_t> parse_npy_labels(const std::vector<uint8_t>& bytes, const std::string& what);

// Loads and cross-checks an image file and a label file (counts must agree).
// num_classes = 1 + max label.
Dataset load_npy_pair(const std::string& images_path, const std::string& labels_path, bool channels_last);

// <dir>/{train,test}_{images,labels}.npy; train and test num_classes are both
// 1 + the max label over both sets.
TrainTest load_npy_dir(const std::string& dir, bool channels_last);

// A version 1.0 .npy file of u8 `values` with `shape` (C order).
std::vector<uint8_t> npy_bytes_u8(const std::vector<int64_t>& shape, const std::vector<uint8_t>& values);
// Writes <dir>/{train,test}_{images,labels}.npy from `data`, each file atomically
// (images (n, c, h, w) |u1, labels (n) |u1): what load_npy_dir reads back.
void save_npy_dir(const std::string& dir, const TrainTest& data);

}  // namespace kd
