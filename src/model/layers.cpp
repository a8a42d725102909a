// The table of layer kinds (kd/layers.h): one row per kind with its usage,
// parser, shape rule, parameters, mask, view rule and ONNX node. The rows are
// in LayerKind order.
#include "kd/layers.h"

#include <iterator>
#include <limits>

#include "kd/arch.h"
#include "token_parser.h"

namespace kd {
namespace {

// ------------------------------------------------------------------ conv
// conv:OUT[:K[:STRIDE[:PAD]]]: 2-D convolution, K x K kernel (default 3), stride
// 1, padding 0; needs an unflattened input.
std::string parse_conv(const TokenParser& tp, Layer& layer) {
  tp.expect_args(1, 4, "conv:OUT[:K[:STRIDE[:PAD]]]");
  layer.out = tp.integer_arg(1, "conv output channels", 1, 0);
  layer.kernel = tp.integer_arg(2, "conv kernel size", 1, 3);
  layer.stride = tp.integer_arg(3, "conv stride", 1, 1);
  layer.pad = tp.integer_arg(4, "conv padding", 0, 0);
  std::string text = "conv:" + std::to_string(layer.out) + ":" + std::to_string(layer.kernel);
  if (layer.stride != 1 || layer.pad != 0) text += ":" + std::to_string(layer.stride);
  if (layer.pad != 0) text += ":" + std::to_string(layer.pad);
  return text;
}
Shape conv_shape(const TokenParser& tp, const Layer& layer) {
  const Shape in = layer.in;
  if (in.flat) tp.reject("conv needs a CxHxW input but the input is already flat (conv after flatten)");
  const auto extent = [&](int size) -> int64_t {
    const int64_t padded = int64_t(size) + 2 * int64_t(layer.pad);
    if (padded < layer.kernel) return 0;
    return (padded - layer.kernel) / layer.stride + 1;
  };
  const int64_t h = extent(in.h), w = extent(in.w);
  if (h < 1 || w < 1)
    tp.reject("spatial size shrinks below 1 (input " + shape_text(in) + ", kernel " + std::to_string(layer.kernel) +
              ", stride " + std::to_string(layer.stride) + ", padding " + std::to_string(layer.pad) +
              "); use padding, a smaller kernel or fewer layers");
  if (h > std::numeric_limits<int>::max() || w > std::numeric_limits<int>::max())
    tp.reject("padding makes the output too large");
  return Shape{layer.out, int(h), int(w), false};
}
std::vector<int64_t> conv_weight(const Layer& l) { return {l.out, l.in.c, l.kernel, l.kernel}; }
OnnxNode conv_onnx(const Layer& l) {
  // weight (out, in_c, k, k), bias (out): the state_dict layout ONNX Conv expects.
  return {"Conv",
          {{"kernel_shape", {l.kernel, l.kernel}},
           {"strides", {l.stride, l.stride}},
           {"pads", {l.pad, l.pad, l.pad, l.pad}}}};  // top, left, bottom, right
}

// ------------------------------------------------------------------ relu, flatten: no arguments
// relu: elementwise max(x, 0); flatten: (C, H, W) -> (C*H*W) in C, H, W order.
std::string parse_relu(const TokenParser& tp, Layer&) {
  tp.expect_args(0, 0, "relu with no arguments");
  return "relu";
}
Shape same_shape(const TokenParser&, const Layer& layer) { return layer.in; }
OnnxNode relu_onnx(const Layer&) { return {"Relu", {}}; }

std::string parse_flatten(const TokenParser& tp, Layer&) {
  tp.expect_args(0, 0, "flatten with no arguments");
  return "flatten";
}
Shape flatten_shape(const TokenParser& tp, const Layer& layer) {
  if (layer.in.flat) tp.reject("the input is already flat (a second flatten)");
  const int64_t features = layer.in.size();
  if (features > std::numeric_limits<int>::max())
    tp.reject(std::to_string(features) + " features after flatten is too many");
  return Shape{int(features), 1, 1, true};
}
// (N, C, H, W) -> (N, C*H*W), row-major, i.e. C, H, W order.
OnnxNode flatten_onnx(const Layer&) { return {"Flatten", {{"axis", {1}, true}}}; }

// ------------------------------------------------------------------ maxpool
// maxpool[:K]: K x K max pooling with stride K (default 2; only 2 is supported).
std::string parse_maxpool(const TokenParser& tp, Layer& layer) {
  tp.expect_args(0, 1, "maxpool or maxpool:2");
  layer.kernel = tp.integer_arg(1, "maxpool window", 1, 2);
  layer.stride = layer.kernel;
  if (layer.kernel != 2) tp.reject("only maxpool:2 is supported");
  return "maxpool:" + std::to_string(layer.kernel);
}
Shape maxpool_shape(const TokenParser& tp, const Layer& layer) {
  const Shape in = layer.in;
  if (in.flat) tp.reject("maxpool needs a CxHxW input but the input is already flat (maxpool after flatten)");
  if (in.h / layer.kernel < 1 || in.w / layer.kernel < 1)
    tp.reject("spatial size shrinks below 1 (input " + shape_text(in) + ", window " + std::to_string(layer.kernel) +
              "); use fewer pooling layers");
  return Shape{in.c, in.h / layer.kernel, in.w / layer.kernel, false};
}
// Window = stride = kernel, no padding, floor: kdtrain's and PyTorch's MaxPool2d(k).
OnnxNode maxpool_onnx(const Layer& l) {
  return {"MaxPool", {{"kernel_shape", {l.kernel, l.kernel}}, {"strides", {l.kernel, l.kernel}}}};
}

// ------------------------------------------------------------------ dropout
// dropout:P: inverted dropout with drop probability 0 <= P < 1.
std::string parse_dropout(const TokenParser& tp, Layer& layer) {
  tp.expect_args(1, 1, "dropout:P");
  layer.drop = tp.probability_arg(1);
  return "dropout:" + float_text(layer.drop);
}

// ------------------------------------------------------------------ dense
// dense:OUT: fully connected layer; needs a flattened input.
std::string parse_dense(const TokenParser& tp, Layer& layer) {
  tp.expect_args(1, 1, "dense:OUT");
  layer.out = tp.integer_arg(1, "dense width", 1, 0);
  return "dense:" + std::to_string(layer.out);
}
Shape dense_shape(const TokenParser& tp, const Layer& layer) {
  if (!layer.in.flat) tp.reject("dense needs a flatten before it (input is " + shape_text(layer.in) + ")");
  return Shape{layer.out, 1, 1, true};
}
std::vector<int64_t> dense_weight(const Layer& l) { return {l.out, l.in.c}; }  // nn.Linear stores [out, in]
// weight (out, in) is B transposed: Y = X * W^T + b.
OnnxNode dense_onnx(const Layer&) { return {"Gemm", {{"transB", {1}, true}}}; }

}  // namespace

constexpr LayerKindInfo kLayerKinds[] = {
    // kind, token, usage; parse, shape; parameter prefix, weight shape; mask, view, ONNX node
    {LayerKind::Conv, "conv", "conv:OUT[:K[:STRIDE[:PAD]]]",  //
     parse_conv, conv_shape, "conv", conv_weight, false, ViewRule::Never, conv_onnx},
    {LayerKind::Relu, "relu", "relu",  //
     parse_relu, same_shape, nullptr, nullptr, false, ViewRule::Never, relu_onnx},
    {LayerKind::MaxPool, "maxpool", "maxpool[:2]",  //
     parse_maxpool, maxpool_shape, nullptr, nullptr, true, ViewRule::Never, maxpool_onnx},
    {LayerKind::Dropout, "dropout", "dropout:P",  //
     parse_dropout, same_shape, nullptr, nullptr, true, ViewRule::InInference, nullptr},
    {LayerKind::Flatten, "flatten", "flatten",  //
     parse_flatten, flatten_shape, nullptr, nullptr, false, ViewRule::Always, flatten_onnx},
    {LayerKind::Dense, "dense", "dense:OUT",  //
     parse_dense, dense_shape, "fc", dense_weight, false, ViewRule::Never, dense_onnx},
};

static_assert(std::size(kLayerKinds) == kLayerKindCount, "one row per LayerKind");
constexpr bool rows_in_kind_order() {
  for (size_t i = 0; i < kLayerKindCount; ++i)
    if (kLayerKinds[i].kind != LayerKind(i)) return false;
  return true;
}
static_assert(rows_in_kind_order(), "kLayerKinds rows must follow LayerKind's order");

const LayerKindInfo& layer_info(LayerKind kind) { return kLayerKinds[size_t(kind)]; }

const LayerKindInfo* find_layer_kind(const std::string& token) {
  for (const LayerKindInfo& info : kLayerKinds)
    if (token == info.token) return &info;
  return nullptr;
}

const char* layer_kind_name(LayerKind kind) { return layer_info(kind).token; }

namespace {
// Every row's `field`, comma-separated in LayerKind order.
std::string joined(const char* LayerKindInfo::*field) {
  std::string out;
  for (const LayerKindInfo& info : kLayerKinds) out += (out.empty() ? "" : ", ") + std::string(info.*field);
  return out;
}
}  // namespace

std::string layer_token_list() { return joined(&LayerKindInfo::token); }
std::string layer_usage_list() { return joined(&LayerKindInfo::usage); }

}  // namespace kd
