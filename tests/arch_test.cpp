// parse_arch: shapes, parameter layout and every way an arch string is rejected.
// Expected shapes and counts are worked out by hand in the comments next to them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/error.h"

namespace kd {
namespace {

const Shape kMnist{1, 28, 28, false};

Arch mnist(const std::string& text, int classes = 10) { return parse_arch(text, kMnist, classes, "--teacher-arch"); }

// The message parse_arch throws for `text`, or a test failure when it accepts it.
std::string rejection(const std::string& text, Shape input = kMnist, int classes = 10) {
  try {
    parse_arch(text, input, classes, "--student-arch");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "'" << text << "' was accepted";
  return "";
}

Shape chw(int c, int h, int w) { return Shape{c, h, w, false}; }
Shape features(int n) { return Shape{n, 1, 1, true}; }

TEST(Arch, DefaultTeacherShapesAtEveryLayer) {
  const Arch a = mnist(kDefaultTeacherArch);
  // 28 -3+1 = 26, 26 -3+1 = 24, 24/2 = 12, 64*12*12 = 9216.
  const std::vector<std::pair<LayerKind, Shape>> expected = {
      {LayerKind::Conv, chw(32, 26, 26)},    {LayerKind::Relu, chw(32, 26, 26)},
      {LayerKind::Conv, chw(64, 24, 24)},    {LayerKind::Relu, chw(64, 24, 24)},
      {LayerKind::MaxPool, chw(64, 12, 12)}, {LayerKind::Dropout, chw(64, 12, 12)},
      {LayerKind::Flatten, features(9216)},  {LayerKind::Dense, features(128)},
      {LayerKind::Relu, features(128)},      {LayerKind::Dropout, features(128)},
      {LayerKind::Dense, features(10)}};
  ASSERT_EQ(a.layers.size(), expected.size());
  Shape in = kMnist;
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i) + " " + a.layers[i].token);
    EXPECT_EQ(a.layers[i].kind, expected[i].first);
    EXPECT_EQ(a.layers[i].in, in);
    EXPECT_EQ(a.layers[i].out_shape, expected[i].second);
    in = expected[i].second;
  }
  EXPECT_EQ(a.input, kMnist);
  EXPECT_EQ(a.output, features(10));
  EXPECT_FLOAT_EQ(a.layers[5].drop, 0.25f);
  EXPECT_FLOAT_EQ(a.layers[9].drop, 0.5f);
  EXPECT_TRUE(a.has_conv());
  EXPECT_TRUE(a.has_dropout());
}

TEST(Arch, DefaultsAdaptToTheDataAndStayMnistsOnMnist) {
  EXPECT_EQ(adapt_default_arch(kDefaultTeacherArch, kMnist, 10), kDefaultTeacherArch);
  EXPECT_EQ(adapt_default_arch(kDefaultStudentArch, kMnist, 10), kDefaultStudentArch);
  EXPECT_EQ(adapt_default_arch("flatten,dense:10", Shape{3, 32, 32, false}, 4), "flatten,dense:10") << "not a default";
  const Shape cifar{3, 32, 32, false};
  const std::string teacher = adapt_default_arch(kDefaultTeacherArch, cifar, 100);
  EXPECT_EQ(teacher,
            "conv:32:3,relu,conv:64:3,relu,maxpool:2,maxpool:2,dropout:0.25,flatten,dense:128,relu,dropout:0.5,"
            "dense:100");
  EXPECT_EQ(parse_arch(teacher, cifar, 100, "--teacher-arch").layers[8].in.c, 64 * 7 * 7);
  EXPECT_EQ(adapt_default_arch(kDefaultStudentArch, cifar, 3), "flatten,dense:256,relu,dense:128,relu,dense:3");
  // Large images get as many pools as keep fc1 at MNIST's 9,216 inputs or below.
  for (int side : {6, 29, 64, 224, 1000}) {
    const Shape grey{1, side, side, false};
    const Arch a = parse_arch(adapt_default_arch(kDefaultTeacherArch, grey, 2), grey, 2, "--teacher-arch");
    for (const Layer& l : a.layers) {
      if (l.kind == LayerKind::Flatten) EXPECT_LE(l.out_shape.c, 9216) << side;
    }
  }
}

TEST(Arch, DefaultParameterCounts) {
  // conv1 32*1*9+32 = 320, conv2 64*32*9+64 = 18496, fc1 128*9216+128 = 1179776, fc2 128*10+10 = 1290.
  EXPECT_EQ(mnist(kDefaultTeacherArch).param_count, 1199882);
  // fc1 784*256+256 = 200960, fc2 256*128+128 = 32896, fc3 128*10+10 = 1290.
  const Arch s = mnist(kDefaultStudentArch);
  EXPECT_EQ(s.param_count, 235146);
  EXPECT_FALSE(s.has_conv());
  EXPECT_FALSE(s.has_dropout());
  EXPECT_EQ(s.layers[0].out_shape, features(784));
}

struct ParamLayout {
  size_t layer;
  const char* name;
  int64_t weight_count, bias_count, offset, fan_in;
};

TEST(Arch, TeacherParameterNamesOffsetsAndShapes) {
  const Arch a = mnist(kDefaultTeacherArch);
  // Offsets are the running sums of the counts above: 0, 320, 320+18496, 18816+1179776.
  const ParamLayout expected[] = {{0, "conv1", 32 * 1 * 3 * 3, 32, 0, 1 * 3 * 3},
                                  {2, "conv2", 64 * 32 * 3 * 3, 64, 320, 32 * 3 * 3},
                                  {7, "fc1", 128 * 9216, 128, 18816, 9216},
                                  {10, "fc2", 10 * 128, 10, 1198592, 128}};
  for (const ParamLayout& e : expected) {
    const Layer& l = a.layers[e.layer];
    SCOPED_TRACE(e.name);
    EXPECT_EQ(l.name, e.name);
    EXPECT_EQ(l.weight_count, e.weight_count);
    EXPECT_EQ(l.bias_count, e.bias_count);
    EXPECT_EQ(l.param_offset, e.offset);
    EXPECT_EQ(l.fan_in(), e.fan_in);
  }
  // conv1.weight [32, 1, 3, 3], fc1.weight [128, 9216]: the PyTorch layouts are built from these fields.
  EXPECT_EQ(a.layers[0].out, 32);
  EXPECT_EQ(a.layers[0].in.c, 1);
  EXPECT_EQ(a.layers[0].kernel, 3);
  EXPECT_EQ(a.layers[7].out, 128);
  EXPECT_EQ(a.layers[7].in.c, 9216);
  for (size_t i : {1, 3, 4, 5, 6, 8, 9}) {
    EXPECT_TRUE(a.layers[i].name.empty()) << a.layers[i].token;
    EXPECT_EQ(a.layers[i].param_count(), 0) << a.layers[i].token;
    EXPECT_EQ(a.layers[i].fan_in(), 0) << a.layers[i].token;
  }
}

TEST(Arch, StudentParameterNamesAreConsecutiveFc) {
  const Arch s = mnist(kDefaultStudentArch);
  EXPECT_EQ(s.layers[1].name, "fc1");
  EXPECT_EQ(s.layers[3].name, "fc2");
  EXPECT_EQ(s.layers[5].name, "fc3");
  EXPECT_EQ(s.layers[1].param_offset, 0);
  EXPECT_EQ(s.layers[3].param_offset, 200960);
  EXPECT_EQ(s.layers[5].param_offset, 200960 + 32896);
}

TEST(Arch, LayerKindNames) {
  EXPECT_STREQ(layer_kind_name(LayerKind::Conv), "conv");
  EXPECT_STREQ(layer_kind_name(LayerKind::Relu), "relu");
  EXPECT_STREQ(layer_kind_name(LayerKind::MaxPool), "maxpool");
  EXPECT_STREQ(layer_kind_name(LayerKind::Dropout), "dropout");
  EXPECT_STREQ(layer_kind_name(LayerKind::Flatten), "flatten");
  EXPECT_STREQ(layer_kind_name(LayerKind::Dense), "dense");
  // --teacher-arch's help lists the table's usages.
  EXPECT_EQ(layer_usage_list(), "conv:OUT[:K[:STRIDE[:PAD]]], relu, maxpool[:2], dropout:P, flatten, dense:OUT");
}

TEST(Arch, PaddingAndStrideShapes) {
  struct Case {
    const char* conv;
    Shape out;
  };
  const Case cases[] = {
      {"conv:4:3:1:1", chw(4, 28, 28)},  // (28+2-3)/1+1 = 28: "same" padding
      {"conv:4:5:2", chw(4, 12, 12)},    // (28-5)/2+1 = 11+1 (floor of 11.5)
      {"conv:4:5:2:2", chw(4, 14, 14)},  // (28+4-5)/2+1 = 13+1
      {"conv:4:28", chw(4, 1, 1)},       // kernel covers the whole image
      {"conv:4:1:3", chw(4, 10, 10)},    // (28-1)/3+1 = 9+1
      {"conv:4:30:1:1", chw(4, 1, 1)},   // padding lets the kernel exceed the image: 28+2-30+1
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.conv);
    const Arch a = mnist(std::string(c.conv) + ",flatten,dense:10");
    EXPECT_EQ(a.layers[0].out_shape, c.out);
    EXPECT_EQ(a.layers[1].out_shape, features(c.out.c * c.out.h * c.out.w));
  }
  const Arch a = mnist("conv:4:3:2:1,maxpool,flatten,dense:10");
  EXPECT_EQ(a.layers[0].stride, 2);
  EXPECT_EQ(a.layers[0].pad, 1);
  EXPECT_EQ(a.layers[0].out_shape, chw(4, 14, 14));  // (28+2-3)/2+1 = 13+1
  EXPECT_EQ(a.layers[1].out_shape, chw(4, 7, 7));
  EXPECT_EQ(a.layers[1].stride, 2);  // pooling stride = window
  EXPECT_EQ(a.layers[0].weight_count, 4 * 1 * 3 * 3);
}

TEST(Arch, OddSizesPoolDownward) {
  const Arch a = parse_arch("maxpool,maxpool,flatten,dense:2", chw(3, 13, 7), 2, "--a");
  EXPECT_EQ(a.layers[0].out_shape, chw(3, 6, 3));  // floor(13/2), floor(7/2)
  EXPECT_EQ(a.layers[1].out_shape, chw(3, 3, 1));
  EXPECT_EQ(a.layers[3].weight_count, 2 * 9);
}

TEST(Arch, OtherDatasetShapes) {
  // Fashion-MNIST has MNIST's shape and class count, so the defaults carry over unchanged.
  EXPECT_EQ(parse_arch(kDefaultTeacherArch, chw(1, 28, 28), 10, "--teacher-arch").param_count, 1199882);
  // A 3x32x32 colour dataset: conv1 32*3*9+32 = 896, conv2 18496, flatten 64*14*14 = 12544,
  // fc1 128*12544+128 = 1605760, fc2 1290.
  const Arch colour = parse_arch(kDefaultTeacherArch, chw(3, 32, 32), 10, "--teacher-arch");
  EXPECT_EQ(colour.layers[6].out_shape, features(12544));
  EXPECT_EQ(colour.layers[0].fan_in(), 27);
  EXPECT_EQ(colour.param_count, 896 + 18496 + 1605760 + 1290);
  // Non-square 3x32x20: conv 8x30x18, pool 8x15x9, flatten 1080.
  const Arch wide = parse_arch("conv:8,relu,maxpool,flatten,dense:5", chw(3, 32, 20), 5, "--a");
  EXPECT_EQ(wide.layers[2].out_shape, chw(8, 15, 9));
  EXPECT_EQ(wide.layers[4].weight_count, 5 * 1080);
  // 26 classes need a 26-wide output.
  EXPECT_EQ(parse_arch("flatten,dense:26", kMnist, 26, "--a").output, features(26));
}

TEST(Arch, NormalisedText) {
  EXPECT_EQ(mnist(kDefaultTeacherArch).text, kDefaultTeacherArch);
  EXPECT_EQ(mnist(kDefaultStudentArch).text, kDefaultStudentArch);
  EXPECT_EQ(mnist(" conv : 8 ,\trelu , maxpool,dropout:.5 , flatten,dense:010").text,
            "conv:8:3,relu,maxpool:2,dropout:0.5,flatten,dense:10");
  EXPECT_EQ(mnist("conv:8:3:1:0,flatten,dense:10").text, "conv:8:3,flatten,dense:10");
  EXPECT_EQ(mnist("conv:8:5:2,flatten,dense:10").text, "conv:8:5:2,flatten,dense:10");
  EXPECT_EQ(mnist("conv:8:3:1:1,flatten,dense:10").text, "conv:8:3:1:1,flatten,dense:10");
  EXPECT_EQ(mnist("flatten,dropout:1e-1,dense:10").text, "flatten,dropout:0.1,dense:10");
  // The normalised text parses to the same layers.
  const Arch a = mnist("conv:6:5:2:2 , relu,maxpool,dropout:0.3,flatten,dense:20,relu,dense:10");
  const Arch b = mnist(a.text);
  EXPECT_EQ(b.text, a.text);
  EXPECT_EQ(b.param_count, a.param_count);
  ASSERT_EQ(b.layers.size(), a.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) EXPECT_EQ(b.layers[i].out_shape, a.layers[i].out_shape);
  EXPECT_FLOAT_EQ(b.layers[3].drop, 0.3f);
}

// Every rejection names the flag, the 1-based token index, the token, and why.
TEST(Arch, Rejections) {
  struct Case {
    std::string text;
    std::string where;  // "token N 'tok'"
    std::string why;    // a phrase of the reason
  };
  const Case cases[] = {
      {"", "token 1 ''", "empty layer"},
      {"flatten,,dense:10", "token 2 ''", "empty layer"},
      {"flatten,dense:10,", "token 3 ''", "empty layer"},
      {"flatten,linear:10", "token 2 'linear:10'", "unknown layer 'linear'; layers are conv, relu, maxpool"},
      {"flatten,Dense:10", "token 2 'Dense:10'", "unknown layer"},
      {"flatten,dense:12x", "token 2 'dense:12x'", "dense width must be a positive integer, got '12x'"},
      {"flatten,dense:0", "token 2 'dense:0'", "positive integer"},
      {"flatten,dense:-3", "token 2 'dense:-3'", "positive integer"},
      {"flatten,dense:", "token 2 'dense:'", "positive integer, got ''"},
      {"flatten,dense", "token 2 'dense'", "expected dense:OUT, got 0 arguments"},
      {"flatten,dense:10:3", "token 2 'dense:10:3'", "expected dense:OUT, got 2 arguments"},
      {"flatten,dense:99999999999", "token 2 'dense:99999999999'", "too large"},
      {"conv,flatten,dense:10", "token 1 'conv'", "expected conv:OUT[:K[:STRIDE[:PAD]]]"},
      {"conv:8:3:1:0:1,flatten,dense:10", "token 1 'conv:8:3:1:0:1'", "got 5 arguments"},
      {"conv:0,flatten,dense:10", "token 1 'conv:0'", "conv output channels must be a positive integer"},
      {"conv:8:0,flatten,dense:10", "token 1 'conv:8:0'", "conv kernel size must be a positive integer"},
      {"conv:8:3:0,flatten,dense:10", "token 1 'conv:8:3:0'", "conv stride must be a positive integer"},
      {"conv:8:3:1:-1,flatten,dense:10", "token 1 'conv:8:3:1:-1'", "conv padding must be a non-negative integer"},
      {"relu:2,flatten,dense:10", "token 1 'relu:2'", "expected relu with no arguments"},
      {"flatten:1,dense:10", "token 1 'flatten:1'", "expected flatten with no arguments"},
      {"conv:8,dense:10", "token 2 'dense:10'", "dense needs a flatten before it (input is 8x26x26)"},
      {"dense:10", "token 1 'dense:10'", "dense needs a flatten before it"},
      {"flatten,conv:8,dense:10", "token 2 'conv:8'", "conv after flatten"},
      {"flatten,maxpool,dense:10", "token 2 'maxpool'", "maxpool after flatten"},
      {"flatten,flatten,dense:10", "token 2 'flatten'", "already flat"},
      {"conv:8:29,flatten,dense:10", "token 1 'conv:8:29'", "spatial size shrinks below 1"},
      {"conv:8:3:1:-0,flatten,dense:10", "token 1 'conv:8:3:1:-0'", "non-negative integer"},
      {"maxpool:3,flatten,dense:10", "token 1 'maxpool:3'", "only maxpool:2 is supported"},
      {"maxpool:2:2,flatten,dense:10", "token 1 'maxpool:2:2'", "expected maxpool or maxpool:2"},
      {"flatten,dropout:1,dense:10", "token 2 'dropout:1'", "drop probability must be in [0, 1), got 1"},
      {"flatten,dropout:-0.1,dense:10", "token 2 'dropout:-0.1'", "[0, 1)"},
      {"flatten,dropout:nan,dense:10", "token 2 'dropout:nan'", "[0, 1)"},
      {"flatten,dropout:0.5x,dense:10", "token 2 'dropout:0.5x'", "must be a number"},
      {"flatten,dropout,dense:10", "token 2 'dropout'", "expected dropout:P"},
      {"flatten,dense:7", "token 2 'dense:7'", "output width 7 != 10 classes"},
      {"flatten,dense:7,relu,dropout:0.1", "token 2 'dense:7'", "output width 7 != 10 classes"},
      {"relu,flatten", "token 2 'flatten'", "no layer with parameters"},
      {"conv:10:28", "token 1 'conv:10:28'", "the last layer with parameters must be dense:10"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("arch '" + c.text + "'");
    const std::string msg = rejection(c.text);
    EXPECT_EQ(msg.rfind("--student-arch: " + c.where + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.why), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Arch, ShapeRejectionsDependOnTheInput) {
  // Two pools take 3x3 -> 1x1 -> below 1 at the second.
  EXPECT_NE(rejection("maxpool,maxpool,flatten,dense:10", chw(1, 3, 3)).find("token 2 'maxpool': spatial size shrinks"),
            std::string::npos);
  // The default teacher needs 28x28-sized inputs; a 4x4 image dies at the second conv (4-2 = 2, 2-2 = 0).
  EXPECT_NE(rejection(kDefaultTeacherArch, chw(1, 4, 4)).find("token 3 'conv:64:3': spatial size shrinks below 1"),
            std::string::npos);
  // The same string fails for a dataset with a different class count.
  EXPECT_NE(rejection(kDefaultTeacherArch, kMnist, 26).find("token 11 'dense:10': output width 10 != 26 classes"),
            std::string::npos);
  // 65536*65536 features would overflow an int after flatten.
  EXPECT_NE(rejection("flatten,dense:10", chw(1, 65536, 65536)).find("token 1 'flatten'"), std::string::npos);
  EXPECT_NE(rejection("flatten,dense:10", chw(0, 28, 28)).find("empty dimension"), std::string::npos);
  EXPECT_NE(rejection("flatten,dense:10", kMnist, 0).find("0 classes"), std::string::npos);
}

}  // namespace
}  // namespace kd
