// CPU reference of the augment family: the seeded random affine of
// kd/augment.h applied while gathering a batch, then the batch normalisation.
// The transform draw and the per-pixel sampling are the header's
// KD_HOST_DEVICE functions, shared with kernels/augment.cu; this file is the
// loop over (row, channel, pixel) that defines the op.
//
// Cost: 0.34 ms for a batch of 64 MNIST images on one core (Release build,
// best of 20, tests/augment_test.cpp CostOfABatchOf64Mnist; the plain
// gather_normalize takes 0.05 ms), 1-2% of a 15-30 ms fast-CPU training step.
// Mixup's gather samples two augmented images per row: 0.72 ms with its
// per-batch draw (same test), 2-5% of such a step.
#include "kd/augment.h"

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/normalize.h"
#include "kd/reference.h"

namespace kd {
namespace {

void require_range(float value, float lo, float hi, const char* who, const char* field) {
  if (!(value >= lo && value <= hi)) {  // also rejects NaN
    fail(std::string(who) + ": augmentation " + field + " must be in [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "], got " + std::to_string(value));
  }
}

// Philox block j of a mixup draw (kd/augment.h).
Philox4 mixup_block(uint64_t seed, uint64_t epoch, int64_t batch_begin, uint32_t j) {
  return philox4x32_10(Philox4{{uint32_t(batch_begin), j, uint32_t(epoch), uint32_t(epoch >> 32) ^ kMixupStream}},
                       uint32_t(seed), uint32_t(seed >> 32));
}

// A lane as a uniform in (0, 1): never 0, so its log is finite.
double open_uniform(uint32_t lane) { return (double(lane) + 0.5) / 4294967296.0; }

// log of a Gamma(shape, 1) variate, shape > 0, by Marsaglia and Tsang's
// squeeze-free rejection (ACM TOMS 26(3), 2000), attempt k from Philox block
// first + 2k: lanes 0 and 1 a Box-Muller normal, lane 2 the acceptance
// uniform, lane 3 the boost for shape < 1 (Gamma(a) = Gamma(a + 1) U^(1/a),
// kept as a log: at A = 0.2, U^5 underflows a double for U < 1e-62).
// An attempt is accepted with probability > 0.95 for shape >= 1, so 64
// attempts all fail with probability < 1e-83; the loop is bounded anyway and
// then returns the mode, log(d).
double log_gamma_variate(double shape, uint64_t seed, uint64_t epoch, int64_t batch_begin, uint32_t first) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr uint32_t kMaxAttempts = 64;
  const bool boost = shape < 1.0;
  const double d = (boost ? shape + 1.0 : shape) - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (uint32_t attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const Philox4 r = mixup_block(seed, epoch, batch_begin, first + 2 * attempt);
    const double x = std::sqrt(-2.0 * std::log(open_uniform(r.v[0]))) * std::cos(kTwoPi * open_uniform(r.v[1]));
    const double root = 1.0 + c * x;
    if (root <= 0.0) continue;
    const double v = root * root * root;
    if (std::log(open_uniform(r.v[2])) < 0.5 * x * x + d - d * v + d * std::log(v))
      return std::log(d * v) + (boost ? std::log(open_uniform(r.v[3])) / shape : 0.0);
  }
  return std::log(d);
}

}  // namespace

MixupDraw mixup_draw(float concentration, uint64_t seed, uint64_t epoch, int64_t batch_begin, int b) {
  if (!(concentration >= 0.0f && concentration <= kMaxMixup))  // also rejects NaN
    fail("mixup_draw: the concentration must be in [0, " + std::to_string(kMaxMixup) + "], got " +
         std::to_string(concentration));
  if (b < 1) fail("mixup_draw: a batch needs b >= 1 rows, got " + std::to_string(b));
  if (concentration == 0.0f) return MixupDraw{1.0f, 0.0f, 0};
  MixupDraw draw{};
  // 1 + floor(u (b - 1)) with u a 32-bit fraction: an exact integer product;
  // its bias, at most (b - 1) / 2^32, is far below anything a run can see.
  const uint64_t fraction = mixup_block(seed, epoch, batch_begin, 0).v[0];
  draw.offset = b == 1 ? 0 : 1 + int32_t((fraction * uint64_t(b - 1)) >> 32);
  // lambda = G1 / (G1 + G2) = 1 / (1 + exp(log G2 - log G1)), with the two
  // variates on interleaved blocks (1, 3, 5, ... and 2, 4, 6, ...).
  const double log_g1 = log_gamma_variate(concentration, seed, epoch, batch_begin, 1);
  const double log_g2 = log_gamma_variate(concentration, seed, epoch, batch_begin, 2);
  draw.lambda = float(1.0 / (1.0 + std::exp(log_g2 - log_g1)));
  draw.partner_weight = 1.0f - draw.lambda;
  return draw;
}

void validate_augment(const AugmentParams& p, const char* who) {
  require_range(p.max_shift, 0.0f, 1024.0f, who, "max_shift (pixels)");
  require_range(p.max_rotate_deg, 0.0f, 180.0f, who, "max_rotate_deg (degrees)");
  require_range(p.min_scale, 1.0f / 16.0f, 16.0f, who, "min_scale");
  require_range(p.max_scale, p.min_scale, 16.0f, who, "max_scale (at least min_scale)");
}

namespace ref {

// images: (n, c, h, w) u8, idx: (b) -> out: (b, c, h, w) float.
void augment_gather_normalize(const uint8_t* images, const int32_t* idx, float* out, int b, int h, int w,
                              const Normalization& norm, const AugmentParams& p, uint64_t seed, uint64_t epoch) {
  const int c = norm.c;
  const int64_t plane = int64_t(h) * w;
  if (!p.enabled) {
    gather_normalize(images, idx, out, b, plane, norm);
    return;
  }
  validate_augment(p, "ref::augment_gather_normalize");
  for (int row = 0; row < b; ++row) {
    const AffineTransform t = augment_transform(p, seed, epoch, uint64_t(idx[row]));
    for (int ch = 0; ch < c; ++ch) {
      const uint8_t* src = images + (size_t(idx[row]) * c + ch) * size_t(plane);
      float* dst = out + (size_t(row) * c + ch) * size_t(plane);
      for (int oy = 0; oy < h; ++oy) {
        for (int ox = 0; ox < w; ++ox) {
          dst[oy * w + ox] = normalize_pixel(augment_sample(src, h, w, t, ox, oy), norm.mean[ch], norm.std[ch]);
        }
      }
    }
  }
}

// batch: (b), out: (rows, c, h, w) -> rows [first, first + rows) of the mixed batch.
void mixup_gather_normalize(const uint8_t* images, const int32_t* batch, float* out, int b, int first, int rows, int h,
                            int w, const Normalization& norm, const AugmentParams& p, uint64_t seed, uint64_t epoch,
                            const MixupDraw& draw) {
  if (first < 0 || rows < 0 || first + rows > b)
    fail("ref::mixup_gather_normalize: rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
         ") are not within the batch of " + std::to_string(b));
  const size_t values = size_t(norm.c) * size_t(h) * size_t(w);
  std::vector<float> partner(values);  // (c, h, w): one partner row at a time
  for (int r = 0; r < rows; ++r) {
    float* own = out + size_t(r) * values;
    augment_gather_normalize(images, batch + first + r, own, 1, h, w, norm, p, seed, epoch);
    augment_gather_normalize(images, batch + mixup_partner(first + r, draw, b), partner.data(), 1, h, w, norm, p, seed,
                             epoch);
    for (size_t i = 0; i < values; ++i) own[i] = mix_value(own[i], partner[i], draw);
  }
}

}  // namespace ref
}  // namespace kd
