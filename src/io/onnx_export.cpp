// ONNX export of a kdtrain model (see kd/onnx_export.h for the graph).
//
// The ModelProto is built with the protobuf classes generated from ONNX's own
// schema (onnx/onnx-ml.proto, Debian's libonnx-dev), then checked with ONNX's
// checker and strict shape inference, so a malformed graph fails here and not
// in whatever runtime loads the file.
#include "kd/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cstdio>
#include <exception>
#include <filesystem>

#include "kd/safetensors.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/model_io.h"

namespace kd {
namespace {

// IR version 8 (ONNX 1.12's own): opset 13 needs >= 7; ONNX Runtime >= 1.10 reads 8.
constexpr int64_t kIrVersion = 8;
constexpr const char* kInputConvention =
    "float32 (N, C, H, W) raw pixel values 0..255 (the u8 image cast to float, not scaled)";

// A float tensor `name` of `shape` holding `data` (little-endian raw_data).
void set_float_tensor(onnx::TensorProto* t, const std::string& name, const std::vector<int64_t>& shape,
                      const float* data) {
  t->set_name(name);
  t->set_data_type(onnx::TensorProto_DataType_FLOAT);
  int64_t n = 1;
  for (int64_t d : shape) {
    t->add_dims(d);
    n *= d;
  }
  // raw_data is little-endian by the ONNX spec, which is this host's order (x86-64/arm64).
  t->set_raw_data(std::string(reinterpret_cast<const char*>(data), size_t(n) * sizeof(float)));
}

// value_info for a float32 tensor (N, dims...) with a symbolic batch dimension.
void set_batched_float_type(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
  v->set_name(name);
  onnx::TypeProto_Tensor* tensor = v->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  onnx::TensorShapeProto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param("N");
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

void add_ints(onnx::NodeProto* node, const char* name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t v : values) a->add_ints(v);
}

void add_int(onnx::NodeProto* node, const char* name, int64_t value) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(value);
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs, const std::string& output) {
  onnx::NodeProto* node = g->add_node();
  node->set_op_type(op);
  node->set_name(name);
  for (const std::string& in : inputs) node->add_input(in);
  node->add_output(output);
  return node;
}

// Builds the graph; see the header for its shape.
onnx::ModelProto build_model(const Arch& arch, const std::vector<float>& params, const Normalization& norm,
                             const std::map<std::string, std::string>& metadata) {
  onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("kdtrain");
  model.set_producer_version("0.1");
  model.set_doc_string("kdtrain model '" + arch.text + "'. Input '" + kOnnxInputName + "': " + kInputConvention +
                       "; the normalisation is part of the graph. Output '" + kOnnxOutputName +
                       "': float32 (N, classes) logits (no softmax).");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);

  std::map<std::string, std::string> props = metadata;
  props["arch"] = arch.text;
  props["input"] =
      std::to_string(arch.input.c) + "x" + std::to_string(arch.input.h) + "x" + std::to_string(arch.input.w);
  props["classes"] = std::to_string(arch.output.size());
  props["input_name"] = kOnnxInputName;
  props["input_format"] = kInputConvention;
  props["normalisation"] =
      "folded into the graph: x = (pixels / 255 - mean[c]) / std[c], mean/std = " + normalization_text(norm);
  props["output_name"] = kOnnxOutputName;
  props["output_format"] = "float32 (N, classes) logits; argmax is the predicted class";
  for (const auto& [key, value] : props) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  }

  onnx::GraphProto* g = model.mutable_graph();
  g->set_name("kdtrain");
  set_batched_float_type(g->add_input(), kOnnxInputName, {arch.input.c, arch.input.h, arch.input.w});

  // Normalisation as kdtrain's batch gather does it: (pixel / 255 - mean[c]) / std[c],
  // mean and std shaped (1, C, 1, 1) to broadcast over (N, C, H, W).
  if (norm.c != 1 && norm.c != arch.input.c)
    fail("ONNX export: the normalisation has " + std::to_string(norm.c) + " channels, the model takes " +
         std::to_string(arch.input.c));
  const float scale = 255.0f;
  set_float_tensor(g->add_initializer(), "normalise.scale", {}, &scale);
  set_float_tensor(g->add_initializer(), "normalise.mean", {1, norm.c, 1, 1}, norm.mean);
  set_float_tensor(g->add_initializer(), "normalise.std", {1, norm.c, 1, 1}, norm.std);
  add_node(g, "Div", "normalise_scale", {kOnnxInputName, "normalise.scale"}, "normalise_scaled");
  add_node(g, "Sub", "normalise_centre", {"normalise_scaled", "normalise.mean"}, "normalise_centred");
  add_node(g, "Div", "normalise_std", {"normalise_centred", "normalise.std"}, "normalised");

  std::string x = "normalised";
  // The last node's output is renamed to "logits"; a layer that is the
  // identity at inference (dropout) adds no node.
  std::vector<size_t> emitted;  // indices of layers that produce a node
  for (size_t i = 0; i < arch.layers.size(); ++i)
    if (layer_info(arch.layers[i].kind).onnx_node) emitted.push_back(i);
  for (size_t e = 0; e < emitted.size(); ++e) {
    const Layer& l = arch.layers[emitted[e]];
    const LayerKindInfo& info = layer_info(l.kind);
    const std::string node_name = "layer" + std::to_string(emitted[e] + 1) + "_" + info.token;
    const std::string out = e + 1 == emitted.size() ? kOnnxOutputName : node_name;
    std::vector<std::string> inputs = {x};
    if (info.param_prefix) {  // weight and bias as initializers, in their state_dict layouts
      const float* w = params.data() + l.param_offset;
      set_float_tensor(g->add_initializer(), l.name + ".weight", info.weight_shape(l), w);
      set_float_tensor(g->add_initializer(), l.name + ".bias", {l.out}, w + l.weight_count);
      inputs.push_back(l.name + ".weight");
      inputs.push_back(l.name + ".bias");
    }
    const OnnxNode spec = info.onnx_node(l);
    onnx::NodeProto* node = add_node(g, spec.op, node_name, inputs, out);
    for (const OnnxAttribute& a : spec.attributes) {
      if (a.scalar) add_int(node, a.name, a.ints.at(0));
      else add_ints(node, a.name, a.ints);
    }
    x = out;
  }
  set_batched_float_type(g->add_output(), kOnnxOutputName, {arch.output.size()});
  return model;
}

// ONNX's checker and strict shape inference on the finished model: every node
// valid for opset 13, every shape consistent, and the inferred output shape
// (N, classes). A failure is a bug in the exporter, reported as such.
void check_model(const onnx::ModelProto& model, const Arch& arch) {
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1));
  } catch (const std::exception& e) {
    std::string why = e.what();
    for (char& ch : why)
      if (ch == '\n') ch = ' ';
    fail("ONNX export of '" + arch.text + "' fails ONNX's own checks (an exporter bug, please report): " + why);
  }
}

}  // namespace

std::string onnx_model_bytes(const Arch& arch, const std::vector<float>& params, const Normalization& norm,
                             const std::map<std::string, std::string>& metadata) {
  if (int64_t(params.size()) != arch.param_count)
    fail("ONNX export: " + std::to_string(params.size()) + " parameters given for '" + arch.text + "', which has " +
         std::to_string(arch.param_count));
  const onnx::ModelProto model = build_model(arch, params, norm, metadata);
  check_model(model, arch);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail("ONNX export of '" + arch.text + "': protobuf serialisation failed");
  return bytes;
}

void export_onnx(const std::string& path, const Arch& arch, const std::vector<float>& params, const Normalization& norm,
                 const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, onnx_model_bytes(arch, params, norm, metadata));
}

void export_model_file(const std::string& model_path, const std::string& onnx_path, bool quiet) {
  namespace fs = std::filesystem;
  // The output's place is checked before the model is read, so a typo costs nothing.
  const fs::path out(onnx_path);
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::error_code ec;
  if (fs::is_directory(out, ec))
    fail("--onnx: " + onnx_path + " is a directory; name the file, e.g. " + (out / "model.onnx").string());
  if (!fs::is_directory(dir, ec))
    fail("--onnx: cannot write " + onnx_path + ": directory " + dir.string() + " does not exist");
  const ModelFile model = load_model_file(model_path);
  try {
    export_onnx(onnx_path, model.arch, model.params, *saved_normalization(model.metadata, model_path), model.metadata);
  } catch (const Error& e) {
    fail(std::string("--onnx: ") + e.what());
  }
  if (quiet) return;
  const Shape& in = model.arch.input;
  std::printf(
      "wrote %s (ONNX opset %d, %lld parameters): input '%s' float32 [N,%d,%d,%d] pixel values 0..255 "
      "(normalisation folded in), output '%s' float32 [N,%lld] logits\n",
      onnx_path.c_str(), kOnnxOpset, (long long)model.arch.param_count, kOnnxInputName, in.c, in.h, in.w,
      kOnnxOutputName, (long long)model.arch.output.size());
}

}  // namespace kd
