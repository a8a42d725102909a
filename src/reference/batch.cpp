// CPU reference batch assembly: gather rows of the u8 image set by index and
// normalise them to float.
#include <cstddef>

#include "kd/normalize.h"
#include "kd/reference.h"

namespace kd::ref {

// images: (N, c, plane) u8, idx: (b) row numbers in [0, N) -> out: (b, c, plane),
// out = (px / 255 - mean[ch]) / std[ch], computed in double and rounded once.
void gather_normalize(const uint8_t* images, const int32_t* idx, float* out, int b, int64_t plane,
                      const Normalization& norm) {
  const int64_t values = norm.c * plane;
  for (int row = 0; row < b; ++row) {
    const uint8_t* src = images + size_t(idx[row]) * size_t(values);
    float* dst = out + size_t(row) * size_t(values);
    for (int ch = 0; ch < norm.c; ++ch)
      for (int64_t i = ch * plane; i < (ch + 1) * plane; ++i)
        dst[i] = normalize_pixel(src[i], norm.mean[ch], norm.std[ch]);
  }
}

}  // namespace kd::ref
