// The fast engine's own dense-layer forward GEMM (src/cpu/fast/dense_gemm.h)
// against the CPU reference, on every SIMD path of this build that this CPU
// can run (an AVX-512 machine tests its AVX2 path too; an ARM64 build its NEON
// path: scripts/cross-aarch64.sh), and the paths against each other.
//
// Tolerances, as ||fast - ref|| / ||ref|| over a whole output:
//  - kGemmTolerance = 1e-4. The reference sums in double; the GEMM sums each
//    output as one fp32 FMA chain over `in` terms, then adds the bias: about
//    6e-8 * sqrt(in) relative (~6e-6 at in = 9216). A packing, panel or tail
//    mistake (a wrong or missing row, column or k) gives errors of order 1.
//  - Exact equality where the same fp32 operations must run: across thread
//    counts (each output is one thread's chain, whatever the split), across
//    the paths (the same chain on 16, 8 or 4 lanes), and for one row of x
//    whether it is multiplied alone in a batch or inside a larger one.
#include "../src/cpu/fast/dense_gemm.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fast_test_util.h"
#include "kd/error.h"
#include "kd/reference.h"
#include "ref_test_util.h"

namespace kd::fast {
// Test names and messages say "avx2", not the enum's bytes.
void PrintTo(CpuPath path, std::ostream* os) { *os << cpu_path_name(path); }
}  // namespace kd::fast

namespace kd {
namespace {

using fasttest::rel_error;
using reftest::make_rng;
using reftest::nan_filled;
using reftest::uniform;

constexpr double kGemmTolerance = 1e-4;

struct Shape {
  int b, in, out;
};
std::string text(const Shape& s) {
  return std::to_string(s.b) + "x" + std::to_string(s.in) + "->" + std::to_string(s.out);
}

// The panel form (b < out, or out not a multiple of 16): the student's and teacher's layers at batch 64
// (one full panel of 64 rows, split by threads over w's rows), three panels (split by threads over
// panels; the last one 2 rows wide) and tails: row counts that are not multiples of 8 or 16, in not a
// multiple of the 8 x 8 transpose or of the GEMM's 256-term k blocks, out not a multiple of the GEMM's
// 6-row blocks, in = 1 and out = 1. The rows form (b >= out, out a multiple of 16): the student's second layer
// and a wider one (several 96-row chunks per thread, k blocks with a 44-term tail), and tails: b not a
// multiple of the 6-row blocks, in = 1.
std::vector<Shape> shapes() {
  return {{64, 784, 256}, {64, 9216, 128}, {130, 256, 80},  {16, 128, 10},   {17, 7, 13},    {70, 300, 1},
          {200, 1, 5},    {33, 131, 50},   {400, 300, 256}, {200, 256, 128}, {131, 300, 32}, {40, 1, 16}};
}

struct Inputs {
  std::vector<float> x, w, bias;
};
Inputs random_inputs(const Shape& s, uint64_t seed) {
  auto rng = make_rng(seed);
  return {uniform(size_t(s.b) * s.in, -1, 1, rng), uniform(size_t(s.out) * s.in, -0.1f, 0.1f, rng),
          uniform(size_t(s.out), -1, 1, rng)};
}

std::vector<float> run_gemm(const Shape& s, const Inputs& in, bool relu, int threads, fast::CpuPath path) {
  std::vector<float> y = nan_filled(size_t(s.b) * s.out), scratch;
  fast::dense_forward_gemm(in.x.data(), in.w.data(), in.bias.data(), y.data(), s.b, s.in, s.out, relu, threads, scratch,
                           path);
  return y;
}

void a_row_is_the_same_alone_and_in(const Shape& whole, fast::CpuPath path) {
  const Inputs in = random_inputs(whole, 4);
  const std::vector<float> y = run_gemm(whole, in, false, 2, path);
  for (const int row : {0, 63, 64, 99}) {
    const Shape part{16, whole.in, whole.out};  // row `row` first, then 15 others
    Inputs sub{{}, in.w, in.bias};
    for (int j = 0; j < part.b; ++j) {
      const int r = (row + j) % whole.b;
      sub.x.insert(sub.x.end(), in.x.begin() + size_t(r) * whole.in, in.x.begin() + size_t(r + 1) * whole.in);
    }
    const std::vector<float> y_part = run_gemm(part, sub, false, 1, path);
    EXPECT_EQ(std::vector<float>(y_part.begin(), y_part.begin() + whole.out),
              std::vector<float>(y.begin() + size_t(row) * whole.out, y.begin() + size_t(row + 1) * whole.out))
        << "row " << row;
  }
}

// Each vector path, skipped where this CPU cannot run it.
class DenseGemmPath : public ::testing::TestWithParam<fast::CpuPath> {
 protected:
  void SetUp() override {
    if (!fast::cpu_supports(GetParam())) GTEST_SKIP() << "this CPU has no " << fast::cpu_path_name(GetParam());
  }
};

TEST_P(DenseGemmPath, MatchesTheReferenceAndIsTheSameOnAnyThreadCount) {
  for (const Shape& s : shapes())
    for (const bool relu : {false, true}) {
      SCOPED_TRACE(text(s) + (relu ? " relu" : ""));
      const Inputs in = random_inputs(s, 3);
      std::vector<float> want(size_t(s.b) * s.out);
      ref::dense_forward(in.x.data(), in.w.data(), in.bias.data(), want.data(), s.b, s.in, s.out, relu);
      const std::vector<float> one = run_gemm(s, in, relu, 1, GetParam());
      EXPECT_LE(rel_error(one, want), kGemmTolerance);
      for (const int threads : {2, 3}) EXPECT_EQ(run_gemm(s, in, relu, threads, GetParam()), one) << threads;
    }
}

// A row alone runs in the panel form; the batch of 100 in the panel form too, the batch of 200 in the rows form.
TEST_P(DenseGemmPath, ARowIsTheSameAloneAndInALargerBatch) {
  for (const Shape& whole : {Shape{100, 200, 40}, Shape{200, 300, 32}}) {
    SCOPED_TRACE(text(whole));
    a_row_is_the_same_alone_and_in(whole, GetParam());
  }
}

TEST_P(DenseGemmPath, ScratchIsReusedAcrossShapes) {
  std::vector<float> scratch;
  for (const Shape& s : {Shape{130, 784, 256}, Shape{16, 9, 3}, Shape{300, 64, 32}, Shape{64, 256, 128}}) {
    SCOPED_TRACE(text(s));
    const Inputs in = random_inputs(s, 5);
    std::vector<float> y = nan_filled(size_t(s.b) * s.out);
    fast::dense_forward_gemm(in.x.data(), in.w.data(), in.bias.data(), y.data(), s.b, s.in, s.out, true, 2, scratch,
                             GetParam());
    EXPECT_EQ(y, run_gemm(s, in, true, 2, GetParam()));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, DenseGemmPath, ::testing::ValuesIn(fast::vector_paths()),
                         [](const ::testing::TestParamInfo<fast::CpuPath>& info) {
                           return std::string(fast::cpu_path_name(info.param));
                         });

// The widest path's bits are printed ("bits PATH HASH") for a comparison with another build's
// (scripts/cross-aarch64.sh).
TEST(DenseGemm, PathsAgreeBitForBit) {
  const std::vector<fast::CpuPath> paths = fasttest::runnable_vector_paths();
  if (paths.empty()) GTEST_SKIP() << "no vector path on this CPU";
  uint64_t hash = fasttest::bits_hash({});
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(text(s));
    const Inputs in = random_inputs(s, 6);
    const std::vector<float> widest = run_gemm(s, in, true, 2, paths[0]);
    hash = fasttest::bits_hash(widest, hash);
    for (size_t i = 1; i < paths.size(); ++i)
      EXPECT_EQ(run_gemm(s, in, true, 2, paths[i]), widest) << fast::cpu_path_name(paths[i]);
  }
  std::printf("bits %s %016llx\n", fast::cpu_path_name(paths[0]), static_cast<unsigned long long>(hash));
}

// Unforced, the engine takes the widest vector path of this build that the CPU runs (neon on ARM64).
TEST(CpuPath, DefaultIsTheWidestPathThisCpuRuns) {
  const char* forced = std::getenv("KD_CPU_PATH");
  if (forced && *forced) GTEST_SKIP() << "KD_CPU_PATH is set";
  const std::vector<fast::CpuPath> paths = fasttest::runnable_vector_paths();
  EXPECT_EQ(fast::cpu_path(), paths.empty() ? fast::CpuPath::Scalar : paths.front());
}

TEST(DenseGemm, ScalarPathHasNoKernel) {
  EXPECT_FALSE(fast::dense_gemm_supports(fast::CpuPath::Scalar));
  const Inputs in = random_inputs({16, 4, 2}, 7);
  EXPECT_THROW(run_gemm({16, 4, 2}, in, false, 1, fast::CpuPath::Scalar), Error);
}

}  // namespace
}  // namespace kd
