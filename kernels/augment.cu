// Augmented batch assembly on the GPU: the gather and normalisation of
// kernels/batch.cu with each sample passed through its seeded random affine
// (kd/augment.h) on the way, so the augmented view never exists in u8 and
// never crosses the PCIe bus. Oracle: kd::ref::augment_gather_normalize; for
// mixup's batches (kd/augment.h), kd::ref::mixup_gather_normalize.
//
// Mapping: one block per batch row, its threads striding over the row's
// c*h*w output pixels (one thread per pixel at MNIST's 784 and 256 threads:
// ~3 pixels each). The transform belongs to the sample, not the pixel: thread 0
// draws it once (a Philox block and a double Taylor sin/cos, ~100 double
// operations) and shares it through shared memory, instead of 784 threads
// repeating it. A row's source image (784 B) is read 4x by the bilinear taps,
// from L1 after the first touch. Mixup's kernel samples two images per row
// (the row's and its partner's) in the same pass, so the unmixed batch is
// never written out either.
#include <cstdint>
#include <string>

#include "kd/cuda_common.h"
#include "kd/augment.h"
#include "kd/error.h"
#include "kd/launch.h"
#include "kd/normalize.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

// image: (c, h, w) u8, one sample -> output value j of its augmented,
// normalised view (channel j / plane): augment_sample's and normalize_pixel's
// arithmetic, the reference's own functions, every float operation
// individually rounded.
__device__ __forceinline__ float augmented_value(const uint8_t* image, int j, int h, int w, const AffineTransform& t,
                                                 const Normalization& norm) {
  const int plane = h * w;
  const int ch = j / plane, within = j % plane;
  const float raw = augment_sample(image + int64_t(ch) * plane, h, w, t, within % w, within / w);
  return normalize_pixel(raw, norm.mean[ch], norm.std[ch]);
}

// images: (N, c, h, w) u8, labels: (N) u8, idx: (b), epoch: device (1)
// -> out: (b, c, h, w), out_labels: (b) (skipped when null). One block per row.
// The arithmetic is augment_sample's and normalize_pixel's, the reference's
// own functions, with every float operation individually rounded.
__global__ void augment_gather_normalize_kernel(const uint8_t* __restrict__ images, const uint8_t* __restrict__ labels,
                                                const int32_t* __restrict__ idx, float* __restrict__ out,
                                                int32_t* __restrict__ out_labels, int h, int w, Normalization norm,
                                                AugmentParams params, uint64_t seed,
                                                const uint64_t* __restrict__ epoch) {
  __shared__ AffineTransform transform;
  const int row = blockIdx.x;
  const int64_t sample = idx[row];
  if (threadIdx.x == 0) {
    transform = augment_transform(params, seed, *epoch, uint64_t(sample));
    if (out_labels != nullptr) out_labels[row] = labels[sample];
  }
  __syncthreads();
  const AffineTransform t = transform;
  // One image's pixels fit an int (the host checks); 32-bit division is several times cheaper than 64-bit.
  const int pixels = norm.c * h * w;
  const uint8_t* src = images + sample * pixels;
  float* dst = out + int64_t(row) * pixels;
  for (int j = threadIdx.x; j < pixels; j += blockDim.x) dst[j] = augmented_value(src, j, h, w, t, norm);
}

// The mixed batch: as above, each thread computing its pixels in the row's
// sample and in its partner's (each under its own transform), then mixing
// them by *draw. Thread 0 reads the draw and draws both transforms once.
// idx: (b), epoch, draw: device (1) -> out: (b, c, h, w), out_labels,
// out_partner_labels: (b).
__global__ void mixup_gather_normalize_kernel(const uint8_t* __restrict__ images, const uint8_t* __restrict__ labels,
                                              const int32_t* __restrict__ idx, float* __restrict__ out,
                                              int32_t* __restrict__ out_labels,
                                              int32_t* __restrict__ out_partner_labels, int b, int h, int w,
                                              Normalization norm, AugmentParams params, uint64_t seed,
                                              const uint64_t* __restrict__ epoch, const MixupDraw* __restrict__ draw) {
  __shared__ AffineTransform transforms[2];  // the row's sample's, its partner's
  __shared__ int64_t samples[2];
  __shared__ MixupDraw mix;
  const int row = blockIdx.x;
  if (threadIdx.x == 0) {
    mix = *draw;
    samples[0] = idx[row];
    samples[1] = idx[mixup_partner(row, mix, b)];
    for (int k = 0; k < 2; ++k) transforms[k] = augment_transform(params, seed, *epoch, uint64_t(samples[k]));
    out_labels[row] = labels[samples[0]];
    out_partner_labels[row] = labels[samples[1]];
  }
  __syncthreads();
  const AffineTransform own_t = transforms[0], partner_t = transforms[1];
  const MixupDraw m = mix;
  const int pixels = norm.c * h * w;  // fits an int (the host checks)
  const uint8_t* own = images + samples[0] * pixels;
  const uint8_t* partner = images + samples[1] * pixels;
  float* dst = out + int64_t(row) * pixels;
  for (int j = threadIdx.x; j < pixels; j += blockDim.x)
    dst[j] =
        mix_value(augmented_value(own, j, h, w, own_t, norm), augmented_value(partner, j, h, w, partner_t, norm), m);
}

// The host checks of both gathers: parameters validate_augment accepts (when
// enabled) and one image's c*h*w values within an int.
void check_augmented_gather(const AugmentParams& params, int c, int h, int w, const char* who) {
  if (params.enabled) validate_augment(params, who);
  if (int64_t(c) * h * w > INT32_MAX) {
    fail(std::string(who) + ": one image of " + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
         " pixels exceeds 2^31; split the channels into separate calls");
  }
}

}  // namespace

void augment_gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out,
                              int32_t* out_labels, int b, int h, int w, const Normalization& norm,
                              const AugmentParams& params, uint64_t seed, const uint64_t* epoch, cudaStream_t stream) {
  const int c = norm.c;
  if (!params.enabled) {
    gather_normalize(images, labels, idx, out, out_labels, b, int64_t(h) * w, norm, stream);
    return;
  }
  check_augmented_gather(params, c, h, w, "cuda::augment_gather_normalize");
  if (b == 0) return;
  launch(augment_gather_normalize_kernel, b, kBlockThreads, 0, stream, images, labels, idx, out, out_labels, h, w, norm,
         params, seed, epoch);
  KD_CUDA_CHECK_LAUNCH(augment_gather_normalize_kernel);
}

void mixup_gather_normalize(const uint8_t* images, const uint8_t* labels, const int32_t* idx, float* out,
                            int32_t* out_labels, int32_t* out_partner_labels, int b, int h, int w,
                            const Normalization& norm, const AugmentParams& params, uint64_t seed,
                            const uint64_t* epoch, const MixupDraw* draw, cudaStream_t stream) {
  check_augmented_gather(params, norm.c, h, w, "cuda::mixup_gather_normalize");
  if (b == 0) return;
  launch(mixup_gather_normalize_kernel, b, kBlockThreads, 0, stream, images, labels, idx, out, out_labels,
         out_partner_labels, b, h, w, norm, params, seed, epoch, draw);
  KD_CUDA_CHECK_LAUNCH(mixup_gather_normalize_kernel);
}

}  // namespace kd::cuda
