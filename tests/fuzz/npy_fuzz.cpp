// libFuzzer target: arbitrary bytes as a .npy image file (channels first and
// channels last) and as a .npy label file. A rejected input must be a
// kd::Error; anything else (a crash, a sanitizer report, another exception)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kd/error.h"
#include "kd/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  for (const bool channels_last : {false, true}) {
    try {
      // images: (n, c, h, w) u8, one value per element of the file's data
      const kd::Dataset d = kd::parse_npy_images(bytes, channels_last, "fuzz-images");
      if (d.n < 1 || (d.c != 1 && d.c != 3) || int64_t(d.images.size()) != d.n * d.values_per_image() ||
          d.images.size() > size)
        __builtin_trap();
    } catch (const kd::Error&) {
    }
  }
  try {
    // labels: (n) u8, n >= 1, at most one per data byte
    const std::vector<uint8_t> labels = kd::parse_npy_labels(bytes, "fuzz-labels");
    if (labels.empty() || labels.size() > size) __builtin_trap();
  } catch (const kd::Error&) {
  }
  return 0;
}
