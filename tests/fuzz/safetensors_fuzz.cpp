// libFuzzer target: arbitrary bytes as a safetensors file. A rejected input
// must be a kd::Error; anything else (a crash, a sanitizer report, another
// exception) is a bug. An accepted file must survive a round trip: writing
// what was read and reading it again gives the same tensors and metadata.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kd/safetensors.h"
#include "kd/error.h"

namespace {

bool same(const kd::SafeTensors& a, const kd::SafeTensors& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const kd::TensorData &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.bytes != y.bytes) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kd::SafeTensors parsed;
  try {
    parsed = kd::parse_safetensors(data, size, "fuzz.safetensors");
  } catch (const kd::Error&) {
    return 0;
  }
  // Every accepted tensor holds exactly shape x dtype bytes.
  for (const kd::TensorData& t : parsed.tensors)
    if (t.bytes.size() != size_t(t.numel()) * kd::dtype_size(t.dtype)) __builtin_trap();
  const std::vector<uint8_t> again = kd::serialize_safetensors(parsed);
  if (!same(parsed, kd::parse_safetensors(again.data(), again.size(), "fuzz round trip"))) __builtin_trap();
  return 0;
}
