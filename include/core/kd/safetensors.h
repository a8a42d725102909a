// kd/checkpoint.h: safetensors files (8-byte little-endian header length, a JSON
// header, raw little-endian tensor data), the format of teacher.safetensors,
// student.safetensors and training checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kd {

enum class DType { F32, F64, I32, I64, U8 };
const char* dtype_name(DType d);  // "F32", ...
size_t dtype_size(DType d);

struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // product(shape) * dtype_size(dtype) bytes, little-endian

  int64_t numel() const;
  static TensorData from_f32(const std::string& name, std::vector<int64_t> shape, const float* data);
  std::vector<float> to_f32() const;  // requires dtype F32
};

struct SafeTensors {
  std::map<std::string, std::string> metadata;  // "__metadata__": string -> string
  std::vector<TensorData> tensors;              // written in this order

  const TensorData& get(const std::string& name) const;   // throws naming the missing tensor
  const TensorData* find(const std::string& name) const;  // null when absent
};

// Serialises to bytes. Tensor data laid out back to back in `tensors` order;
// header padded with spaces to a multiple of 8 bytes.
std::vector<uint8_t> serialize_safetensors(const SafeTensors& st);
// Parses bytes with full validation: header length beyond the file, malformed
// JSON, non-object entries, unknown dtype, bad shape, offsets out of range,
// overlapping or not covering the data, shape x dtype != byte length,
// non-string metadata. `what` (a path) prefixes every error.
SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

// Atomic write: <path>.tmp, fsync, rename; the directory is fsynced too.
void save_safetensors(const std::string& path, const SafeTensors& st);
SafeTensors load_safetensors(const std::string& path);

// Atomic write of any text/binary file (used for metrics.csv, summary.json).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace kd
