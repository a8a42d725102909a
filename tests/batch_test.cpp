// CPU reference batch gather + normalisation against hand-computed values.
#include <gtest/gtest.h>

#include <vector>

#include "kd/data.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::ref {
namespace {

TEST(GatherNormalize, HandValues) {
  // Three 2x2 "images" (4 pixels each); rows are gathered out of order and one twice.
  const std::vector<uint8_t> images = {0,   255, 51,  204,  //
                                       1,   2,   3,   4,    //
                                       255, 0,   204, 51};
  const std::vector<int32_t> idx = {2, 0, 2};
  std::vector<float> out = reftest::nan_filled(idx.size() * 4);
  gather_normalize(images.data(), idx.data(), out.data(), 3, 4, uniform_normalization(1, 0.5f, 0.25f));
  // (px / 255 - 0.5) / 0.25:  0 -> -2,  255 -> 2,  51 -> (0.2 - 0.5) / 0.25 = -1.2,  204 -> 1.2
  const std::vector<float> expected = {2, -2, 1.2f, -1.2f, -2, 2, -1.2f, 1.2f, 2, -2, 1.2f, -1.2f};
  for (size_t i = 0; i < out.size(); ++i) {
    // Computed in double and rounded once: within half an ulp of the exact value (|v| <= 2 -> 1.2e-7).
    EXPECT_NEAR(out[i], expected[i], 2.4e-7) << "element " << i;
  }
}

TEST(GatherNormalize, MnistStatistics) {
  const std::vector<uint8_t> images = {0, 128, 255};
  const std::vector<int32_t> idx = {0};
  std::vector<float> out = reftest::nan_filled(3);
  gather_normalize(images.data(), idx.data(), out.data(), 1, 3, Normalization{});
  // By hand with mean 0.1307, std 0.3081: 0 -> -0.1307 / 0.3081 = -0.4242129...,
  // 128 -> (0.5019608 - 0.1307) / 0.3081 = 1.2050009..., 255 -> 0.8693 / 0.3081 = 2.8214865...
  // The float constants differ from the decimals by ~1e-8 relative, far below the 1e-5 bound.
  EXPECT_NEAR(out[0], -0.4242129, 1e-5);
  EXPECT_NEAR(out[1], 1.2050009, 1e-5);
  EXPECT_NEAR(out[2], 2.8214866, 1e-5);
}

}  // namespace
}  // namespace kd::ref
