// CPU reference batch assembly: gather rows of the u8 image set by index and
// normalise them to float.
#include <cstddef>

#include "kd/normalize.h"
#include "kd/reference.h"

namespace kd::ref {

// images: (N, pixels) u8, idx: (b) row numbers in [0, N) -> out: (b, pixels),
// out = (px / 255 - mean) / std, computed in double and rounded once.
void gather_normalize(const uint8_t* images, const int32_t* idx, float* out, int b, int64_t pixels, float mean,
                      float std) {
  for (int row = 0; row < b; ++row) {
    const uint8_t* src = images + size_t(idx[row]) * size_t(pixels);
    float* dst = out + size_t(row) * size_t(pixels);
    for (int64_t i = 0; i < pixels; ++i) dst[i] = normalize_pixel(src[i], mean, std);
  }
}

}  // namespace kd::ref
