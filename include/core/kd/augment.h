// kd/augment.h: seeded random affine augmentation (shift, rotation, scale),
// fused with the batch gather and normalisation (SPEC section 2, --recipe patient).
//
// Each sample's transform is a pure function of (seed, epoch, sample index),
// drawn with Philox (kd/philox.h), so every engine sees the same augmented view
// of every sample in every epoch with no state to carry or checkpoint. The draw
// and the per-pixel sampling below are KD_HOST_DEVICE: the CPU reference
// (src/reference/augment.cpp) and the CUDA kernel (kernels/augment.cu) run the
// same source.
//
// The transform, in pixel coordinates (x right, y down, pixel centres at
// integers, image centre c = ((w - 1) / 2, (h - 1) / 2)), moves the content
// of the image: a point p goes to  p' = c + t + s * R(theta) * (p - c),
// with R(theta) = [[cos, sin], [-sin, cos]]: positive theta turns the content
// counter-clockwise on screen (as torchvision's RandomAffine), s > 1 enlarges
// it, t = (tx, ty) moves it right and down. Each output pixel (ox, oy) reads the
// input at the inverse image of its centre:
//   dx = (ox - cx) - tx,                dy = (oy - cy) - ty
//   sx = cx + (A * dx - B * dy),        sy = cy + (B * dx + A * dy)
//   with A = cos(theta) / s, B = sin(theta) / s,
// sampled bilinearly; pixels outside the image read as background (raw 0).
#pragma once

#include <cstdint>

#include "kd/exact_math.h"
#include "kd/host_device.h"
#include "kd/normalize.h"
#include "kd/philox.h"

namespace kd {

// The distribution each sample's transform is drawn from; every draw is
// uniform and independent. enabled = false: no augmentation at all (the op is
// then exactly ref::gather_normalize / cuda::gather_normalize).
struct AugmentParams {
  bool enabled = false;
  float max_shift = 2.0f;        // tx, ty ~ U[-max_shift, max_shift) pixels
  float max_rotate_deg = 12.0f;  // theta ~ U[-max_rotate_deg, max_rotate_deg) degrees, <= 180
  float min_scale = 0.9f;        // s ~ U[min_scale, max_scale), 1/16 <= min_scale <= max_scale <= 16
  float max_scale = 1.1f;
};

// Throws kd::Error naming the field and the allowed range unless
// 0 <= max_shift <= 1024, 0 <= max_rotate_deg <= 180 and
// 1/16 <= min_scale <= max_scale <= 16 (all finite). `who` names the caller or
// flag in the message. The bounds keep every source coordinate within a few
// thousand pixels of the image, far from int overflow in augment_sample.
void validate_augment(const AugmentParams& p, const char* who);

// One sample's transform: the drawn values (for reports and tests) and the
// inverse-mapping coefficients the sampler uses. Built by affine_transform();
// a plain aggregate so a kernel can hold it in shared memory.
struct AffineTransform {
  float tx, ty;            // shift, pixels
  float angle_deg, scale;  // theta in degrees, s
  float a, b;              // A = cos(theta) / s, B = sin(theta) / s
};

// The transform for a shift of (tx, ty) pixels, a rotation of angle_deg degrees
// (|angle_deg| <= 180) and a scale s > 0. sin and cos are computed in double by
// exact::sin_cos and A, B rounded once to float: bit-identical on host and device.
KD_HOST_DEVICE AffineTransform affine_transform(float tx, float ty, float angle_deg, float scale) {
  constexpr double kRadiansPerDegree = 3.14159265358979323846 / 180.0;
  double sin_t, cos_t;
  exact::sin_cos(exact::mul_rn(double(angle_deg), kRadiansPerDegree), sin_t, cos_t);
  // IEEE division, correctly rounded on both sides. The identity (0, 0, 0, 1)
  // gives A = 1 and B = 0 exactly: sin_cos(0) is (0, 1) exactly.
  return AffineTransform{tx, ty, angle_deg, scale, float(cos_t / double(scale)), float(sin_t / double(scale))};
}

// Philox counter word 3 for augmentation draws. Dropout (kd/philox.h) puts the
// high half of its step there, which stays 0 below 2^32 steps, so the two
// never draw the same block even when given the same key.
constexpr uint32_t kAugmentStream = 0x41554731u;  // "AUG1"

// The transform of sample `sample` (its index in the training split) in epoch
// `epoch` of a run whose augmentation key is `seed`: one Philox block,
// counter (sample lo, sample hi, epoch lo, epoch hi ^ kAugmentStream), key seed;
// lanes 0-3 give tx, ty, theta, s. The identity when !p.enabled.
// Each value is u in [0, 1) with 24 bits (philox_lane_uniform) mapped affinely
// in double: 2u - 1 is exact and its product with a float range bound is exact
// (24 + 25 bits < 53), so tx, ty and theta are rounded once, to float; s takes
// one fma. p must have passed validate_augment.
KD_HOST_DEVICE AffineTransform augment_transform(const AugmentParams& p, uint64_t seed, uint64_t epoch,
                                                 uint64_t sample) {
  if (!p.enabled) return affine_transform(0, 0, 0, 1);
  const Philox4 r = philox4x32_10(
      Philox4{{uint32_t(sample), uint32_t(sample >> 32), uint32_t(epoch), uint32_t(epoch >> 32) ^ kAugmentStream}},
      uint32_t(seed), uint32_t(seed >> 32));
  const auto symmetric = [](uint32_t lane) { return 2.0 * double(philox_lane_uniform(lane)) - 1.0; };  // [-1, 1)
  const double shift = p.max_shift, rotate = p.max_rotate_deg;
  const double scale_span = double(p.max_scale) - double(p.min_scale);  // exact: floats within 2^8 of each other
  return affine_transform(float(shift * symmetric(r.v[0])), float(shift * symmetric(r.v[1])),
                          float(rotate * symmetric(r.v[2])),
                          float(exact::fma_rn(scale_span, double(philox_lane_uniform(r.v[3])), double(p.min_scale))));
}

namespace augment_detail {

// Float arithmetic that nvcc must not fuse into multiply-adds (the _rn
// intrinsics), so the kernel rounds each operation as the host does. A host
// build for baseline x86-64 has no FMA instruction to contract into; one for
// an FMA-capable -march may contract, which moves a sample by ~1 ulp
// (tests/augment_gpu_test.cpp bounds what that costs).
KD_HOST_DEVICE float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
KD_HOST_DEVICE float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
KD_HOST_DEVICE float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// floor(v) for |v| < 2^31. Not floorf: baseline x86-64 has no rounding
// instruction (SSE4.1), and the two libm calls per pixel made the reference
// 35% slower (0.44 against 0.33 ms per batch of 64 MNIST images).
// |A|, |B| <= 16 and |tx|, |ty| <= 1024 (validate_augment) keep every source
// coordinate far inside that range.
KD_HOST_DEVICE int floor_to_int(float v) {
  const int truncated = int(v);  // rounds toward zero
  return float(truncated) > v ? truncated - 1 : truncated;
}

// plane: (h, w) u8. Pixel (x, y), or background 0 outside the plane.
KD_HOST_DEVICE float pixel_or_background(const uint8_t* plane, int h, int w, int x, int y) {
  return (x >= 0 && x < w && y >= 0 && y < h) ? float(plane[y * w + x]) : 0.0f;
}

}  // namespace augment_detail

// plane: (h, w) u8, one channel of one image. The value of output pixel
// (ox, oy) under transform t on the raw [0, 255] scale: the inverse mapping of
// the header comment, then bilinear interpolation between the four pixels
// around (sx, sy) with weights from fx = sx - floor(sx), fy = sy - floor(sy):
//   top = p(x0, y0) + fx (p(x0+1, y0) - p(x0, y0)), bottom likewise on row y0+1,
//   v = top + fy (bottom - top).
// At integer (sx, sy) the weights are exactly 1 and 0, so the identity
// transform returns each pixel exactly.
KD_HOST_DEVICE float augment_sample(const uint8_t* plane, int h, int w, const AffineTransform& t, int ox, int oy) {
  using namespace augment_detail;
  const float cx = 0.5f * float(w - 1), cy = 0.5f * float(h - 1);  // exact: half-integers
  const float dx = sub(float(ox) - cx, t.tx), dy = sub(float(oy) - cy, t.ty);
  const float sx = add(cx, sub(mul(t.a, dx), mul(t.b, dy)));
  const float sy = add(cy, add(mul(t.b, dx), mul(t.a, dy)));
  const int x = floor_to_int(sx), y = floor_to_int(sy);
  const float fx = sx - float(x), fy = sy - float(y);  // exact: the fraction is a subset of sx's bits
  const float p00 = pixel_or_background(plane, h, w, x, y), p01 = pixel_or_background(plane, h, w, x + 1, y);
  const float p10 = pixel_or_background(plane, h, w, x, y + 1), p11 = pixel_or_background(plane, h, w, x + 1, y + 1);
  const float top = add(p00, mul(fx, sub(p01, p00)));
  const float bottom = add(p10, mul(fx, sub(p11, p10)));
  return add(top, mul(fy, sub(bottom, top)));
}

// ---------------------------------------------------------------- mixup
// Mixup (Zhang et al. 2018) of a training batch of b rows, after augmentation
// and normalisation:
//   x'[i] = lambda * x[i] + (1 - lambda) * x[partner(i)],  partner(i) = (i + offset) mod b,
// and the hard-label loss of row i is lambda * CE(y[i]) + (1 - lambda) * CE(y[partner(i)])
// (ref::softmax_kl's HardTargetMix); distillation's KL term uses the teacher's
// logits on x' itself (online soft targets).
//
// One lambda ~ Beta(A, A) and one offset ~ U{1, ..., b - 1} per batch, as the
// paper's and timm's batch mode. Per batch, not per sample: the Beta draw
// needs log, exp and a rejection loop, which host and device libm do not
// round alike, so it is drawn on the host (one per step; the CUDA engine
// uploads an epoch's draws at begin_epoch and a captured step reads its own).
// A cyclic offset, not a random permutation: the epoch's shuffle already makes
// a batch a random sample in random order, so any derangement of positions
// pairs each sample with a random other one; a cyclic one is O(1) for any
// thread, or data-parallel rank, to find a row's partner. No row mixes with
// itself unless b = 1.
// A plain aggregate (no member initialisers), so a kernel can hold it in
// shared memory; mixup off is {1, 0, 0}.
struct MixupDraw {
  float lambda;          // weight of the row's own sample
  float partner_weight;  // 1 - lambda, rounded to float once (both sides use this value)
  int32_t offset;        // partner(i) = (i + offset) mod b; 0 for b = 1
};

// Philox counter word 3 for mixup draws (see kAugmentStream).
constexpr uint32_t kMixupStream = 0x4D495831u;  // "MIX1"

// The draw of the batch that starts at position `batch_begin` (< 2^31) of
// epoch `epoch`'s order, b rows, with concentration A = `concentration`
// (0: off, the identity draw {1, 0, 0}). A pure function of its arguments:
// Philox blocks (counter (batch_begin, j, epoch lo, epoch hi ^ kMixupStream),
// key seed): j = 0 gives the offset, j = 1, 2, ... the two Gamma(A) variates
// of lambda = G1 / (G1 + G2) (Marsaglia & Tsang 2000, in double). Host only:
// it uses libm. Throws kd::Error unless 0 <= concentration <= kMaxMixup and b >= 1.
constexpr float kMaxMixup = 1000.0f;
MixupDraw mixup_draw(float concentration, uint64_t seed, uint64_t epoch, int64_t batch_begin, int b);

// Row i's partner in a batch of b rows.
KD_HOST_DEVICE int mixup_partner(int i, const MixupDraw& draw, int b) { return int((int64_t(i) + draw.offset) % b); }

// lambda * own + partner_weight * partner, rounded once to float. The two
// products are exact in double (24-bit by 24-bit significands), so a compiler
// that contracts them into a multiply-add cannot change the result: host and
// device agree to the last bit.
KD_HOST_DEVICE float mix_value(float own, float partner, const MixupDraw& draw) {
  return float(double(draw.lambda) * double(own) + double(draw.partner_weight) * double(partner));
}

namespace ref {

// The augmented batch: images: (n, c, h, w) u8, idx: (b) rows in [0, n) ->
// out: (b, c, h, w) float. Row r is sample idx[r] under
// augment_transform(p, seed, epoch, idx[r]) (one transform for all c channels),
// each pixel augment_sample()'d and then normalize_pixel()'d with its
// channel's mean and std; c = norm.c.
// With !p.enabled exactly gather_normalize(images, idx, out, b, h*w, norm).
void augment_gather_normalize(const uint8_t* images, const int32_t* idx, float* out, int b, int h, int w,
                              const Normalization& norm, const AugmentParams& p, uint64_t seed, uint64_t epoch);

// Rows [first, first + rows) of the mixed batch: images: (n, c, h, w) u8,
// batch: (b) the whole batch's sample indices -> out: (rows, c, h, w),
//   out[r] = mix_value(x[first + r], x[mixup_partner(first + r, draw, b)], draw)
// elementwise, where x = augment_gather_normalize(images, batch, ...) (the
// partner's own augmented view). A slice, so that a data-parallel rank builds
// only its rows; their partners may be any rows of the batch.
void mixup_gather_normalize(const uint8_t* images, const int32_t* batch, float* out, int b, int first, int rows, int h,
                            int w, const Normalization& norm, const AugmentParams& p, uint64_t seed, uint64_t epoch,
                            const MixupDraw& draw);

}  // namespace ref
}  // namespace kd
