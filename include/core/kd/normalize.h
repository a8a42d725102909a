// kd/normalize.h: the input normalisation of SPEC section 2, one definition for
// the CPU reference and the CUDA kernels of the batch and augment families.
#pragma once

#include "kd/host_device.h"

namespace kd {

// raw: a pixel on the u8 scale [0, 255] (an integer for a plain gather, a
// bilinear blend for an augmented one) -> (raw / 255 - mean) / std, evaluated
// in double and rounded once to float. Every operation is a correctly rounded
// IEEE double operation on host and device (no multiply-add to fuse), so both
// sides agree to the last bit.
KD_HOST_DEVICE float normalize_pixel(double raw, float mean, float std) {
  return float((raw / 255.0 - double(mean)) / double(std));
}

}  // namespace kd
