// The CUDA engine against the CPU engine, step for step, and the CUDA
// engine's own promises: a replayed graph step equals the eager step, two
// seeded runs are bit-identical, a run resumed mid-epoch continues exactly,
// a non-finite loss is reported at its step, steps out of order are refused.
// Data: small random u8 datasets built here (fresh per process, seed
// printed); models: the default teacher and student of SPEC section 2 on a
// GPU, smaller ones under the simulator (see kSide below).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine_test_util.h"
#include "gpu_test_util.h"
#include "kd/cpu_engine.h"
#include "kd/arch.h"
#include "kd/cuda_engine.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/cpu_model.h"
#include "kd/engine.h"
#include "kd/layer_plan.h"

namespace kd {
namespace {

constexpr int kClasses = 10;
constexpr int64_t kTrainN = 256;  // 4 batches of 64; 100 + 100 + 56 with batch 100
constexpr int64_t kValN = 100;
constexpr int64_t kTestN = 1100;  // two evaluation batches: 1000 + 100

// The simulator runs every GPU thread as a CPU fiber, so a default-sized
// teacher step takes minutes there. It gets the same batches and splits (full
// and partial batches, two evaluation batches) on 14x14 images and models
// that still cross every boundary of the engine: two convs, one with stride 2
// and padding 1, odd spatial sizes (14 -> 12 -> 6 -> 3), max-pool, both
// dropouts, and dense layers on cuBLAS.
constexpr int kSide = test::kSimulated ? 14 : 28;
constexpr const char* kTeacherArch =
    test::kSimulated
        ? "conv:4:3,relu,conv:6:3:2:1,relu,maxpool:2,dropout:0.25,flatten,dense:16,relu,dropout:0.5,dense:10"
        : kDefaultTeacherArch;
constexpr const char* kStudentArch =
    test::kSimulated ? "flatten,dense:24,relu,dense:12,relu,dense:10" : kDefaultStudentArch;

struct World {
  Splits splits;
  Arch teacher, student;
  std::vector<float> teacher_init, student_init;
  std::vector<int32_t> order;  // one epoch's permutation of the training split
};

World make_world() {
  std::mt19937_64 rng(test::test_seed());
  World w;
  w.splits.train = test::random_dataset(kTrainN, kSide, kClasses, rng);
  w.splits.val = test::random_dataset(kValN, kSide, kClasses, rng);
  w.splits.test = test::random_dataset(kTestN, kSide, kClasses, rng);
  w.splits.num_classes = kClasses;
  const Shape image{1, kSide, kSide, false};
  w.teacher = parse_arch(kTeacherArch, image, kClasses, "--teacher-arch");
  w.student = parse_arch(kStudentArch, image, kClasses, "--student-arch");
  w.teacher_init.resize(size_t(w.teacher.param_count));
  w.student_init.resize(size_t(w.student.param_count));
  init_params(w.teacher, rng(), w.teacher_init.data());
  init_params(w.student, rng(), w.student_init.data());
  w.order.resize(size_t(kTrainN));
  std::iota(w.order.begin(), w.order.end(), 0);
  std::shuffle(w.order.begin(), w.order.end(), rng);
  return w;
}

std::unique_ptr<Engine> loaded(std::unique_ptr<Engine> engine, const World& w) {
  engine->load(w.splits);
  return engine;
}

struct RunResult {
  std::vector<TrainStats> epochs;
  std::vector<float> params;
  OptimState optim;
};

// `epochs` epochs over w.order in batches of settings.batch_size (last one partial).
RunResult train(ModelEngine& model, const World& w, const TrainSettings& settings, const LossConfig& loss,
                int epochs = 1) {
  RunResult r;
  for (int e = 0; e < epochs; ++e) {
    const int64_t n = int64_t(w.order.size());
    model.begin_epoch(w.order, e + 1);
    for (int64_t begin = 0; begin < n; begin += settings.batch_size)
      model.train_step(begin, int(std::min<int64_t>(settings.batch_size, n - begin)), loss);
    r.epochs.push_back(model.end_epoch());
  }
  r.params = model.get_params();
  r.optim = model.get_optim_state();
  return r;
}

RunResult train_new(Engine& engine, const Arch& arch, const std::vector<float>& init, const World& w,
                    const TrainSettings& settings, const LossConfig& loss, int epochs = 1) {
  std::unique_ptr<ModelEngine> model = engine.create_model(arch, init, settings);
  return train(*model, w, settings, loss, epochs);
}

double rms(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i]) * x[i];
  return std::sqrt(sum / double(n));
}

// Elementwise |actual - expected| / scale over one parameter tensor: at least
// 90% of the elements within `typical`, every element within `worst` (NaN
// fails). Why a quantile and not a norm: fp32 summation in another order moves
// each element by ~1e-6 of the tensor's scale, but a ReLU or max-pool decision
// on a value within that rounding of its threshold can fall the other way on
// the GPU, and then one term of every sum it feeds differs: for the default
// teacher that happens about once in ten steps and moves up to one output
// channel's worth of weights (1 of 32 in conv1, ~3% of a tensor) by up to a
// fraction of the tensor's RMS. A bug in layout, masking, scaling or
// indexing moves most elements, which the quantile catches.
void expect_mostly_close(const std::string& what, const std::vector<float>& actual, const std::vector<float>& expected,
                         const ParamTensor& t, double scale, double typical, double worst) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  ASSERT_GT(scale, 0.0) << what << " " << t.name;
  std::vector<double> err(size_t(t.count));
  for (int64_t i = 0; i < t.count; ++i) {
    const float a = actual[size_t(t.offset + i)], e = expected[size_t(t.offset + i)];
    err[size_t(i)] =
        std::isfinite(a) ? std::abs(double(a) - double(e)) / scale : std::numeric_limits<double>::infinity();
  }
  std::sort(err.begin(), err.end());
  const double q90 = err[size_t(0.9 * double(err.size() - 1))];
  EXPECT_LE(q90, typical) << what << " " << t.name << ": 90% quantile of |gpu - cpu| / scale";
  EXPECT_LE(err.back(), worst) << what << " " << t.name << ": largest |gpu - cpu| / scale";
}

// One Adam step from zero state on both engines. After it m = (1 - beta1) g,
// so m is the gradient up to a constant: 90% of its elements within 1e-4 of
// the tensor's RMS (the SPEC's GEMM/conv bound: fp32 sums of up to 9216
// products, reassociated), none beyond twice the RMS (a flipped ReLU term is
// one of the >= 32 nonzero terms of its sum, see expect_mostly_close).
// v = (1 - beta2) g^2 doubles g's relative error.
// The step lr * g / (|g| + eps) is ~lr * sign(g): 90% of the parameters agree
// to 1e-3 lr (fp32 rounding of a ~0.01 parameter is ~1e-6 lr); none can differ
// by more than the 2 lr of two opposite full steps.
void expect_same_adam_step(const Arch& arch, const RunResult& gpu, const RunResult& cpu, const TrainSettings& s) {
  ASSERT_EQ(gpu.optim.step, 1);
  ASSERT_EQ(cpu.optim.step, 1);
  for (const ParamTensor& t : param_tensors(arch)) {
    const double m_scale = rms(cpu.optim.m.data() + t.offset, t.count);
    const double v_scale = rms(cpu.optim.v.data() + t.offset, t.count);
    expect_mostly_close("Adam m (gradient)", gpu.optim.m, cpu.optim.m, t, m_scale, 1e-4, 2.0);
    expect_mostly_close("Adam v (gradient^2)", gpu.optim.v, cpu.optim.v, t, v_scale, 2e-4, 4.0);
    expect_mostly_close("parameters", gpu.params, cpu.params, t, s.adam.lr, 1e-3, 2.0 + 1e-3);
  }
}

// The epoch's mean losses. Cross-entropy: each row differs by the logits'
// fp32 rounding (~1e-6 relative); the mean is stored as float. KL: the GPU
// takes it as sum_j p_t (log p_t - log p_s) of fp32 log-probabilities (~2.3
// for 10 classes, rounding ~1.4e-7 each), an absolute error of up to ~1e-6
// per row whatever the KL's size, and the loss carries it times alpha T^2.
void expect_same_loss(const TrainStats& gpu, const TrainStats& cpu, const LossConfig& loss) {
  constexpr double kKlAbsolute = 1e-6;
  EXPECT_EQ(gpu.steps, cpu.steps);
  EXPECT_TRUE(gpu.finite);
  const double t2 = double(loss.temperature) * loss.temperature;
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 * std::abs(cpu.loss) + loss.alpha * t2 * kKlAbsolute);
  EXPECT_NEAR(gpu.kl, cpu.kl, 1e-5 * std::abs(cpu.kl) + kKlAbsolute);
}

void expect_bit_identical(const RunResult& a, const RunResult& b) {
  EXPECT_TRUE(a.params == b.params) << "parameters differ";
  EXPECT_TRUE(a.optim.m == b.optim.m) << "optimiser first moments differ";
  EXPECT_TRUE(a.optim.v == b.optim.v) << "optimiser second moments differ";
  EXPECT_EQ(a.optim.step, b.optim.step);
  ASSERT_EQ(a.epochs.size(), b.epochs.size());
  for (size_t e = 0; e < a.epochs.size(); ++e) {
    EXPECT_EQ(a.epochs[e].loss, b.epochs[e].loss) << "epoch " << e;
    EXPECT_EQ(a.epochs[e].kl, b.epochs[e].kl) << "epoch " << e;
  }
}

// One cross-entropy epoch of `arch` from `init` over w.order on `gpu` and on the CPU
// reference: the Adam update and the loss agree within the tolerances above.
void expect_ce_run_matches_cpu(Engine& gpu, const Arch& arch, const std::vector<float>& init, const World& w,
                               const TrainSettings& s) {
  const LossConfig ce{1.0f, 0.0f};
  auto cpu = loaded(make_cpu_engine(), w);
  const RunResult c = train_new(*cpu, arch, init, w, s, ce);
  const RunResult g = train_new(gpu, arch, init, w, s, ce);
  expect_same_adam_step(arch, g, c, s);
  expect_same_loss(g.epochs[0], c.epochs[0], ce);
}

TrainSettings deterministic_settings(int batch) {
  TrainSettings s;
  s.batch_size = batch;
  s.seed = 11;
  s.deterministic = true;
  return s;
}

TEST(PipelineGpu, TeacherStepMatchesCpu) {
  KD_REQUIRE_GPU();
  World w = make_world();
  w.order.resize(64);  // one full batch
  TrainSettings s;     // the default run: Adam, batch 64, timed algorithm choice; dropout keyed by seed 3
  s.seed = 3;
  expect_ce_run_matches_cpu(*loaded(make_cuda_engine(), w), w.teacher, w.teacher_init, w, s);
}

TEST(PipelineGpu, StudentStepMatchesCpu) {
  KD_REQUIRE_GPU();
  World w = make_world();
  w.order.resize(64);
  expect_ce_run_matches_cpu(*loaded(make_cuda_engine(), w), w.student, w.student_init, w, TrainSettings{});
}

// Soft targets from a teacher (here a second student-shaped model, which keeps
// the CPU side fast; the teacher's conv inference is covered by
// EvaluateMatchesCpu) read by sample index in a T = 4, alpha = 0.9 step.
TEST(PipelineGpu, DistillationStepMatchesCpu) {
  KD_REQUIRE_GPU();
  World w = make_world();
  w.order.resize(64);
  TrainSettings s;
  const LossConfig distill{4.0f, 0.9f};
  std::vector<float> teacher_params(w.student_init.size());
  init_params(w.student, 99, teacher_params.data());
  RunResult results[2];
  std::unique_ptr<Engine> engines[2] = {loaded(make_cpu_engine(), w), loaded(make_cuda_engine(), w)};
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<ModelEngine> teacher = engines[i]->create_model(w.student, teacher_params, s);
    engines[i]->compute_soft_targets(*teacher);
    results[i] = train_new(*engines[i], w.student, w.student_init, w, s, distill);
  }
  expect_same_adam_step(w.student, results[1], results[0], s);
  expect_same_loss(results[1].epochs[0], results[0].epochs[0], distill);
  EXPECT_GT(results[0].epochs[0].kl, 0.0);
}

// Three SGD steps of 100, 100 and 56 samples (the partial last batch has its
// own plan and graph). SGD's update is linear in the gradient, so the change
// of the parameters, p - p0, compares the accumulated gradients directly.
TEST(PipelineGpu, SgdStepsWithPartialBatchMatchCpu) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  TrainSettings s;
  s.batch_size = 100;
  s.optimizer = OptimizerKind::Sgd;
  s.sgd.lr = 0.1f;
  s.sgd.momentum = 0.9f;
  const LossConfig ce{1.0f, 0.0f};
  auto cpu = loaded(make_cpu_engine(), w);
  auto gpu = loaded(make_cuda_engine(), w);
  const RunResult c = train_new(*cpu, w.student, w.student_init, w, s, ce);
  const RunResult g = train_new(*gpu, w.student, w.student_init, w, s, ce);
  EXPECT_EQ(g.optim.step, 3);
  EXPECT_TRUE(g.optim.v.empty());
  std::vector<float> delta_cpu(c.params.size()), delta_gpu(g.params.size());
  for (size_t i = 0; i < c.params.size(); ++i) {
    delta_cpu[i] = c.params[i] - w.student_init[i];
    delta_gpu[i] = g.params[i] - w.student_init[i];
  }
  for (const ParamTensor& t : param_tensors(w.student))
    expect_mostly_close("p - p0", delta_gpu, delta_cpu, t, rms(delta_cpu.data() + t.offset, t.count), 1e-4, 2.0);
  expect_same_loss(g.epochs[0], c.epochs[0], ce);
}

// Validation (100 images, one batch) with the conv teacher and test (1,100
// images: batches of 1000 and 100) with the student. Correct counts agree
// exactly unless a row's two largest logits are within fp32 rounding of each
// other (~1e-6 relative; for random logits, about one row in a million).
TEST(PipelineGpu, EvaluateMatchesCpu) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  TrainSettings s;
  auto cpu = loaded(make_cpu_engine(), w);
  auto gpu = loaded(make_cuda_engine(), w);
  const struct {
    const Arch& arch;
    const std::vector<float>& params;
    SplitId split;
  } cases[] = {{w.teacher, w.teacher_init, SplitId::Val}, {w.student, w.student_init, SplitId::Test}};
  for (const auto& k : cases) {
    const EvalResult c = cpu->create_model(k.arch, k.params, s)->evaluate(k.split);
    const EvalResult g = gpu->create_model(k.arch, k.params, s)->evaluate(k.split);
    EXPECT_EQ(g.n, c.n);
    EXPECT_EQ(g.correct, c.correct) << k.arch.text;
    EXPECT_NEAR(g.loss, c.loss, 1e-5 * c.loss) << k.arch.text;  // mean CE: rows differ by logit rounding
  }
}

// Two epochs of 100 + 100 + 56 under Graph: each batch size's first step runs
// eagerly, its second is captured, later ones replay (the full-batch graph
// twice per epoch, the partial one in epoch 2). Same kernels, same inputs, so
// the result equals the Eager engine's bit for bit.
TEST(PipelineGpu, GraphReplayEqualsEagerExecution) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(100);
  const LossConfig ce{1.0f, 0.0f};
  auto graph = loaded(make_cuda_engine(0, StepExecution::Graph), w);
  auto eager = loaded(make_cuda_engine(0, StepExecution::Eager), w);
  const RunResult g = train_new(*graph, w.teacher, w.teacher_init, w, s, ce, 2);
  const RunResult e = train_new(*eager, w.teacher, w.teacher_init, w, s, ce, 2);
  EXPECT_EQ(g.optim.step, 6);
  expect_bit_identical(g, e);
}

TEST(PipelineGpu, SeededRunsAreBitIdentical) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(64);
  const LossConfig ce{1.0f, 0.0f};
  auto first = loaded(make_cuda_engine(), w);
  auto second = loaded(make_cuda_engine(), w);
  const RunResult a = train_new(*first, w.teacher, w.teacher_init, w, s, ce, 2);
  const RunResult b = train_new(*second, w.teacher, w.teacher_init, w, s, ce, 2);
  expect_bit_identical(a, b);
  EXPECT_NE(a.params, w.teacher_init);
}

// Stop after 2 of 4 steps, carry parameters and optimiser state (step count
// included: dropout and Adam read it) into a new model, resume at sample 128:
// the same parameters as the run that never stopped.
TEST(PipelineGpu, ResumeMidEpochContinuesExactly) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(64);
  const LossConfig ce{1.0f, 0.0f};
  auto engine = loaded(make_cuda_engine(), w);
  const RunResult whole = train_new(*engine, w.teacher, w.teacher_init, w, s, ce);

  std::unique_ptr<ModelEngine> first = engine->create_model(w.teacher, w.teacher_init, s);
  first->begin_epoch(w.order, 1);
  first->train_step(0, 64, ce);
  first->train_step(64, 64, ce);
  first->end_epoch();
  std::unique_ptr<ModelEngine> resumed = engine->create_model(w.teacher, first->get_params(), s);
  resumed->set_optim_state(first->get_optim_state());
  resumed->begin_epoch(w.order, 1);
  resumed->train_step(128, 64, ce);
  resumed->train_step(192, 64, ce);
  const TrainStats tail = resumed->end_epoch();
  EXPECT_EQ(tail.steps, 2);
  EXPECT_EQ(resumed->get_optim_state().step, 4);
  EXPECT_TRUE(resumed->get_params() == whole.params);
}

// NaN parameters make the second update of the run (global step index 1)
// non-finite; both engines say so.
TEST(PipelineGpu, NonFiniteLossIsReportedAtItsStep) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  TrainSettings s;
  const LossConfig ce{1.0f, 0.0f};
  std::unique_ptr<Engine> engines[2] = {loaded(make_cpu_engine(), w), loaded(make_cuda_engine(), w)};
  for (auto& engine : engines) {
    std::unique_ptr<ModelEngine> model = engine->create_model(w.student, w.student_init, s);
    model->begin_epoch(w.order, 1);
    model->train_step(0, 64, ce);
    const TrainStats good = model->end_epoch();
    EXPECT_TRUE(good.finite);
    EXPECT_EQ(good.first_bad_step, -1);
    model->set_params(std::vector<float>(w.student_init.size(), std::numeric_limits<float>::quiet_NaN()));
    model->begin_epoch(w.order, 1);
    model->train_step(0, 64, ce);
    model->train_step(64, 64, ce);
    const TrainStats bad = model->end_epoch();
    EXPECT_FALSE(bad.finite) << engine->device_description();
    EXPECT_EQ(bad.first_bad_step, 1) << engine->device_description();
    EXPECT_EQ(bad.steps, 2);
  }
}

TEST(PipelineGpu, RefusesStepsTheGraphCannotTake) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  TrainSettings s;
  const LossConfig ce{1.0f, 0.0f};
  auto engine = loaded(make_cuda_engine(), w);
  std::unique_ptr<ModelEngine> model = engine->create_model(w.student, w.student_init, s);
  EXPECT_THROW(model->train_step(0, 64, ce), Error);  // no epoch begun
  std::vector<int32_t> bad_order = w.order;
  bad_order[5] = int32_t(kTrainN);
  EXPECT_THROW(model->begin_epoch(bad_order, 1), Error);
  model->begin_epoch(w.order, 1);
  model->train_step(0, 64, ce);
  EXPECT_THROW(model->train_step(128, 64, ce), Error);  // skips [64, 128): the device cursor is at 64
  EXPECT_THROW(model->train_step(64, 65, ce), Error);   // more than the batch the buffers hold
  EXPECT_THROW(model->train_step(64, 64, LossConfig{4.0f, 0.9f}), Error);  // no soft targets yet
  model->train_step(64, 64, ce);
  EXPECT_EQ(model->end_epoch().steps, 2);
}

// How many times `needle` occurs in `text`.
size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

constexpr const char* kCaptureWarning = "CUDA graph capture of the training step";

// A capture that fails (forced through the test hook: it ends with a call
// that is illegal while capturing) warns once per batch size, naming the
// capture status and the CUDA error, and the steps run eagerly: the same bits
// as the Eager engine. Batch sizes 100 and 56 each attempt one capture.
TEST(PipelineGpu, FailedCaptureFallsBackToEagerBitIdentically) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(100);
  const LossConfig ce{1.0f, 0.0f};
  auto graph = loaded(make_cuda_engine(0, StepExecution::Graph), w);
  auto eager = loaded(make_cuda_engine(0, StepExecution::Eager), w);
  force_graph_capture_failure_for_testing(true);
  testing::internal::CaptureStderr();
  RunResult g;
  try {
    g = train_new(*graph, w.teacher, w.teacher_init, w, s, ce, 2);
  } catch (...) {
    force_graph_capture_failure_for_testing(false);
    testing::internal::GetCapturedStderr();
    throw;
  }
  const std::string warnings = testing::internal::GetCapturedStderr();
  force_graph_capture_failure_for_testing(false);
  const RunResult e = train_new(*eager, w.teacher, w.teacher_init, w, s, ce, 2);
  EXPECT_EQ(occurrences(warnings, kCaptureWarning), 2u) << warnings;
  EXPECT_NE(warnings.find("capture status"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("cudaErrorStreamCapture"), std::string::npos) << warnings;
  EXPECT_EQ(g.optim.step, 6);
  expect_bit_identical(g, e);
}

// A model created before the data is loaded sizes its per-epoch buffers
// (sample order, step losses) by its first epoch; a longer epoch later
// reallocates them, and the graphs captured with the old addresses must go
// with them: a 128-sample epoch in batches of 64 (the second step captured),
// then all 256 (recaptured, then replayed) equal the Eager engine bit for bit.
TEST(PipelineGpu, GraphsAreRecapturedWhenTheEpochGrows) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  World half = w;
  half.order.resize(128);
  const TrainSettings s = deterministic_settings(64);
  const LossConfig ce{1.0f, 0.0f};
  RunResult results[2];
  const StepExecution executions[2] = {StepExecution::Graph, StepExecution::Eager};
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<Engine> engine = make_cuda_engine(0, executions[i]);
    std::unique_ptr<ModelEngine> model = engine->create_model(w.student, w.student_init, s);
    engine->load(w.splits);
    train(*model, half, s, ce);
    results[i] = train(*model, w, s, ce);
  }
  EXPECT_EQ(results[0].optim.step, 6);
  expect_bit_identical(results[0], results[1]);
}

// A distillation step (soft targets gathered by sample index, T = 4,
// alpha = 0.9) replayed from its graph equals the eager steps bit for bit.
TEST(PipelineGpu, DistillationGraphReplayEqualsEagerExecution) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(100);
  const LossConfig distill{4.0f, 0.9f};
  RunResult results[2];
  const StepExecution executions[2] = {StepExecution::Graph, StepExecution::Eager};
  for (int i = 0; i < 2; ++i) {
    auto engine = loaded(make_cuda_engine(0, executions[i]), w);
    std::unique_ptr<ModelEngine> teacher = engine->create_model(w.teacher, w.teacher_init, s);
    engine->compute_soft_targets(*teacher);
    results[i] = train_new(*engine, w.student, w.student_init, w, s, distill, 2);
  }
  EXPECT_EQ(results[0].optim.step, 6);
  EXPECT_GT(results[0].epochs[0].kl, 0.0);
  expect_bit_identical(results[0], results[1]);
}

// The default run's setting: timed (non-deterministic) algorithm choice. The
// teacher's steps are captured (no capture warning) and train like the eager
// engine's: without --deterministic the two engines may pick different
// algorithms and sum in different orders, so the epoch losses agree to fp32
// reassociation (~1e-6 relative; 1e-3 allowed, far below the order-1 gap of
// a replay that trains on garbage), not bit for bit.
TEST(PipelineGpu, TeacherCaptureWithTimedAlgorithms) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  TrainSettings s;
  s.batch_size = 100;
  s.seed = 5;
  const LossConfig ce{1.0f, 0.0f};
  auto graph = loaded(make_cuda_engine(0, StepExecution::Graph), w);
  auto eager = loaded(make_cuda_engine(0, StepExecution::Eager), w);
  testing::internal::CaptureStderr();
  const RunResult g = train_new(*graph, w.teacher, w.teacher_init, w, s, ce, 2);
  const std::string warnings = testing::internal::GetCapturedStderr();
  const RunResult e = train_new(*eager, w.teacher, w.teacher_init, w, s, ce, 2);
  EXPECT_EQ(occurrences(warnings, kCaptureWarning), 0u) << warnings;
  ASSERT_EQ(g.epochs.size(), 2u);
  for (size_t epoch = 0; epoch < 2; ++epoch) {
    EXPECT_TRUE(g.epochs[epoch].finite);
    EXPECT_NEAR(g.epochs[epoch].loss, e.epochs[epoch].loss, 1e-3 * std::abs(e.epochs[epoch].loss)) << epoch;
  }
}

// Packed, "conv:3:3" puts conv1.bias at float 27 and every later tensor off
// 16-byte alignment; the engine's aligned layout must be invisible outside:
// parameters round-trip exactly, one Adam step matches the CPU engine, and a
// captured graph equals eager execution.
TEST(PipelineGpu, OddParameterCountsMatchCpu) {
  KD_REQUIRE_GPU();
  World w = make_world();
  const Shape image{1, kSide, kSide, false};
  const Arch odd = parse_arch("conv:3:3,relu,conv:5:3,relu,maxpool:2,flatten,dense:7,relu,dense:10", image, kClasses,
                              "--teacher-arch");
  std::vector<float> init(size_t(odd.param_count));
  init_params(odd, 17, init.data());
  TrainSettings s;
  const LossConfig ce{1.0f, 0.0f};
  auto gpu = loaded(make_cuda_engine(), w);
  EXPECT_TRUE(gpu->create_model(odd, init, s)->get_params() == init) << "parameters do not round-trip";

  World one_batch = w;
  one_batch.order.resize(64);
  expect_ce_run_matches_cpu(*gpu, odd, init, one_batch, s);

  const TrainSettings det = deterministic_settings(100);
  auto eager = loaded(make_cuda_engine(0, StepExecution::Eager), w);
  expect_bit_identical(train_new(*gpu, odd, init, w, det, ce, 2), train_new(*eager, odd, init, w, det, ce, 2));
}

TEST(PipelineGpu, LatencyIsTimedOnAtMostTheTestSplit) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  auto engine = loaded(make_cuda_engine(), w);
  std::unique_ptr<ModelEngine> model = engine->create_model(w.teacher, w.teacher_init, TrainSettings{});
  for (const int batch : {1, 64, 10000}) {
    const LatencyRecord r = model->measure_latency(batch, 5);
    EXPECT_EQ(r.batch, std::min<int>(batch, int(kTestN)));
    EXPECT_EQ(r.repeats, 5);
    EXPECT_GT(r.median_ms, 0.0);
    EXPECT_GE(r.p90_ms, r.median_ms);
    EXPECT_NEAR(r.samples_per_s, r.batch / (r.median_ms / 1e3), 1e-6 * r.samples_per_s);
  }
  EXPECT_NE(engine->versions().find("cuDNN"), std::string::npos);
  EXPECT_FALSE(engine->device_description().empty());
}

// The memory check's estimate against what a model really takes: free device
// memory before, and after creating the teacher, training an epoch (training
// activations, epoch buffers, cuDNN plans), evaluating (inference buffers)
// and timing the largest latency batch. cudaMalloc rounds to 2 MiB pages and
// the libraries create handles lazily, hence the 64 MiB of slack; the
// estimate also holds a 512 MiB cuDNN workspace allowance, an upper bound.
TEST(PipelineGpu, MemoryNeedCoversWhatAModelAllocates) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  auto engine = loaded(make_cuda_engine(), w);
  TrainSettings s;
  s.eval_batch_size = 1000;
  s.max_latency_batch = int(kTestN);
  const MemoryNeed need = engine->memory_need(w.teacher, s, false);
  EXPECT_GT(need.train_activations, 0);
  EXPECT_EQ(need.eval_activations, 0) << "the latency batch (1100) sizes the inference buffers";
  EXPECT_GT(need.latency_activations, 0);
  const int64_t free_before = engine->available_memory();
  {
    std::unique_ptr<ModelEngine> model = engine->create_model(w.teacher, w.teacher_init, s);
    train(*model, w, s, LossConfig{1.0f, 0.0f});
    model->evaluate(SplitId::Test);
    model->measure_latency(int(kTestN), 1);
    const int64_t used = free_before - engine->available_memory();
    EXPECT_LE(used, need.total() + (int64_t(64) << 20)) << "the estimate must not undercount";
    EXPECT_GE(used, (need.total() - need.workspace) / 2) << "an estimate far above the use refuses runs that fit";
  }
}

// The memory check's estimate of a distilled student's hint map and of the
// online teacher, as CudaModel allocates them: the map's (dt*ds + dt)
// parameters, gradient and Adam moments, and a distance per training image
// (the epoch's); per training row the mapped features and their gradient (dt
// each), the features' gradient (ds) and the row's distance; and the
// teacher's inference set at the training batch (prepare_online).
TEST(PipelineGpu, MemoryNeedCountsTheHintMapAndTheOnlineTeacher) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  auto engine = loaded(make_cuda_engine(), w);
  const TrainSettings s;
  const int64_t f = sizeof(float), b = s.batch_size;
  const MemoryNeed teacher = engine->memory_need(w.teacher, s, false);
  const MemoryNeed online = engine->memory_need(w.teacher, s, true);
  const int64_t inference = LayerPlan(w.teacher).activation_bytes(s.batch_size, false);
  EXPECT_EQ(online.train_activations - teacher.train_activations, inference);
  EXPECT_EQ(online.total() - teacher.total(), inference);

  const int64_t dt = hint_feature_width(w.teacher, "teacher"), ds = hint_feature_width(w.student, "student");
  TrainSettings h = s;
  h.hint = HintSettings{HintKind::Cosine, 1.0f, int(dt)};
  const MemoryNeed plain = engine->memory_need(w.student, s, false);
  const MemoryNeed hinted = engine->memory_need(w.student, h, false);
  EXPECT_EQ(hinted.state - plain.state, 4 * hint_map_param_count(int(ds), int(dt)) * f + kTrainN * f);
  EXPECT_EQ(hinted.train_activations - plain.train_activations, b * (2 * dt + ds + 1) * f);
  EXPECT_EQ(hinted.total() - plain.total(), (hinted.state - plain.state) + b * (2 * dt + ds + 1) * f);
}

// A stop request ends evaluation at a batch boundary: 1,100 test images in
// batches of 1,000, the request before the pass: nothing evaluated.
TEST(PipelineGpu, EvaluationStopsOnRequest) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  auto engine = loaded(make_cuda_engine(), w);
  std::unique_ptr<ModelEngine> model = engine->create_model(w.student, w.student_init, TrainSettings{});
  EXPECT_EQ(model->evaluate(SplitId::Test).n, kTestN);
  request_interrupt();
  const EvalResult stopped = model->evaluate(SplitId::Test);
  clear_interrupt();
  EXPECT_EQ(stopped.n, 0);
  EXPECT_EQ(stopped.loss, 0.0);
}

// --select best on the CUDA engine: keep_best copies the parameters on the
// device, training moves on, restore_best brings the kept ones back bit for
// bit; get_best / set_best carry them through a checkpoint (pipeline logic is
// engine-agnostic and tested on the CPU in pipeline_test).
TEST(PipelineGpu, KeptBestParametersAreRestoredExactly) {
  KD_REQUIRE_GPU();
  const World w = make_world();
  const TrainSettings s = deterministic_settings(64);
  const LossConfig ce{1.0f, 0.0f};
  auto engine = loaded(make_cuda_engine(), w);
  std::unique_ptr<ModelEngine> model = engine->create_model(w.student, w.student_init, s);
  EXPECT_TRUE(model->get_best().empty());
  EXPECT_THROW(model->restore_best(), Error);
  const RunResult first = train(*model, w, s, ce);
  model->keep_best();
  const RunResult second = train(*model, w, s, ce);
  ASSERT_NE(second.params, first.params);
  EXPECT_TRUE(model->get_best() == first.params);
  model->restore_best();
  EXPECT_TRUE(model->get_params() == first.params);

  std::unique_ptr<ModelEngine> resumed = engine->create_model(w.student, second.params, s);
  resumed->set_best(first.params);
  resumed->restore_best();
  EXPECT_TRUE(resumed->get_params() == first.params);
}

}  // namespace
}  // namespace kd
