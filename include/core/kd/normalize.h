// kd/normalize.h: the input normalisation of SPEC section 2, one definition for
// the CPU reference and the CUDA kernels of the batch and augment families.
#pragma once

#include "kd/host_device.h"

namespace kd {

// Channels a normalisation holds: the data readers give 1 (grey) or 3 (RGB).
constexpr int kMaxChannels = 3;

// MNIST's published mean and std of pixel / 255 over its training set: the
// seed recipe's normalisation of 1x28x28 data (docs/data.md).
constexpr float kPixelMean = 0.1307f;
constexpr float kPixelStd = 0.3081f;

// x = (pixel / 255 - mean[ch]) / std[ch] for a pixel of channel ch < c.
// Plain data, passed to kernels by value.
struct Normalization {
  int c = 1;
  float mean[kMaxChannels] = {kPixelMean, 0.0f, 0.0f};
  float std[kMaxChannels] = {kPixelStd, 1.0f, 1.0f};
};

// The same mean and std for each of c channels.
inline Normalization uniform_normalization(int c, float mean, float std) {
  Normalization n;
  n.c = c;
  for (int ch = 0; ch < c; ++ch) n.mean[ch] = mean, n.std[ch] = std;
  return n;
}

// raw: a pixel on the u8 scale [0, 255] (an integer for a plain gather, a
// bilinear blend for an augmented one) -> (raw / 255 - mean) / std, evaluated
// in double and rounded once to float. Every operation is a correctly rounded
// IEEE double operation on host and device (no multiply-add to fuse), so both
// sides agree to the last bit.
KD_HOST_DEVICE float normalize_pixel(double raw, float mean, float std) {
  return float((raw / 255.0 - double(mean)) / double(std));
}

}  // namespace kd
