// src/gpu/param_layout.h: the CUDA engine's 16-byte-aligned parameter layout
// (host code, so it is tested here, without a GPU).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "../src/gpu/param_layout.h"
#include "kd/arch.h"
#include "kd/error.h"
#include "kd/cpu_model.h"

namespace {

using kd::cuda::kParamAlignFloats;
using kd::cuda::ParamLayout;

const kd::Shape kImage{1, 28, 28, false};

// Every tensor starts at a multiple of 4 floats, in packed order, and no two overlap.
void expect_aligned_and_ordered(const kd::Arch& arch) {
  SCOPED_TRACE(arch.text);
  const ParamLayout layout(arch);
  int64_t end = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const kd::Layer& l = arch.layers[i];
    if (l.param_count() == 0) continue;
    EXPECT_EQ(layout.weight_offset(i) % kParamAlignFloats, 0) << l.name;
    EXPECT_EQ(layout.bias_offset(i) % kParamAlignFloats, 0) << l.name;
    EXPECT_GE(layout.weight_offset(i), end) << l.name;
    EXPECT_GE(layout.bias_offset(i), layout.weight_offset(i) + l.weight_count) << l.name;
    end = layout.bias_offset(i) + l.bias_count;
  }
  EXPECT_GE(layout.count(), end);
  EXPECT_LT(layout.count(), arch.param_count + 2 * kParamAlignFloats * int64_t(arch.layers.size()));
}

TEST(ParamLayout, EveryTensorStartsOn16Bytes) {
  expect_aligned_and_ordered(kd::parse_arch(kd::kDefaultTeacherArch, kImage, 10, "--teacher-arch"));
  expect_aligned_and_ordered(kd::parse_arch(kd::kDefaultStudentArch, kImage, 10, "--student-arch"));
  expect_aligned_and_ordered(
      kd::parse_arch("conv:3:3,relu,conv:5:3,relu,maxpool:2,flatten,dense:7,relu,dense:10", kImage, 10, "--arch"));
}

// The default teacher's tensors (32*9, 32, 64*288, 64, 128*9216, 128, 10*128,
// 10) are all multiples of 4 but fc2.bias: the layout is the packed one plus
// nothing but trailing padding.
TEST(ParamLayout, DefaultTeacherIsPackedAlready) {
  const kd::Arch teacher = kd::parse_arch(kd::kDefaultTeacherArch, kImage, 10, "--teacher-arch");
  const ParamLayout layout(teacher);
  for (size_t i = 0; i < teacher.layers.size(); ++i) {
    if (teacher.layers[i].param_count() == 0) continue;
    EXPECT_EQ(layout.weight_offset(i), teacher.layers[i].param_offset);
  }
  EXPECT_EQ(layout.count(), 1199884);  // 1,199,882 parameters + 2 floats after fc2.bias
}

// Packed -> device -> packed is the identity; the gaps are 0 and every packed
// value lands at its tensor's device offset.
TEST(ParamLayout, RoundTripsAndZeroesTheGaps) {
  const kd::Arch odd =
      kd::parse_arch("conv:3:3,relu,conv:5:3,relu,maxpool:2,flatten,dense:7,relu,dense:10", kImage, 10, "--arch");
  const ParamLayout layout(odd);
  std::vector<float> packed(size_t(odd.param_count));
  std::iota(packed.begin(), packed.end(), 1.0f);  // every value nonzero and distinct
  const std::vector<float> device = layout.to_device(packed);
  ASSERT_EQ(int64_t(device.size()), layout.count());
  EXPECT_EQ(layout.to_packed(device), packed);
  int64_t nonzero = 0;
  for (const float v : device) nonzero += v != 0.0f;
  EXPECT_EQ(nonzero, odd.param_count);
  for (const kd::ParamTensor& t : kd::param_tensors(odd)) {
    SCOPED_TRACE(t.name);
    size_t layer = 0;
    while (odd.layers[layer].name + ".weight" != t.name && odd.layers[layer].name + ".bias" != t.name) ++layer;
    const bool weight = t.name == odd.layers[layer].name + ".weight";
    const int64_t at = weight ? layout.weight_offset(layer) : layout.bias_offset(layer);
    EXPECT_EQ(device[size_t(at)], packed[size_t(t.offset)]);
    EXPECT_EQ(device[size_t(at + t.count - 1)], packed[size_t(t.offset + t.count - 1)]);
  }
  EXPECT_TRUE(layout.to_packed({}).empty());  // SGD's absent second moments
  EXPECT_THROW(layout.to_device(std::vector<float>(3)), kd::Error);
  EXPECT_THROW(layout.to_packed(std::vector<float>(3)), kd::Error);
}

}  // namespace
