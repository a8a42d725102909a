// LayerPlan: the fused ReLUs, views, masks and activation bytes both engines
// size their buffers by, worked out by hand in the comments next to them.
#include <gtest/gtest.h>

#include <vector>

#include "kd/arch.h"
#include "kd/layer_plan.h"

namespace kd {
namespace {

// 1x10x10 input (100 per sample):
//   0 conv:4:3:1:1  4x10x10 = 400
//   1 relu          400, fused into the conv: a view
//   2 maxpool:2     4x5x5 = 100, argmax mask
//   3 relu          100, after a pool: computed, not fused
//   4 dropout:0.25  100, keep mask in training; a view in inference
//   5 flatten       100, always a view
//   6 dense:3       3
constexpr const char* kNet = "conv:4:3:1:1,relu,maxpool:2,relu,dropout:0.25,flatten,dense:3";

Arch net() { return parse_arch(kNet, Shape{1, 10, 10, false}, 3, "--student-arch"); }

TEST(LayerPlan, FusesOnlyTheReluRightAfterAConvOrDense) {
  const LayerPlan plan(net());
  const std::vector<bool> fused = {false, true, false, false, false, false, false};
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_EQ(plan.relu_fused(i), fused[i]) << "layer " << i;
}

TEST(LayerPlan, ViewsAndMasksInTrainingAndInference) {
  const LayerPlan plan(net());
  const std::vector<bool> view_training = {false, true, false, false, false, true, false};
  const std::vector<bool> view_inference = {false, true, false, false, true, true, false};
  const std::vector<bool> mask_training = {false, false, true, false, true, false, false};
  const std::vector<bool> mask_inference = {false, false, true, false, false, false, false};
  for (size_t i = 0; i < view_training.size(); ++i) {
    EXPECT_EQ(plan.is_view(i, true), view_training[i]) << "layer " << i;
    EXPECT_EQ(plan.is_view(i, false), view_inference[i]) << "layer " << i;
    EXPECT_EQ(plan.keeps_mask(i, true), mask_training[i]) << "layer " << i;
    EXPECT_EQ(plan.keeps_mask(i, false), mask_inference[i]) << "layer " << i;
  }
}

TEST(LayerPlan, ActivationBytes) {
  const LayerPlan plan(net());
  // Training, per sample: floats 100 input + 400 conv + 100 pool + 100 relu + 100 dropout + 3 dense
  // + 2 x 400 gradient buffers (the widest layer) = 1603 -> 6412 bytes, masks 100 + 100 -> 6612.
  EXPECT_EQ(plan.activation_bytes(1, true), 6612);
  EXPECT_EQ(plan.activation_bytes(5, true), 5 * 6612);
  // Inference, per sample: floats 100 input + 2 x 400 alternating buffers = 900 -> 3600 bytes,
  // one mask scratch of 100 (the pool) -> 3700.
  EXPECT_EQ(plan.activation_bytes(1, false), 3700);
  EXPECT_EQ(plan.activation_bytes(5, false), 5 * 3700);
}

// The gradient buffers are as wide as the input when no layer is wider.
TEST(LayerPlan, GradientBuffersCoverTheInput) {
  const LayerPlan plan(parse_arch("flatten,dense:3", Shape{1, 10, 10, false}, 3, "--student-arch"));
  // Training: 100 input + 3 dense + 2 x 100 = 303 floats -> 1212 bytes; no masks.
  EXPECT_EQ(plan.activation_bytes(1, true), 1212);
  // Inference: 100 input + 2 x 3 (the only non-view layer) = 106 floats -> 424 bytes.
  EXPECT_EQ(plan.activation_bytes(1, false), 424);
}

}  // namespace
}  // namespace kd
