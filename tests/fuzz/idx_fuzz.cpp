// libFuzzer target: arbitrary bytes as an IDX image file and as an IDX label
// file. A rejected input must be a kd::Error; anything else (a crash, a
// sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kd/data.h"
#include "kd/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    // images: (n, h, w) u8 filling exactly the bytes after the 16-byte header
    const kd::Dataset d = kd::parse_idx_images(bytes, "fuzz-images");
    if (int64_t(d.images.size()) != d.n * d.pixels()) __builtin_trap();
  } catch (const kd::Error&) {
  }
  try {
    // labels: (n) u8 after the 8-byte header
    const std::vector<uint8_t> labels = kd::parse_idx_labels(bytes, "fuzz-labels");
    if (labels.empty() || labels.size() + 8 != size) __builtin_trap();
  } catch (const kd::Error&) {
  }
  return 0;
}
