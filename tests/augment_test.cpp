// The augment family's CPU reference (kd/augment.h, src/reference/augment.cpp):
// the sampler on images worked by hand, the transform draw's determinism and
// bounds, the op's gather / channels / normalisation, and its cost.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "kd/augment.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/exact_math.h"
#include "kd/normalize.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Output (ox, oy) of an (h, w) plane under t, for every pixel, row-major.
std::vector<float> sample_all(const std::vector<uint8_t>& plane, int h, int w, const AffineTransform& t) {
  std::vector<float> out;
  for (int oy = 0; oy < h; ++oy) {
    for (int ox = 0; ox < w; ++ox) out.push_back(augment_sample(plane.data(), h, w, t, ox, oy));
  }
  return out;
}

// p(x, y) = 10 x + 20 y on a 5x5 plane: bilinear interpolation of a linear
// function is exact, so an interior sample at (sx, sy) is 10 sx + 20 sy.
std::vector<uint8_t> ramp5x5() {
  std::vector<uint8_t> p(25);
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 5; ++x) p[y * 5 + x] = uint8_t(10 * x + 20 * y);
  }
  return p;
}

// ---------------------------------------------------------------- the sampler, by hand

TEST(AugmentSample, IdentityReturnsEveryPixelExactly) {
  // Odd and even sizes: the centre is a pixel (7) or between pixels (4).
  auto rng = reftest::make_rng(1);
  for (const auto& [h, w] : {std::pair{4, 7}, std::pair{7, 4}, std::pair{1, 1}}) {
    std::vector<uint8_t> plane(size_t(h) * w);
    for (uint8_t& px : plane) px = uint8_t(rng() % 256);
    const std::vector<float> out = sample_all(plane, h, w, affine_transform(0, 0, 0, 1));
    for (size_t i = 0; i < plane.size(); ++i) EXPECT_EQ(out[i], float(plane[i])) << h << "x" << w << " pixel " << i;
  }
}

TEST(AugmentSample, OnePixelShiftMovesContentAndFillsBackground) {
  // 3x4 plane, p(x, y) = 1 + x + 4y. tx = +1 moves the content one pixel right:
  // out(x, y) = p(x - 1, y), and column 0 reads x = -1, background 0.
  // ty = -1 moves it up: out(x, y) = p(x, y + 1), and the last row is background.
  // Integer shifts land on pixel centres (weights exactly 1 and 0): exact results.
  std::vector<uint8_t> plane(12);
  for (int i = 0; i < 12; ++i) plane[i] = uint8_t(1 + i);
  EXPECT_EQ(sample_all(plane, 3, 4, affine_transform(1, 0, 0, 1)), (std::vector<float>{0, 1, 2, 3,  //
                                                                                       0, 5, 6, 7,  //
                                                                                       0, 9, 10, 11}));
  EXPECT_EQ(sample_all(plane, 3, 4, affine_transform(0, -1, 0, 1)), (std::vector<float>{5, 6, 7, 8,     //
                                                                                        9, 10, 11, 12,  //
                                                                                        0, 0, 0, 0}));
}

TEST(AugmentSample, QuarterTurnRotatesCounterClockwise) {
  // 90 degrees about the centre (1, 1) of a 3x3 plane: A = 0, B = 1, so
  // sx = 1 - (oy - 1) = 2 - oy, sy = 1 + (ox - 1) = ox: out(ox, oy) = p(2 - oy, ox),
  // which is numpy's rot90 (counter-clockwise) of [[1,2,3],[4,5,6],[7,8,9]].
  // cos(pi/2) is ~6e-17 in double, not 0: it moves the sample point by ~1e-16 px
  // and the value by far less than the 1e-4 allowed.
  const std::vector<uint8_t> plane = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<float> expected = {3, 6, 9, 2, 5, 8, 1, 4, 7};
  const std::vector<float> out = sample_all(plane, 3, 3, affine_transform(0, 0, 90, 1));
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(out[i], expected[i], 1e-4) << "pixel " << i;
}

TEST(AugmentSample, SmallRotationOfARamp) {
  // 30 degrees (cos 0.8660254, sin 0.5) about (2, 2) of the 5x5 ramp p = 10x + 20y.
  // Coordinates carry float rounding (~2e-7 px) times a slope of at most 20: 1e-4 allows 25x that.
  const std::vector<uint8_t> plane = ramp5x5();
  const AffineTransform t = affine_transform(0, 0, 30, 1);
  const auto at = [&](int ox, int oy) { return augment_sample(plane.data(), 5, 5, t, ox, oy); };
  // (2, 2) is the centre, fixed by any rotation: 10*2 + 20*2.
  EXPECT_NEAR(at(2, 2), 60.0, 1e-4);
  // (2, 0): dx = 0, dy = -2 -> sx = 2 + 0.5*2 = 3, sy = 2 - 0.8660254*2 = 0.2679492:
  // the top-middle output reads from the right of centre (content turned counter-clockwise).
  // 10*3 + 20*0.2679492 = 35.358984.
  EXPECT_NEAR(at(2, 0), 35.358984, 1e-4);
  // (3, 2): dx = 1, dy = 0 -> sx = 2.8660254, sy = 2.5 -> 28.660254 + 50 = 78.660254.
  EXPECT_NEAR(at(3, 2), 78.660254, 1e-4);
  // (0, 4): dx = -2, dy = 2 -> sx = 2 - 1.7320508 - 1 = -0.7320508, sy = 2 - 1 + 1.7320508 = 2.7320508.
  // x0 = -1 is outside (background 0), fx = 0.2679492, y0 = 2, fy = 0.7320508:
  // top = 0 + 0.2679492 * (p(0,2) = 40) = 10.717968, bottom = 0.2679492 * (p(0,3) = 60) = 16.076952,
  // v = 10.717968 + 0.7320508 * 5.358984 = 14.641016.
  EXPECT_NEAR(at(0, 4), 14.641016, 1e-4);
  // (4, 4): sx = 2.7320508, sy = 4.7320508; row 5 is background:
  // top = p(2,4) + 0.7320508 * (p(3,4) - p(2,4)) = 100 + 7.320508, v = top * (1 - 0.7320508) = 28.756443.
  EXPECT_NEAR(at(4, 4), 28.756443, 1e-4);
}

TEST(AugmentSample, ScaleEnlargesAndShrinksAboutTheCentre) {
  // A = 1/s exactly (cos 0 = 1; 1/2 and 1/0.5 are exact), so coordinates are exact.
  const std::vector<uint8_t> plane = ramp5x5();
  const AffineTransform zoom_in = affine_transform(0, 0, 0, 2);
  // s = 2: out(ox, oy) reads (2 + (ox-2)/2, 2 + (oy-2)/2).
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_in, 4, 2), 70.0f);  // (3, 2): 30 + 40
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_in, 3, 1), 55.0f);  // (2.5, 1.5): 25 + 30, half-pixel both ways
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_in, 0, 0), 30.0f);  // (1, 1): the corner now shows (1, 1)
  const AffineTransform zoom_out = affine_transform(0, 0, 0, 0.5f);
  // s = 0.5: out(ox, oy) reads (2 + 2(ox-2), 2 + 2(oy-2)); the image shrinks to the middle 3x3.
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_out, 3, 2), 80.0f);  // (4, 2): 40 + 40
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_out, 4, 2), 0.0f);   // (6, 2): outside, background
  EXPECT_EQ(augment_sample(plane.data(), 5, 5, zoom_out, 2, 1), 20.0f);  // (2, 0): 20 + 0
}

TEST(AugmentSample, BilinearWeightsAtHalfAndQuarterPixels) {
  // One bright pixel (1, 1) = 200 in a 3x3 plane of zeros, so each output is
  // 200 times the weight of that pixel among the four taps.
  std::vector<uint8_t> plane(9, 0);
  plane[4] = 200;
  // Shift (0.5, 0.5): out(ox, oy) reads (ox - 0.5, oy - 0.5), four taps of weight 1/4 each.
  const AffineTransform half = affine_transform(0.5f, 0.5f, 0, 1);
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, half, 1, 1), 50.0f);  // taps (0..1, 0..1)
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, half, 2, 2), 50.0f);  // taps (1..2, 1..2)
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, half, 2, 1), 50.0f);  // taps (1..2, 0..1)
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, half, 0, 0), 0.0f);   // taps (-1..0, -1..0): no bright one
  // Shift (0.25, 0.75): out(1, 1) reads (0.75, 0.25): x0 = y0 = 0, fx = 0.75, fy = 0.25;
  // the bright tap (x0+1, y0+1) has weight fx * fy = 0.1875 -> 37.5. Its neighbour out(1, 2)
  // reads (0.75, 1.25): the bright tap is (x0+1, y0) with weight fx (1 - fy) = 0.5625 -> 112.5.
  const AffineTransform quarter = affine_transform(0.25f, 0.75f, 0, 1);
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, quarter, 1, 1), 37.5f);
  EXPECT_EQ(augment_sample(plane.data(), 3, 3, quarter, 1, 2), 112.5f);
}

// ---------------------------------------------------------------- the draw

TEST(AugmentTransform, TaylorSinCosMatchLibmOverTheWholeRange) {
  // |x| <= pi (rotations up to 180 degrees); the series error bound is 1e-11, and
  // rounding in the Horner steps adds a few 1e-16: 1e-10 is far below float resolution.
  for (int i = -1000; i <= 1000; ++i) {
    const double x = kPi * i / 1000.0;
    double s, c;
    exact::sin_cos(x, s, c);
    EXPECT_NEAR(s, std::sin(x), 1e-10) << x;
    EXPECT_NEAR(c, std::cos(x), 1e-10) << x;
  }
}

TEST(AugmentTransform, DisabledIsTheIdentity) {
  const AffineTransform t = augment_transform(AugmentParams{}, 1, 2, 3);
  EXPECT_EQ(std::tie(t.tx, t.ty, t.angle_deg, t.scale, t.a, t.b), std::make_tuple(0.f, 0.f, 0.f, 1.f, 1.f, 0.f));
}

TEST(AugmentTransform, DeterministicAndDistinctAcrossSeedEpochAndSample) {
  AugmentParams p;
  p.enabled = true;
  const auto key = [&](uint64_t seed, uint64_t epoch, uint64_t sample) {
    const AffineTransform t = augment_transform(p, seed, epoch, sample);
    return std::make_tuple(t.tx, t.ty, t.angle_deg, t.scale, t.a, t.b);
  };
  // The same (seed, epoch, sample) gives the same bits, call after call.
  EXPECT_EQ(key(7, 3, 41), key(7, 3, 41));
  // Changing any one of the three gives a different transform: 4 x 24 random
  // bits, so a collision by chance has probability ~2^-96 per pair.
  std::set<std::tuple<float, float, float, float, float, float>> seen;
  int draws = 0;
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(1) << 32, ~uint64_t(0)}) {
    for (uint64_t epoch : {uint64_t(0), uint64_t(1), uint64_t(19), uint64_t(1) << 32}) {
      for (uint64_t sample : {uint64_t(0), uint64_t(1), uint64_t(54999), uint64_t(1) << 32}) {
        seen.insert(key(seed, epoch, sample));
        ++draws;
      }
    }
  }
  EXPECT_EQ(int(seen.size()), draws);
}

TEST(AugmentTransform, DrawsDoNotReuseDropoutBlocks) {
  // Dropout draws block `sample` of step `epoch` with the same kind of key; the
  // augmentation's counter differs in word 3, so even a shared key gives other bits.
  for (uint64_t i = 0; i < 100; ++i) {
    const Philox4 dropout = philox_draw_block(/*seed=*/5, /*step=*/i % 7, /*block=*/i);
    const Philox4 augment = philox4x32_10(Philox4{{uint32_t(i), 0, uint32_t(i % 7), kAugmentStream}}, 5, 0);
    EXPECT_NE(std::memcmp(&dropout, &augment, sizeof(Philox4)), 0);
    const AffineTransform t = [&] {
      AugmentParams p;
      p.enabled = true;
      return augment_transform(p, 5, i % 7, i);
    }();
    // The draw uses exactly that block: lane 0 -> tx = 2 (2u - 1).
    EXPECT_EQ(t.tx, float(2.0 * (2.0 * philox_lane_uniform(augment.v[0]) - 1.0)));
  }
}

TEST(AugmentTransform, StaysWithinBoundsAndFillsThem) {
  AugmentParams p;  // the defaults: shift 2 px, rotation 12 degrees, scale 0.9-1.1
  p.enabled = true;
  const int n = 20000;
  double lo[4] = {1e9, 1e9, 1e9, 1e9}, hi[4] = {-1e9, -1e9, -1e9, -1e9}, sum[4] = {0, 0, 0, 0};
  for (int i = 0; i < n; ++i) {
    const AffineTransform t = augment_transform(p, 123, uint64_t(i % 20), uint64_t(i));
    const double v[4] = {t.tx, t.ty, t.angle_deg, t.scale};
    for (int k = 0; k < 4; ++k) {
      lo[k] = std::min(lo[k], v[k]);
      hi[k] = std::max(hi[k], v[k]);
      sum[k] += v[k];
    }
    // A and B are cos / s and sin / s of the drawn angle, to float rounding (libm as the check).
    const double theta = t.angle_deg * kPi / 180.0;
    ASSERT_NEAR(t.a, std::cos(theta) / t.scale, 2e-7) << i;
    ASSERT_NEAR(t.b, std::sin(theta) / t.scale, 2e-7) << i;
  }
  const double bound_lo[4] = {-2, -2, -12, 0.9f}, bound_hi[4] = {2, 2, 12, 1.1f};
  for (int k = 0; k < 4; ++k) {
    SCOPED_TRACE(k);
    EXPECT_GE(lo[k], bound_lo[k]);
    EXPECT_LE(hi[k], bound_hi[k]);
    // 20000 uniform draws leave gaps of ~1/20000 of the range at either end; 1% is ample.
    const double span = bound_hi[k] - bound_lo[k];
    EXPECT_LT(lo[k], bound_lo[k] + 0.01 * span);
    EXPECT_GT(hi[k], bound_hi[k] - 0.01 * span);
    // The mean is the range's middle: its standard error is span / sqrt(12 n) = 0.002 span; 6 sd.
    EXPECT_NEAR(sum[k] / n, 0.5 * (bound_lo[k] + bound_hi[k]), 0.012 * span);
  }
}

TEST(AugmentTransform, ValidationNamesTheField) {
  const auto message = [](void (*edit)(AugmentParams&)) {
    AugmentParams p;
    p.enabled = true;
    edit(p);
    try {
      validate_augment(p, "--augment");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([](AugmentParams& p) { p.max_shift = -1; }).find("--augment: augmentation max_shift"),
            std::string::npos);
  EXPECT_NE(message([](AugmentParams& p) { p.max_rotate_deg = 200; }).find("max_rotate_deg"), std::string::npos);
  EXPECT_NE(message([](AugmentParams& p) { p.max_rotate_deg = NAN; }).find("max_rotate_deg"), std::string::npos);
  EXPECT_NE(message([](AugmentParams& p) { p.min_scale = 0; }).find("min_scale"), std::string::npos);
  EXPECT_NE(message([](AugmentParams& p) { p.max_scale = 0.8f; }).find("max_scale (at least min_scale)"),
            std::string::npos);
  EXPECT_EQ(message([](AugmentParams&) {}), "no error");
}

// ---------------------------------------------------------------- the op

std::vector<uint8_t> random_images(size_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> v(n);
  for (uint8_t& px : v) px = uint8_t(rng() % 256);
  return v;
}

TEST(AugmentGatherNormalize, WithoutAugmentationIsGatherNormalizeBitForBit) {
  // Disabled, and enabled with every range zero (the real draw and sampler at the
  // identity), both must reproduce the plain batch op to the last bit.
  auto rng = reftest::make_rng(2);
  const int n = 9, c = 2, h = 5, w = 6, b = 7;
  const std::vector<uint8_t> images = random_images(size_t(n) * c * h * w, rng);
  const std::vector<int32_t> idx = {3, 0, 8, 3, 5, 1, 7};
  std::vector<float> plain = reftest::nan_filled(size_t(b) * c * h * w);
  ref::gather_normalize(images.data(), idx.data(), plain.data(), b, h * w,
                        uniform_normalization(c, kPixelMean, kPixelStd));
  AugmentParams off;
  AugmentParams zero;
  zero.enabled = true;
  zero.max_shift = zero.max_rotate_deg = 0;
  zero.min_scale = zero.max_scale = 1;
  for (const AugmentParams& p : {off, zero}) {
    std::vector<float> out = reftest::nan_filled(plain.size());
    ref::augment_gather_normalize(images.data(), idx.data(), out.data(), b, h, w,
                                  uniform_normalization(c, kPixelMean, kPixelStd), p, 99, 4);
    EXPECT_EQ(std::memcmp(out.data(), plain.data(), plain.size() * sizeof(float)), 0) << "enabled " << p.enabled;
  }
}

TEST(AugmentGatherNormalize, RowsFollowIdxAndChannelsShareTheTransform) {
  auto rng = reftest::make_rng(3);
  const int n = 5, c = 3, h = 9, w = 8, b = 4;
  std::vector<uint8_t> images = random_images(size_t(n) * c * h * w, rng);
  // Sample 2 has three identical channels: one transform per sample makes three identical outputs.
  for (int ch = 1; ch < c; ++ch) {
    std::memcpy(&images[(size_t(2) * c + ch) * h * w], &images[size_t(2) * c * h * w], size_t(h) * w);
  }
  const std::vector<int32_t> idx = {2, 4, 2, 0};
  AugmentParams p;
  p.enabled = true;
  p.max_shift = 3;
  p.max_rotate_deg = 40;
  const uint64_t seed = 11, epoch = 6;
  std::vector<float> out = reftest::nan_filled(size_t(b) * c * h * w);
  ref::augment_gather_normalize(images.data(), idx.data(), out.data(), b, h, w, uniform_normalization(c, 0.5f, 0.25f),
                                p, seed, epoch);
  const size_t plane = size_t(h) * w;
  for (int row = 0; row < b; ++row) {
    const AffineTransform t = augment_transform(p, seed, epoch, uint64_t(idx[row]));
    for (int ch = 0; ch < c; ++ch) {
      const uint8_t* src = &images[(size_t(idx[row]) * c + ch) * plane];
      for (int oy = 0; oy < h; ++oy) {
        for (int ox = 0; ox < w; ++ox) {
          // (raw / 255 - 0.5) / 0.25. Bit-equal in a baseline x86-64 build; a build for an
          // FMA-capable -march may contract augment_sample's products differently here and
          // inside the op (~1 ulp of a coordinate, <= ~1e-3 raw, 1.6e-5 here): 1e-4 allows that.
          const float expected = float((augment_sample(src, h, w, t, ox, oy) / 255.0 - 0.5) / 0.25);
          ASSERT_NEAR(out[(size_t(row) * c + ch) * plane + size_t(oy) * w + ox], expected, 1e-4)
              << "row " << row << " channel " << ch << " (" << ox << ", " << oy << ")";
        }
      }
    }
  }
  // Rows 0 and 2 are both sample 2 in the same epoch: the same view.
  EXPECT_EQ(std::memcmp(&out[0], &out[2 * c * plane], c * plane * sizeof(float)), 0);
  for (int ch = 1; ch < c; ++ch) EXPECT_EQ(std::memcmp(&out[0], &out[ch * plane], plane * sizeof(float)), 0);
  // The transform really moved something, and the next epoch sees another view.
  std::vector<float> plain(out.size()), next(out.size());
  ref::gather_normalize(images.data(), idx.data(), plain.data(), b, int64_t(plane),
                        uniform_normalization(c, 0.5f, 0.25f));
  ref::augment_gather_normalize(images.data(), idx.data(), next.data(), b, h, w, uniform_normalization(c, 0.5f, 0.25f),
                                p, seed, epoch + 1);
  EXPECT_NE(out, plain);
  EXPECT_NE(out, next);
}

TEST(AugmentGatherNormalize, RejectsBadParameters) {
  AugmentParams p;
  p.enabled = true;
  p.min_scale = -1;
  const uint8_t image = 0;
  const int32_t idx = 0;
  float out = 0;
  EXPECT_THROW(ref::augment_gather_normalize(&image, &idx, &out, 1, 1, 1, uniform_normalization(1, 0, 1), p, 0, 0),
               Error);
}

// The reference is also what the fast CPU engine runs per step, so its cost
// is recorded: one batch of 64 MNIST images with the default augmentation.
// Measured 2026-12-07 on a shared 2-core machine, Release build: 0.34 ms per
// batch (best of 20), against a 15-30 ms fast-CPU training step. The bound only
// catches a pathological regression (a sanitizer build is ~10x slower).
// ---------------------------------------------------------------- mixup

TEST(MixupDraw, OffIsTheIdentityAndBadArgumentsAreRefused) {
  const MixupDraw off = mixup_draw(0.0f, 1, 2, 64, 64);
  EXPECT_EQ(std::tie(off.lambda, off.partner_weight, off.offset), std::make_tuple(1.0f, 0.0f, 0));
  const auto message = [](float a, int b) {
    try {
      mixup_draw(a, 0, 1, 0, b);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(-0.1f, 8).find("mixup_draw: the concentration must be in [0, 1000"), std::string::npos);
  EXPECT_NE(message(NAN, 8).find("concentration"), std::string::npos);
  EXPECT_NE(message(0.2f, 0).find("mixup_draw: a batch needs b >= 1 rows, got 0"), std::string::npos);
}

TEST(MixupDraw, DeterministicDistinctAndAPartnerOtherThanItself) {
  const auto key = [](uint64_t seed, uint64_t epoch, int64_t begin, int b) {
    const MixupDraw d = mixup_draw(0.4f, seed, epoch, begin, b);
    return std::make_tuple(d.lambda, d.offset);
  };
  EXPECT_EQ(key(7, 3, 128, 64), key(7, 3, 128, 64));
  // Any one of seed, epoch and batch start changed gives another lambda (a
  // double rounded to float: a collision by chance is ~2^-24 per pair).
  std::set<float> lambdas;
  int draws = 0;
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(1) << 32})
    for (uint64_t epoch : {uint64_t(1), uint64_t(2), uint64_t(1) << 32})
      for (int64_t begin : {0, 64, 59968}) {
        lambdas.insert(std::get<0>(key(seed, epoch, begin, 64)));
        ++draws;
      }
  EXPECT_EQ(int(lambdas.size()), draws);
  // The offset is in [1, b - 1], so no row is its own partner, and it reaches both ends.
  for (int b : {2, 3, 64}) {
    std::set<int> offsets;
    for (int64_t begin = 0; begin < 2000 * 64; begin += 64) {
      const MixupDraw d = mixup_draw(0.4f, 5, 1, begin, b);
      ASSERT_GE(d.offset, 1);
      ASSERT_LE(d.offset, b - 1);
      offsets.insert(d.offset);
      ASSERT_EQ(d.partner_weight, 1.0f - d.lambda);
    }
    EXPECT_EQ(int(offsets.size()), b - 1) << "b = " << b;
  }
  EXPECT_EQ(mixup_draw(0.4f, 5, 1, 0, 1).offset, 0) << "a batch of one can only mix with itself";
}

// lambda ~ Beta(A, A): mean 1/2 and variance 1 / (4 (2A + 1)), at a
// concentration below 1 (Gamma's boosted path: mostly near 0 or 1), at 1 (the
// uniform) and above 1. 20,000 draws: the standard error of the mean is
// sqrt(var / n) <= 0.0028, of the variance ~0.002; tolerances of ~5 of them.
TEST(MixupDraw, LambdaFollowsBeta) {
  const int n = 20000;
  for (float a : {0.2f, 1.0f, 4.0f}) {
    SCOPED_TRACE(a);
    double sum = 0, sum_sq = 0;
    int below_quarter = 0;
    for (int i = 0; i < n; ++i) {
      const double lambda = mixup_draw(a, 11, 1 + i / 1000, int64_t(i % 1000) * 64, 64).lambda;
      ASSERT_GE(lambda, 0.0);
      ASSERT_LE(lambda, 1.0);
      sum += lambda;
      sum_sq += lambda * lambda;
      below_quarter += lambda < 0.25;
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.012);
    EXPECT_NEAR(var, 1.0 / (4.0 * (2.0 * a + 1.0)), 0.01);
    // P(lambda < 1/4): 1/4 for the uniform; Beta(0.2, 0.2) puts ~0.39 there, Beta(4, 4) ~0.07.
    if (a == 1.0f) {
      EXPECT_NEAR(double(below_quarter) / n, 0.25, 0.015);
    }
  }
}

TEST(MixupGatherNormalize, MixesEachRowWithItsPartnerByHand) {
  // Three 1x1x2 images, normalisation mean 0, std 1: x = pixel / 255.
  const std::vector<uint8_t> images = {255, 0,    //
                                       0,   255,  //
                                       51,  102};
  const std::vector<int32_t> batch = {2, 0, 1};
  const Normalization unit = uniform_normalization(1, 0.0f, 1.0f);
  const MixupDraw draw{0.75f, 0.25f, 1};  // row i mixes with row (i + 1) mod 3
  std::vector<float> out = reftest::nan_filled(6);
  ref::mixup_gather_normalize(images.data(), batch.data(), out.data(), 3, 0, 3, 1, 2, unit, AugmentParams{}, 0, 1,
                              draw);
  // Row 0: 0.75 * image 2 + 0.25 * image 0 = (0.75 * 0.2 + 0.25, 0.75 * 0.4); row 1: 0.75 * image 0 + 0.25 *
  // image 1; row 2: 0.75 * image 1 + 0.25 * image 2.
  const std::vector<float> want = {0.4f, 0.3f, 0.75f, 0.25f, 0.05f, 0.85f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-7) << i;
}

// Each row is its own augmented view mixed with its partner's (each under its
// own transform), exactly as mix_value of the two augment_gather_normalize
// rows; a slice of the batch is those rows of the whole (data-parallel ranks).
TEST(MixupGatherNormalize, IsTheMixOfTheAugmentedRowsAndSlicesAgree) {
  auto rng = reftest::make_rng(4);
  const int n = 11, c = 2, h = 7, w = 6, b = 5;
  const size_t values = size_t(c) * h * w;
  const std::vector<uint8_t> images = random_images(n * values, rng);
  const std::vector<int32_t> batch = {9, 2, 2, 0, 7};
  const Normalization norm = uniform_normalization(c, kPixelMean, kPixelStd);
  AugmentParams p;
  p.enabled = true;
  const MixupDraw draw = mixup_draw(0.4f, 21, 3, 128, b);
  ASSERT_NE(draw.lambda, 1.0f);
  std::vector<float> views = reftest::nan_filled(b * values), mixed = reftest::nan_filled(b * values);
  ref::augment_gather_normalize(images.data(), batch.data(), views.data(), b, h, w, norm, p, 21, 3);
  ref::mixup_gather_normalize(images.data(), batch.data(), mixed.data(), b, 0, b, h, w, norm, p, 21, 3, draw);
  for (int row = 0; row < b; ++row) {
    const float* own = views.data() + row * values;
    const float* partner = views.data() + mixup_partner(row, draw, b) * values;
    for (size_t i = 0; i < values; ++i)
      ASSERT_EQ(mixed[row * values + i], mix_value(own[i], partner[i], draw)) << row << " " << i;
  }
  std::vector<float> slice = reftest::nan_filled(2 * values);
  ref::mixup_gather_normalize(images.data(), batch.data(), slice.data(), b, 3, 2, h, w, norm, p, 21, 3, draw);
  EXPECT_EQ(std::memcmp(slice.data(), mixed.data() + 3 * values, slice.size() * sizeof(float)), 0);
  EXPECT_THROW(
      ref::mixup_gather_normalize(images.data(), batch.data(), slice.data(), b, 4, 2, h, w, norm, p, 21, 3, draw),
      Error);
}

TEST(AugmentGatherNormalize, CostOfABatchOf64Mnist) {
  auto rng = reftest::make_rng(4);
  const int n = 1000, b = 64;
  const std::vector<uint8_t> images = random_images(size_t(n) * 784, rng);
  std::vector<int32_t> idx(b);
  for (int32_t& i : idx) i = int32_t(rng() % n);
  AugmentParams p;
  p.enabled = true;
  std::vector<float> out(size_t(b) * 784);
  // Best of 20 of gather(rep), in seconds.
  const auto best_of_20 = [](const std::function<void(int)>& gather) {
    double best = 1e9;
    for (int rep = 0; rep < 20; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      gather(rep);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double augmented = best_of_20([&](int rep) {
    ref::augment_gather_normalize(images.data(), idx.data(), out.data(), b, 28, 28, Normalization{}, p, 1,
                                  uint64_t(rep));
  });
  // Mixup samples two augmented images per row and draws lambda once per batch.
  const double mixed = best_of_20([&](int rep) {
    const MixupDraw draw = mixup_draw(0.2f, 1, uint64_t(rep) + 1, 0, b);
    ref::mixup_gather_normalize(images.data(), idx.data(), out.data(), b, 0, b, 28, 28, Normalization{}, p, 1,
                                uint64_t(rep) + 1, draw);
  });
  std::printf("[ cost     ] ref::augment_gather_normalize, 64 x 1x28x28: %.3f ms (best of 20)\n", augmented * 1e3);
  std::printf("[ cost     ] ref::mixup_gather_normalize with its draw, 64 x 1x28x28: %.3f ms (best of 20)\n",
              mixed * 1e3);
  EXPECT_LT(augmented, 0.05);
  EXPECT_LT(mixed, 0.1);
}

}  // namespace
}  // namespace kd
