// ONNX Runtime in kdtrain's own process, through its C API (private to kd_io;
// kd/onnx_runtime.h is the public face).
//
// No header for that API ships from the npm registry (onnxruntime-node and
// onnxruntime-react-native carry only the shared library and their bindings),
// so libonnxruntime.so is opened with dlopen and the few calls used here are
// made through the API's function table by their documented positions (see
// ort_inprocess.cpp). Where the library is:
//   $KD_ORT_LIB (a path to libonnxruntime.so.1), else the first
//   node_modules/onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime.so.1
//   under $KD_ORT_DIR or, by default, <source tree>/.ort (scripts/onnxruntime.sh).
#pragma once

#include <string>
#include <vector>

#include "kd/arch.h"  // Shape

namespace kd {

// ONNX Runtime's version ("1.23.2") when its library loads in this process, or
// "" with `why_not` set (which file was looked for, and the flag or script that fixes it).
std::string ort_inprocess_version(std::string& why_not);

// One exported model in an ONNX Runtime session of this process: CPU
// execution provider, all graph optimisations, `threads` intra-op threads
// (0 = ONNX Runtime's default). Throws kd::Error when the library is missing
// or ONNX Runtime refuses the model.
class OrtInProcessModel {
 public:
  OrtInProcessModel(const std::string& onnx_path, const Shape& input, int classes, int threads);
  ~OrtInProcessModel();
  OrtInProcessModel(const OrtInProcessModel&) = delete;
  OrtInProcessModel& operator=(const OrtInProcessModel&) = delete;

  // One session run prepared once: x (b, C, H, W) float pixel values 0..255
  // and logits (b, classes), both caller-owned and alive as long as the Call,
  // wrapped for ONNX Runtime when it is made, so run() allocates nothing of
  // kdtrain's and nothing for the input or output inside ONNX Runtime.
  class Call {
   public:
    Call(Call&& other) noexcept;
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    Call& operator=(Call&&) = delete;
    void run();

   private:
    friend class OrtInProcessModel;
    Call(const OrtInProcessModel& model, float* x, float* logits, int b);
    const OrtInProcessModel* model_;
    void* values_[2];  // OrtValue*: input, output
  };
  Call prepare(float* x, float* logits, int b) const { return Call(*this, x, logits, b); }

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace kd
