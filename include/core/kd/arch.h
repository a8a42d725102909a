// kd/arch.h: architecture strings -> a checked layer list with shapes.
//
// Grammar: comma-separated layer tokens, whitespace ignored. Each kind's token,
// arguments and meaning are its row in the table of layer kinds (kd/layers.h,
// src/model/layers.cpp); `kdtrain --help` lists them.
// The last layer with parameters must be a dense layer whose OUT equals the
// number of classes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/layers.h"

namespace kd {

constexpr const char* kDefaultTeacherArch =
    "conv:32:3,relu,conv:64:3,relu,maxpool:2,dropout:0.25,flatten,dense:128,relu,dropout:0.5,dense:10";
constexpr const char* kDefaultStudentArch = "flatten,dense:256,relu,dense:128,relu,dense:10";

// Per-sample activation shape. After flatten: c = features, h = w = 1, flat = true.
struct Shape {
  int c = 0, h = 0, w = 0;
  bool flat = false;
  int64_t size() const { return int64_t(c) * h * w; }
  bool operator==(const Shape& o) const { return c == o.c && h == o.h && w == o.w && flat == o.flat; }
};

struct Layer {
  LayerKind kind;
  std::string token;    // the token as written, for messages
  int out = 0;          // conv: out channels; dense: out features
  int kernel = 0;       // conv / maxpool window
  int stride = 1;       // conv stride (maxpool stride = kernel)
  int pad = 0;          // conv zero padding
  float drop = 0.0f;    // dropout probability
  Shape in, out_shape;  // per-sample shapes
  // Parameters (conv and dense only), PyTorch state_dict naming and layout:
  //   conv:  <name>.weight [out, in_c, k, k], <name>.bias [out]
  //   dense: <name>.weight [out, in],         <name>.bias [out]
  std::string name;  // "conv1", "conv2", ... / "fc1", "fc2", ... ; empty otherwise
  int64_t weight_count = 0, bias_count = 0;
  int64_t param_offset = 0;  // offset of <name>.weight in the flat parameter buffer; bias follows it
  int64_t param_count() const { return weight_count + bias_count; }
  int64_t fan_in() const;  // in_c * k * k for conv, in features for dense
};

struct Arch {
  std::string text;  // normalised arch string
  Shape input, output;
  std::vector<Layer> layers;
  int64_t param_count = 0;  // total parameters (floats)
  bool has_conv() const;
  bool has_dropout() const;
};

// The default teacher and student (the strings above, written for 1x28x28
// MNIST) made to fit `input` and `num_classes`: the last dense layer gets one
// output per class, and the teacher gets one more maxpool:2 after its first
// for as long as its flattened features exceed MNIST's 9,216 (64x12x12), so
// its fc1 stays at MNIST's size or below (3x32x32: 64x7x7 = 3,136 features)
// and it builds for any image of at least 6x6. For 1x28x28 and 10 classes
// they are the strings above, unchanged. Any other text is returned as is.
std::string adapt_default_arch(const std::string& text, Shape input, int num_classes);

// Parses `text` for per-sample input shape (c, h, w) and num_classes.
// Throws kd::Error("--<flag_name>: token N 'tok': <why>") on any problem:
// unknown layer, missing/bad width, conv after flatten, dense without flatten,
// spatial size below 1, output width != num_classes, no parameterised layer.
Arch parse_arch(const std::string& text, Shape input, int num_classes, const std::string& flag_name);

}  // namespace kd
