// kd/layers.h: the table of layer kinds. One row per kind holds everything
// about the kind that is the same on every engine: its grammar token, usage
// (for --help) and normalised text, shape inference, its parameter tensors
// (PyTorch names, shapes; init is PyTorch's default from the fan-in they
// imply), whether it keeps a per-element mask for its backward pass, whether
// its output is its input's buffer, and its ONNX node.
//
// The arch parser (arch.cpp), the parameter views and init (params.cpp), the
// engines' shared buffer plan (layer_plan.cpp), the ONNX export and the GPU
// engine's parameter layout read this table; each engine's layer loop then
// switches over LayerKind for the arithmetic, one switch per direction in one
// file per engine (src/cpu/cpu_model.cpp, src/gpu/cuda_network.cu: forward
// and backward), compiled with -Werror=switch so a new kind cannot be
// half-wired. docs/architecture.md "Adding a layer kind" lists the files a
// new kind touches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kd {

enum class LayerKind { Conv, Relu, MaxPool, Dropout, Flatten, Dense };
// Rows in the table; kept equal to the last kind + 1, and the table's size is
// checked against it at compile time.
constexpr size_t kLayerKindCount = size_t(LayerKind::Dense) + 1;

struct Layer;
struct Shape;
class TokenParser;  // src/model/token_parser.h

// One integer-list attribute of an ONNX node ("kernel_shape", {3, 3}); a
// scalar INT attribute when `scalar` (then ints holds one value).
struct OnnxAttribute {
  const char* name;
  std::vector<int64_t> ints;
  bool scalar = false;
};
// The ONNX node a layer exports as (opset 13). Its inputs are the previous
// output, then `<name>.weight` and `<name>.bias` for a layer with parameters.
struct OnnxNode {
  const char* op;
  std::vector<OnnxAttribute> attributes;
};

// When a layer's output is its input's buffer, so that it computes and stores
// nothing of its own: never; always (flatten: NCHW is already in flatten
// order); or in inference only (dropout: the identity there). A ReLU fused
// into the conv or dense layer before it is a view too (kd/layer_plan.h).
enum class ViewRule { Never, Always, InInference };

struct LayerKindInfo {
  LayerKind kind;
  const char* token;  // the grammar name, "conv"
  const char* usage;  // the token with its arguments, for --help: "conv:OUT[:K[:STRIDE[:PAD]]]"
  // Reads the token's arguments into `layer` (rejecting bad ones through the
  // parser) and returns the layer's normalised text ("conv:32:3").
  std::string (*parse)(const TokenParser& token, Layer& layer);
  // The per-sample output shape for layer.in, or a rejection naming the token.
  Shape (*infer_shape)(const TokenParser& token, const Layer& layer);
  // Parameters: PyTorch attribute prefix ("conv" -> conv1, conv2, ...; null
  // for none) and the weight's state_dict shape; the bias is [out].
  const char* param_prefix;
  std::vector<int64_t> (*weight_shape)(const Layer& layer);
  // Keeps one byte per output element for its backward pass (dropout's keep
  // mask, max-pool's argmax).
  bool needs_mask;
  ViewRule view;
  // Its ONNX node; null when the layer is the identity at inference (dropout).
  OnnxNode (*onnx_node)(const Layer& layer);
};

const LayerKindInfo& layer_info(LayerKind kind);
// The kind whose token is `token`, or null.
const LayerKindInfo* find_layer_kind(const std::string& token);
const char* layer_kind_name(LayerKind kind);
// "conv, relu, maxpool, dropout, flatten, dense": for messages.
std::string layer_token_list();
// "conv:OUT[:K[:STRIDE[:PAD]]], relu, maxpool[:2], ...": every kind's usage, for --help.
std::string layer_usage_list();

}  // namespace kd
