// kd/onnx_export.h: a kdtrain model (Arch + flat parameters) as an ONNX model
// for deployment, written with protobuf and ONNX's own schema (libonnx-dev).
//
// The graph, opset 13:
//   input  "pixels": float32 (N, C, H, W), raw pixel values 0..255 (u8 cast to
//                    float, no scaling by the caller); N is dynamic
//   Div 255, Sub mean, Div std   the normalisation, folded in: mean and std
//                                (1, C, 1, 1), or (1, 1, 1, 1) for one value for all channels
//   conv -> Conv (pads, strides), relu -> Relu, maxpool -> MaxPool (2x2,
//   stride 2, floor), flatten -> Flatten(axis 1: C, H, W order as PyTorch),
//   dense -> Gemm(transB = 1); dropout is the identity at inference: omitted
//   output "logits": float32 (N, classes)
// Initializers carry the PyTorch state_dict names ("conv1.weight", "fc1.bias").
// metadata_props state the input convention, the normalisation and the
// model file's own metadata (arch, role, test accuracy, ...).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/normalize.h"

namespace kd {

constexpr int kOnnxOpset = 13;
constexpr const char* kOnnxInputName = "pixels";
constexpr const char* kOnnxOutputName = "logits";

// The serialised ModelProto of `arch` with `params` (arch.param_count floats,
// layout of kd/model.h). `metadata` goes into metadata_props (keys this
// exporter sets itself win). The model is checked with ONNX's checker and its
// strict shape inference before it is returned; a failure there is a bug.
// `norm`: the model's input normalisation (1 or arch.input.c channels).
std::string onnx_model_bytes(const Arch& arch, const std::vector<float>& params, const Normalization& norm,
                             const std::map<std::string, std::string>& metadata);

// Writes onnx_model_bytes(...) to `path` atomically (temporary file, fsync,
// rename). Throws kd::Error naming the path when it cannot be written.
void export_onnx(const std::string& path, const Arch& arch, const std::vector<float>& params, const Normalization& norm,
                 const std::map<std::string, std::string>& metadata);

// `kdtrain export --model F --onnx OUT`: loads the model file (teacher or
// student, kd/model_io.h), writes OUT with the file's metadata and
// normalisation (kd/model_io.h saved_normalization), and unless
// `quiet` prints one line saying what was written. Errors name the flag and path.
void export_model_file(const std::string& model_path, const std::string& onnx_path, bool quiet);

}  // namespace kd
