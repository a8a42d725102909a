// kernels/softmax_kl.cu against kd::ref::softmax_kl (double precision) on fresh
// random inputs, every output poisoned with NaN first, through every path of
// the kernel: the thread-per-row path (c <= 32), single blocks of 64 / 256
// threads, clusters of blocks (c > 4096), rows too long for registers
// (c > 131072), float4 and scalar loads, gathered teacher rows.
//
// Tolerances, over the whole output of n elements:
//   ||gpu - ref|| <= rel * ||ref|| + abs * sqrt(n)
// The relative part covers outputs of ordinary size; the absolute floor covers
// outputs that cancel. A gradient element alpha*T*(p_s - p_t)/b + ... or a KL
// of nearly equal distributions can come out near 1e-6 (at b = 1, c = 2 in
// about 2% of random draws), and then the fp32 rounding of the probabilities
// it is the difference of (~1e-7 each) is no longer small relative to it: a
// relative-only bound fails there although nothing is wrong.
//  - gradient: rel 1e-5, abs 1e-6 * (alpha * T + 1) / b. Each element is a
//    few fp32 operations on top of the row's log-sum-exps (exp2f within 2 ulp,
//    each scaled difference rounding once): about 1e-6 relative where it does
//    not cancel; where it does, what is left is the rounding of the
//    probabilities (~1e-7 each), times alpha * T in the soft term and once in
//    the hard one, and /b like the gradient.
//  - row KL: rel 1e-5, abs 1e-6. KL is summed from log-ratios, so its error is
//    that of log(Z_t / Z_s), which enters absolutely (~1e-7 per row).
//  - row loss: rel 1e-5, abs 1e-6 * (alpha * T^2 + 1): the loss carries the
//    KL's absolute error times alpha * T^2, and the cross-entropy's.
// A wrong formula, index or scaling is off by order 1 relative to ||ref||,
// far above both parts. mean_reduce 1e-6: a double sum; only the final
// rounding to float remains.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kd/error.h"
#include "kd/cuda_ops.h"
#include "kd/reference.h"
#include "kd/cuda_buffer.h"

namespace {

using kd::cuda::DeviceBuffer;

constexpr double kRelativeTolerance = 1e-5;
constexpr double kAbsoluteFloor = 1e-6;

// ||actual - expected|| <= rel * ||expected|| + abs * sqrt(n) (NaN fails); see the file comment.
testing::AssertionResult close_with_floor(const std::vector<float>& actual, const std::vector<float>& expected,
                                          double abs) {
  if (actual.size() != expected.size())
    return testing::AssertionFailure() << "size " << actual.size() << ", expected " << expected.size();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) return testing::AssertionFailure() << "element " << i << " is " << actual[i];
    const double d = double(actual[i]) - double(expected[i]);
    diff += d * d;
    norm += double(expected[i]) * expected[i];
  }
  diff = std::sqrt(diff);
  const double bound = kRelativeTolerance * std::sqrt(norm) + abs * std::sqrt(double(actual.size()));
  if (diff <= bound) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "||gpu - ref|| = " << diff << " > " << bound
                                     << " (||ref|| = " << std::sqrt(norm) << ")";
}

struct Case {
  int b = 1, c = 1;
  float temperature = 4.0f, alpha = 0.9f;
  bool with_teacher = true;  // false: t = null (requires alpha = 0)
  bool gather = false;       // teacher rows read through t_rows from a larger table
  float logit_scale = 5.0f;  // logits uniform in [-scale, scale]
  int misalign = 0;          // floats by which s, t and grad are shifted off 16-byte alignment
  bool mixup = false;        // mixed hard targets: a random partner label per row and a random lambda
};

std::ostream& operator<<(std::ostream& os, const Case& k) {
  return os << "b=" << k.b << " c=" << k.c << " T=" << k.temperature << " alpha=" << k.alpha
            << (k.with_teacher ? "" : " no-teacher") << (k.gather ? " gathered" : "") << " scale=" << k.logit_scale
            << (k.misalign ? " misaligned" : "") << (k.mixup ? " mixup" : "");
}

struct Inputs {
  std::vector<float> s;                 // (b, c)
  std::vector<float> t_table;           // (teacher_rows, c)
  std::vector<int32_t> t_rows;          // (b) when gathering
  std::vector<int32_t> labels;          // (b)
  std::vector<float> t_gathered;        // (b, c): the teacher row each student row uses, for the reference
  std::vector<int32_t> partner_labels;  // (b) with mixup
  kd::MixupDraw mix{1.0f, 0.0f, 0};     // with mixup: lambda, 1 - lambda
};

Inputs make_inputs(const Case& k, std::mt19937_64& rng) {
  Inputs in;
  const size_t n = size_t(k.b) * k.c;
  in.s = kd::test::random_floats(n, -k.logit_scale, k.logit_scale, rng);
  std::uniform_int_distribution<int32_t> label(0, k.c - 1);
  in.labels.resize(k.b);
  for (auto& y : in.labels) y = label(rng);
  if (k.mixup) {
    in.partner_labels.resize(k.b);
    for (auto& y : in.partner_labels) y = label(rng);
    in.mix.lambda = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
    in.mix.partner_weight = 1.0f - in.mix.lambda;
  }
  if (!k.with_teacher) return in;
  const int teacher_rows = k.gather ? k.b + 37 : k.b;
  in.t_table = kd::test::random_floats(size_t(teacher_rows) * k.c, -k.logit_scale, k.logit_scale, rng);
  in.t_gathered.resize(n);
  std::uniform_int_distribution<int32_t> pick(0, teacher_rows - 1);
  for (int i = 0; i < k.b; ++i) {
    const int32_t src = k.gather ? pick(rng) : i;
    if (k.gather) in.t_rows.push_back(src);
    std::memcpy(&in.t_gathered[size_t(i) * k.c], &in.t_table[size_t(src) * k.c], sizeof(float) * k.c);
  }
  return in;
}

struct Outputs {
  std::vector<float> grad, row_loss, row_kl;
};

// Device copy of a host array starting `offset` floats into its buffer.
struct OffsetBuffer {
  DeviceBuffer<float> buffer;
  int offset = 0;
  OffsetBuffer(size_t count, int offset_, const char* what) : buffer(count + offset_, what), offset(offset_) {}
  float* data() { return buffer.data() + offset; }
  void upload(const std::vector<float>& host) {
    std::vector<float> padded(offset, 0.0f);
    padded.insert(padded.end(), host.begin(), host.end());
    buffer.upload(padded);
  }
  std::vector<float> download() const {
    const std::vector<float> all = buffer.download();
    return std::vector<float>(all.begin() + offset, all.end());
  }
};

Outputs run_gpu(const Case& k, const Inputs& in) {
  const size_t n = size_t(k.b) * k.c;
  OffsetBuffer s(n, k.misalign, "s"), grad(n, k.misalign, "grad");
  OffsetBuffer t(in.t_table.size(), k.misalign, "t");
  DeviceBuffer<int32_t> labels(k.b, "labels"), t_rows(in.t_rows.size(), "t_rows");
  DeviceBuffer<float> row_loss(k.b, "row_loss"), row_kl(k.b, "row_kl");
  DeviceBuffer<int32_t> partner_labels(in.partner_labels.size(), "partner labels");
  DeviceBuffer<kd::MixupDraw> mix(1, "mixup draw");
  if (k.mixup) {
    partner_labels.upload(in.partner_labels);
    mix.upload(std::vector<kd::MixupDraw>{in.mix});
  }
  s.upload(in.s);
  if (k.with_teacher) t.upload(in.t_table);
  labels.upload(in.labels);
  if (k.gather) t_rows.upload(in.t_rows);
  kd::test::poison(grad.buffer);
  kd::test::poison(row_loss);
  kd::test::poison(row_kl);

  kd::cuda::SoftmaxKlArgs args;
  args.s = s.data();
  args.t = k.with_teacher ? t.data() : nullptr;
  args.t_rows = k.gather ? t_rows.data() : nullptr;
  args.labels = labels.data();
  args.partner_labels = k.mixup ? partner_labels.data() : nullptr;
  args.mix = k.mixup ? mix.data() : nullptr;
  args.grad = grad.data();
  args.row_loss = row_loss.data();
  args.row_kl = row_kl.data();
  args.b = k.b;
  args.c = k.c;
  args.temperature = k.temperature;
  args.alpha = k.alpha;
  kd::cuda::softmax_kl(args, nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  return {grad.download(), row_loss.download(), row_kl.download()};
}

// The reference's gradient and row losses for the whole batch, and each row's
// KL from a one-row call (LossSums::kl of a batch of one is that row's KL).
Outputs run_reference(const Case& k, const Inputs& in) {
  Outputs ref;
  ref.grad.resize(size_t(k.b) * k.c);
  ref.row_loss.resize(k.b);
  ref.row_kl.assign(k.b, 0.0f);
  const float* t = k.with_teacher ? in.t_gathered.data() : nullptr;
  const kd::ref::HardTargetMix mix{k.mixup ? in.partner_labels.data() : nullptr, in.mix.lambda, in.mix.partner_weight};
  kd::ref::softmax_kl(in.s.data(), t, in.labels.data(), ref.grad.data(), ref.row_loss.data(), k.b, k.c, k.temperature,
                      k.alpha, mix);
  if (t) {
    for (int i = 0; i < k.b; ++i) {
      const size_t at = size_t(i) * k.c;
      ref.row_kl[i] = float(
          kd::ref::softmax_kl(in.s.data() + at, t + at, &in.labels[i], nullptr, nullptr, 1, k.c, k.temperature, k.alpha)
              .kl);
    }
  }
  return ref;
}

void check_case(const Case& k, std::mt19937_64& rng) {
  SCOPED_TRACE(testing::Message() << k);
  const Inputs in = make_inputs(k, rng);
  const Outputs gpu = run_gpu(k, in);
  const Outputs ref = run_reference(k, in);
  const double t2 = double(k.temperature) * k.temperature;
  EXPECT_TRUE(close_with_floor(gpu.grad, ref.grad, kAbsoluteFloor * (k.alpha * k.temperature + 1.0) / k.b))
      << "gradient";
  EXPECT_TRUE(close_with_floor(gpu.row_loss, ref.row_loss, kAbsoluteFloor * (k.alpha * t2 + 1.0))) << "row loss";
  if (k.with_teacher) {
    EXPECT_TRUE(close_with_floor(gpu.row_kl, ref.row_kl, kAbsoluteFloor)) << "row KL";
  } else {
    EXPECT_EQ(gpu.row_kl, std::vector<float>(k.b, 0.0f)) << "without a teacher the KL term is exactly 0";
  }
}

std::mt19937_64 test_rng(uint64_t salt) {
  return std::mt19937_64(kd::test::test_seed() ^ (salt * 0x9E3779B97F4A7C15ull));
}

// The SPEC's grid of batch sizes and class counts, cycling the loss settings
// so that every shape meets a different temperature, weight and teacher layout.
TEST(SoftmaxKlGpu, MatchesReferenceOnSpecShapes) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(1);
  struct Setting {
    float temperature, alpha;
    bool with_teacher, gather;
  };
  const Setting settings[] = {{4.0f, 0.9f, true, false}, {1.0f, 0.5f, true, true},   {0.5f, 0.3f, true, false},
                              {50.0f, 1.0f, true, true}, {2.0f, 0.0f, false, false}, {8.0f, 0.0f, true, false},
                              {4.0f, 0.9f, true, true}};
  int next = 0;
  // Simulated: b = 129 still spans two blocks of the small path, c = 5001 a cluster of 2.
  for (int b : kd::test::gpu_or_sim({1, 63, 64, 65, 1000}, {1, 63, 64, 65, 129})) {
    for (int c : kd::test::gpu_or_sim({1, 2, 10, 33, 1000, 32001}, {1, 2, 10, 33, 1000, 5001})) {
      const Setting& s = settings[next++ % (sizeof settings / sizeof settings[0])];
      Case k;
      k.b = b;
      k.c = c;
      k.temperature = s.temperature;
      k.alpha = s.alpha;
      k.with_teacher = s.with_teacher;
      k.gather = s.gather;
      check_case(k, rng);
    }
  }
}

// Every temperature the trainer accepts in practice against every weight, on
// the class counts of each kernel path (small, 64-thread, 256-thread, a
// 16-slot block, a cluster of 2, a cluster of 8).
TEST(SoftmaxKlGpu, TemperaturesAndWeights) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(2);
  for (int c : kd::test::gpu_or_sim({10, 33, 1000, 4096, 5000, 32000}, {10, 33, 1000, 4096, 5000, 9000})) {
    for (float temperature : {0.5f, 1.0f, 4.0f, 50.0f}) {
      for (float alpha : {0.0f, 0.5f, 1.0f}) {
        Case k;
        k.b = kd::test::kSimulated ? 5 : 17;
        k.c = c;
        k.temperature = temperature;
        k.alpha = alpha;
        check_case(k, rng);
      }
    }
  }
}

// Soft targets are read by sample index from a table with more rows than the
// batch, repeated indices included.
TEST(SoftmaxKlGpu, GathersTeacherRows) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(3);
  for (int c : kd::test::gpu_or_sim({2, 10, 33, 1000, 1001, 32001}, {2, 10, 33, 1000, 1001, 9001})) {
    Case k;
    k.b = 65;
    k.c = c;
    k.gather = true;
    check_case(k, rng);
  }
}

// Mixup's hard targets (ref::HardTargetMix) on every path, distilling and
// not: each row's partner label and the step's lambda are read from device
// memory. With c = 2 a partner often equals the label (target 1 on one class).
TEST(SoftmaxKlGpu, MixedHardTargets) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(12);
  for (int c : kd::test::gpu_or_sim({2, 10, 33, 1000, 32001}, {2, 10, 33, 1000, 5001})) {
    for (float alpha : {0.0f, 0.7f}) {
      Case k;
      k.b = kd::test::kSimulated ? 7 : 65;
      k.c = c;
      k.alpha = alpha;
      k.with_teacher = alpha > 0;
      k.mixup = true;
      check_case(k, rng);
    }
  }
}

// alpha = 0 is plain softmax cross-entropy: t may be null and is never read.
TEST(SoftmaxKlGpu, CrossEntropyWithoutTeacher) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(4);
  for (int c : kd::test::gpu_or_sim({1, 2, 10, 33, 1000, 32001}, {1, 2, 10, 33, 1000, 9001})) {
    Case k;
    k.b = 64;
    k.c = c;
    k.alpha = 0.0f;
    k.with_teacher = false;
    check_case(k, rng);
  }
}

// Logits of +-1e4: every exponent is a difference from the row maximum, so
// nothing overflows and the result still matches the double reference.
TEST(SoftmaxKlGpu, StableForLogitsOfTenThousand) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(5);
  for (int c : kd::test::gpu_or_sim({2, 10, 33, 1000, 32001}, {2, 10, 33, 1000, 9001})) {
    for (float temperature : {0.5f, 4.0f, 50.0f}) {
      Case k;
      k.b = 33;
      k.c = c;
      k.temperature = temperature;
      k.alpha = 0.7f;
      k.logit_scale = 1e4f;
      check_case(k, rng);
    }
  }
}

// Rows longer than a block's registers: clusters of up to 8 blocks, and beyond
// 131072 classes, tiles swept twice; float4 (c % 4 == 0) and scalar loads.
TEST(SoftmaxKlGpu, LargeVocabularies) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(6);
  // Simulated: a cluster of 8 blocks of 16 x 256, one of 3 blocks of 32 x 512, and 8 blocks sweeping tiles.
  for (int c : kd::test::gpu_or_sim({32768, 32769, 100000, 128256, 131072, 200003, 262144}, {32768, 32769, 140000})) {
    Case k;
    k.b = 3;
    k.c = c;
    k.gather = c % 2 == 0;
    check_case(k, rng);
  }
}

// Pointers off 16-byte alignment must take the scalar loads even when c % 4 == 0.
TEST(SoftmaxKlGpu, MisalignedPointersUseScalarLoads) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(7);
  for (int c : kd::test::gpu_or_sim({36, 1000, 4096, 32000}, {36, 1000, 4096, 9000})) {
    Case k;
    k.b = 9;
    k.c = c;
    k.misalign = 1;
    check_case(k, rng);
  }
}

// The call CudaModel::evaluate makes: alpha = 0, T = 1, no teacher, and
// neither gradient nor row KL (both null): only the per-row cross-entropy is
// written, on the small-class and the large-class paths.
TEST(SoftmaxKlGpu, EvaluationCallWritesOnlyRowLosses) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(11);
  for (int b : {1, 63, 1000}) {
    for (int c : {2, 10, 33, 1000}) {
      SCOPED_TRACE(testing::Message() << "b=" << b << " c=" << c);
      Case k;
      k.b = b;
      k.c = c;
      k.temperature = 1.0f;
      k.alpha = 0.0f;
      k.with_teacher = false;
      const Inputs in = make_inputs(k, rng);
      DeviceBuffer<float> s(in.s.size(), "s"), row_loss(size_t(b), "row_loss");
      DeviceBuffer<int32_t> labels(size_t(b), "labels");
      s.upload(in.s);
      labels.upload(in.labels);
      kd::test::poison(row_loss);
      kd::cuda::SoftmaxKlArgs args;
      args.s = s.data();
      args.labels = labels.data();
      args.row_loss = row_loss.data();
      args.b = b;
      args.c = c;
      kd::cuda::softmax_kl(args, nullptr);
      KD_CUDA_CHECK(cudaDeviceSynchronize());
      const Outputs ref = run_reference(k, in);
      EXPECT_TRUE(close_with_floor(row_loss.download(), ref.row_loss, kAbsoluteFloor)) << "row loss";
    }
  }
}

// One class: every softmax is exactly 1, so loss, KL and gradient are exactly 0.
TEST(SoftmaxKlGpu, SingleClassIsExactlyZero) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(8);
  for (float scale : {5.0f, 1e4f}) {
    Case k;
    k.b = 65;
    k.c = 1;
    k.logit_scale = scale;
    const Outputs gpu = run_gpu(k, make_inputs(k, rng));
    EXPECT_EQ(gpu.grad, std::vector<float>(k.b, 0.0f));
    EXPECT_EQ(gpu.row_loss, std::vector<float>(k.b, 0.0f));
    EXPECT_EQ(gpu.row_kl, std::vector<float>(k.b, 0.0f));
  }
}

std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

// Fixed-order reductions: the same inputs give the same bits, every time.
TEST(SoftmaxKlGpu, RerunsAreBitIdentical) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(9);
  for (int c : kd::test::gpu_or_sim({10, 1000, 32001, 200003}, {10, 1000, 9001, 140000})) {
    Case k;
    k.b = c > 100000 ? 4 : kd::test::kSimulated ? 129 : 1000;
    k.c = c;
    k.gather = true;
    const Inputs in = make_inputs(k, rng);
    const Outputs first = run_gpu(k, in);
    const Outputs second = run_gpu(k, in);
    SCOPED_TRACE(testing::Message() << k);
    EXPECT_EQ(bits(first.grad), bits(second.grad));
    EXPECT_EQ(bits(first.row_loss), bits(second.row_loss));
    EXPECT_EQ(bits(first.row_kl), bits(second.row_kl));
  }
}

float gpu_mean(const std::vector<float>& x) {
  DeviceBuffer<float> d_x(x.size(), "x"), d_mean(1, "mean");
  d_x.upload(x);
  kd::test::poison(d_mean);
  kd::cuda::mean_reduce(d_x.data(), int(x.size()), d_mean.data(), nullptr);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  return d_mean.download()[0];
}

TEST(SoftmaxKlGpu, MeanReduceIsTheDoubleMeanAndDeterministic) {
  KD_REQUIRE_GPU();
  auto rng = test_rng(10);
  for (int n : {1, 63, 64, 65, 1000, 100003}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<float> x = kd::test::random_floats(size_t(n), 0.0f, 10.0f, rng);
    double sum = 0;
    for (float v : x) sum += v;
    const double mean = sum / n;
    const float first = gpu_mean(x);
    EXPECT_LE(std::fabs(first - mean) / mean, 1e-6);
    const float second = gpu_mean(x);
    EXPECT_EQ(bits({first}), bits({second}));
  }
}

// Argument checks happen before any device work, so they run without a GPU too.
TEST(SoftmaxKlGpu, RejectsInvalidArguments) {
  float dummy = 0.0f;
  int32_t label = 0;
  kd::cuda::SoftmaxKlArgs ok;
  ok.s = &dummy;
  ok.t = &dummy;
  ok.labels = &label;
  ok.grad = &dummy;
  ok.row_loss = &dummy;
  ok.b = 1;
  ok.c = 1;
  ok.temperature = 4.0f;
  ok.alpha = 0.9f;

  auto bad = ok;
  bad.temperature = 0.0f;
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.temperature = std::nanf("");
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.alpha = 1.5f;
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.t = nullptr;  // alpha > 0 needs the teacher
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.c = 0;
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.labels = nullptr;
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  bad = ok;
  bad.partner_labels = &label;  // mixup needs its draw too
  EXPECT_THROW(kd::cuda::softmax_kl(bad, nullptr), kd::Error);
  EXPECT_THROW(kd::cuda::mean_reduce(&dummy, 0, &dummy, nullptr), kd::Error);
}

}  // namespace
