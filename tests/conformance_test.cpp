// One conformance test for every engine this build has (ggml's
// test-backend-ops): the same cases, through the same Engine / ModelEngine
// entry points (kd/engine.h), on the CPU reference, the fast CPU engine at 1
// and 2 threads, and the CUDA engine when a device exists; each engine is
// compared with the reference.
//
// The cases cover what an engine owns: a training step (gather, forward,
// loss, backward, optimiser) with a full, an odd and a partial last batch;
// Adam and SGD; distillation from soft targets; inference; the best-epoch
// copy; and the argument checks the entry points share.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/config.h"  // SoftTargets
#include "kd/cpu_engine.h"
#include "kd/engine.h"
#include "kd/error.h"
#include "kd/params.h"
#include "engine_test_util.h"
#include "error_test_util.h"
#if defined(KD_WITH_CUDA) || defined(KD_SIM)
#include "kd/cuda_buffer.h"
#include "kd/cuda_engine.h"
#endif

namespace kd {
namespace {

// A stride-2 padded conv, a max-pool, both dropouts and dense layers: every
// layer kind and the shapes a conv engine plans for, at 10x10 so the
// reference stays fast. And the plain MLP student.
constexpr const char* kConvNet =
    "conv:4:3:1:1,relu,conv:6:3:2:1,relu,maxpool:2,dropout:0.25,flatten,dense:16,relu,dropout:0.5,dense:3";
constexpr const char* kMlp = "flatten,dense:12,relu,dense:3";
constexpr int kSide = 10, kClasses = 3;
constexpr int64_t kTrainN = 150;  // batches of 64: 64, 64 and a partial 22

struct NamedEngine {
  std::string name;
  std::function<std::unique_ptr<Engine>()> make;
};

void PrintTo(const NamedEngine& engine, std::ostream* os) { *os << engine.name; }

// Every engine this build and machine can run; the reference first.
std::vector<NamedEngine> engines() {
  std::vector<NamedEngine> out = {{"reference", [] { return make_cpu_engine(); }},
                                  {"fast-1-thread", [] { return make_fast_cpu_engine(1); }},
                                  {"fast-2-threads", [] { return make_fast_cpu_engine(2); }}};
#if defined(KD_WITH_CUDA) || defined(KD_SIM)
  if (cuda::device_count() > 0) out.push_back({"cuda", [] { return make_cuda_engine(); }});
#endif
  return out;
}

// Grey (MNIST's normalisation), or colour with a different mean and std per
// channel, so that an engine normalising a plane with another's shows.
Splits random_splits(int channels = 1) {
  std::mt19937_64 rng(20261207);
  Splits s;
  s.train = test::random_dataset(kTrainN, kSide, kClasses, rng, channels);
  s.val = test::random_dataset(40, kSide, kClasses, rng, channels);
  s.test = test::random_dataset(37, kSide, kClasses, rng, channels);
  s.num_classes = kClasses;
  if (channels == 3) s.normalization = Normalization{3, {0.4f, 0.5f, 0.6f}, {0.2f, 0.25f, 0.3f}};
  return s;
}

Arch arch_of(const char* text, int channels = 1) {
  return parse_arch(text, Shape{channels, kSide, kSide, false}, kClasses, "--arch");
}

std::vector<float> initial_params(const Arch& arch) {
  std::vector<float> p(size_t(arch.param_count));
  init_params(arch, 11, p.data());
  return p;
}

// ||(a - init) - (b - init)|| / ||b - init||: how far apart two engines moved
// the parameters, relative to how far they moved.
double move_error(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& init) {
  double num = 0, den = 0;
  for (size_t i = 0; i < init.size(); ++i) {
    const double da = double(a[i]) - init[i], db = double(b[i]) - init[i];
    num += (da - db) * (da - db);
    den += db * db;
  }
  return std::isfinite(num) && den > 0 ? std::sqrt(num / den) : INFINITY;
}

// One epoch over a fixed order: batches of 64, 64 and 22, in steps that the
// entry points require to be consecutive.
struct Trained {
  std::vector<float> params;
  TrainStats stats;
  HintMapState hint_map;  // empty without a hint
};
Trained train_epoch(ModelEngine& model, const LossConfig& loss) {
  std::vector<int32_t> order(static_cast<size_t>(kTrainN));
  for (int64_t i = 0; i < kTrainN; ++i) order[size_t(i)] = int32_t((i * 37) % kTrainN);  // a fixed permutation
  model.begin_epoch(order, 1);
  for (int64_t begin = 0; begin < kTrainN; begin += 64)
    model.train_step(begin, int(std::min<int64_t>(64, kTrainN - begin)), loss);
  Trained t;
  t.stats = model.end_epoch();
  t.params = model.get_params();
  t.hint_map = model.get_hint_map();
  return t;
}

// Tolerances. The engines differ only in rounding: the reference accumulates
// in double, the fast engine and CUDA in fp32 in other orders (oneDNN's and
// cuBLAS/cuDNN's blockings). After one epoch (3 steps) the fast engine's
// parameter moves differ from the reference's by 5e-7 to 1.1e-6 relative
// (measured on this file's cases, Adam and SGD, 1 and 2 threads); 1e-4 leaves
// two orders of magnitude for other blockings and still catches a wrong
// gradient (which moves a tensor in another direction: error ~1).
constexpr double kMoveTolerance = 1e-4;
constexpr double kLossTolerance = 1e-4;  // relative, on a mean loss of ~1.1

TrainSettings settings_for(OptimizerKind optimizer) {
  TrainSettings s;
  s.batch_size = 64;
  s.eval_batch_size = 32;  // 40 and 37 images: a partial last inference batch too
  s.optimizer = optimizer;
  s.seed = 5;  // dropout streams, identical on every engine (Philox)
  return s;
}

class Conformance : public ::testing::TestWithParam<NamedEngine> {};

// One training epoch of `text` on `engine` and on the reference, then inference.
void expect_epoch_matches_reference(const NamedEngine& engine_kind, const char* text, OptimizerKind optimizer,
                                    int channels) {
  SCOPED_TRACE(std::string(text) + (optimizer == OptimizerKind::Adam ? " adam" : " sgd") + ", " +
               std::to_string(channels) + " channel(s)");
  const Arch arch = arch_of(text, channels);
  const std::vector<float> init = initial_params(arch);
  const Splits splits = random_splits(channels);
  auto reference = make_cpu_engine(), engine = engine_kind.make();
  reference->load(splits);
  engine->load(splits);
  auto want_model = reference->create_model(arch, init, settings_for(optimizer));
  auto got_model = engine->create_model(arch, init, settings_for(optimizer));
  const Trained want = train_epoch(*want_model, LossConfig{1.0f, 0.0f});
  const Trained got = train_epoch(*got_model, LossConfig{1.0f, 0.0f});
  EXPECT_EQ(got.stats.steps, 3);
  EXPECT_TRUE(got.stats.finite);
  EXPECT_LE(move_error(got.params, want.params, init), kMoveTolerance);
  EXPECT_NEAR(got.stats.loss, want.stats.loss, kLossTolerance * std::fabs(want.stats.loss));

  // Inference on the trained model: the same loss, and the same correct
  // count except where two logits are within rounding of each other (at
  // most one image of 37 in these cases).
  for (SplitId split : {SplitId::Val, SplitId::Test}) {
    const EvalResult a = got_model->evaluate(split), b = want_model->evaluate(split);
    EXPECT_EQ(a.n, b.n);
    EXPECT_LE(std::llabs(a.correct - b.correct), 1);
    EXPECT_NEAR(a.loss, b.loss, kLossTolerance * std::fabs(b.loss));
  }
}

TEST_P(Conformance, TrainingEpochMatchesTheReference) {
  for (const char* text : {kConvNet, kMlp})
    for (OptimizerKind optimizer : {OptimizerKind::Adam, OptimizerKind::Sgd})
      expect_epoch_matches_reference(GetParam(), text, optimizer, 1);
}

// Three channels, each with its own mean and std: the gather's planes, the
// first conv's input channels and the flatten of what follows. The conv net
// only: the MLP adds no channel handling (its flatten is a copy), and each
// case costs seconds on the simulated CUDA engine.
TEST_P(Conformance, ColourTrainingEpochMatchesTheReference) {
  expect_epoch_matches_reference(GetParam(), kConvNet, OptimizerKind::Adam, 3);
}

// The patient recipe's training ingredients (SPEC section 2) on the MLP: cosine
// decay with a one-step warm-up over the epoch's three updates, decoupled
// weight decay and augmentation. The rate comes from the host on the CPU
// engines and from the device step counter inside the replayed graph on CUDA;
// the augmented views from the reference's gather on the CPU engines and
// kernels/augment.cu on CUDA (the same arithmetic; tests/augment_gpu_test.cpp).
// Each must change the training (else the ingredient is not wired).
TrainSettings recipe_settings() {
  TrainSettings s = settings_for(OptimizerKind::Adam);
  s.adam.lr = 1e-2f;  // large enough that the schedule's and the decay's effects dwarf rounding
  s.adam.weight_decay = 0.05f;
  s.adam.decoupled_weight_decay = true;
  s.lr_schedule = LrSchedule{LrScheduleKind::Cosine, 1, 3};
  s.augment.enabled = true;
  s.augment.max_shift = 1.5f;  // of 10x10 images
  return s;
}

// One scratch epoch of the MLP under `settings` on the reference and on `engine`
// (both loaded here with the same random splits): the engine moves the
// parameters and reports the loss as the reference does. Returns the
// reference's epoch.
Trained expect_scratch_epoch_matches(Engine& engine, const TrainSettings& settings) {
  const Arch arch = arch_of(kMlp);
  const std::vector<float> init = initial_params(arch);
  const Splits splits = random_splits();
  auto reference = make_cpu_engine();
  reference->load(splits);
  engine.load(splits);
  const Trained want = train_epoch(*reference->create_model(arch, init, settings), LossConfig{1.0f, 0.0f});
  const Trained got = train_epoch(*engine.create_model(arch, init, settings), LossConfig{1.0f, 0.0f});
  EXPECT_LE(move_error(got.params, want.params, init), kMoveTolerance);
  EXPECT_NEAR(got.stats.loss, want.stats.loss, kLossTolerance * std::fabs(want.stats.loss));
  return want;
}

TEST_P(Conformance, RecipeEpochMatchesTheReference) {
  const Arch arch = arch_of(kMlp);
  const std::vector<float> init = initial_params(arch);
  auto engine = GetParam().make();
  const Trained want = expect_scratch_epoch_matches(*engine, recipe_settings());
  TrainSettings unscheduled = recipe_settings(), unaugmented = recipe_settings();
  unscheduled.lr_schedule = LrSchedule{};
  unaugmented.augment.enabled = false;
  for (const TrainSettings& without : {unscheduled, unaugmented}) {
    const Trained other = train_epoch(*engine->create_model(arch, init, without), LossConfig{1.0f, 0.0f});
    EXPECT_GT(move_error(other.params, want.params, init), 100 * kMoveTolerance)
        << (without.augment.enabled ? "the schedule" : "augmentation") << " had no effect";
  }
}

// One distillation epoch of the MLP student (with `student` settings) from the
// conv teacher on a fresh `engine`: soft targets cached once, or online (the
// teacher run on every student batch).
Trained distill_epoch(Engine& engine, SoftTargets targets, const TrainSettings& student) {
  const Arch teacher_arch = arch_of(kConvNet), student_arch = arch_of(kMlp);
  engine.load(random_splits());
  auto teacher = engine.create_model(teacher_arch, initial_params(teacher_arch), settings_for(OptimizerKind::Adam));
  if (targets == SoftTargets::Online) engine.use_online_teacher(*teacher);
  else engine.compute_soft_targets(*teacher);
  auto model = engine.create_model(student_arch, initial_params(student_arch), student);
  return train_epoch(*model, LossConfig{4.0f, 0.9f});
}

// The engine's distillation epoch against the reference's.
void expect_distillation_matches(const NamedEngine& engine, SoftTargets targets, const TrainSettings& student) {
  const std::vector<float> student_init = initial_params(arch_of(kMlp));
  const Trained want = distill_epoch(*make_cpu_engine(), targets, student);
  const Trained got = distill_epoch(*engine.make(), targets, student);
  EXPECT_LE(move_error(got.params, want.params, student_init), kMoveTolerance);
  EXPECT_NEAR(got.stats.kl, want.stats.kl, kLossTolerance * std::fabs(want.stats.kl));
  EXPECT_GT(got.stats.kl, 0) << "the KL term is reported while distilling";
}

TEST_P(Conformance, DistillationStepMatchesTheReference) {
  expect_distillation_matches(GetParam(), SoftTargets::Cached, settings_for(OptimizerKind::Adam));
}

// Online soft targets: each student step runs the teacher (dropout off) on the
// student's own augmented batch. Every engine matches the reference, and the
// targets are not the cached ones (which are of the unaugmented images).
TEST_P(Conformance, OnlineDistillationOnAugmentedBatchesMatchesTheReference) {
  expect_distillation_matches(GetParam(), SoftTargets::Online, recipe_settings());
  const Trained online = distill_epoch(*GetParam().make(), SoftTargets::Online, recipe_settings());
  const Trained cached = distill_epoch(*GetParam().make(), SoftTargets::Cached, recipe_settings());
  EXPECT_GT(std::fabs(cached.stats.kl - online.stats.kl), 100 * kLossTolerance * online.stats.kl)
      << "the online targets are the cached ones";
}

// The hint (kd/hint.h) on the online distillation epoch: the MLP student's
// 12 features mapped to the conv teacher's 16 (the input of its last dense
// layer, after ReLU and an inference-mode dropout). The student and the map
// move as the reference's, the distance is reported, and the hint changes
// the training (else it is not wired). Both distances, Adam and SGD.
TrainSettings hint_settings(HintKind kind, OptimizerKind optimizer) {
  TrainSettings s = settings_for(optimizer);
  s.hint = HintSettings{kind, 0.5f, 16};
  return s;
}

TEST_P(Conformance, HintDistillationMatchesTheReference) {
  const std::vector<float> student_init = initial_params(arch_of(kMlp));
  const std::vector<float> map_init = init_hint_map(12, 16, settings_for(OptimizerKind::Adam).seed);
  for (HintKind kind : {HintKind::Cosine, HintKind::Mse})
    for (OptimizerKind optimizer : {OptimizerKind::Adam, OptimizerKind::Sgd}) {
      SCOPED_TRACE(std::string(kind == HintKind::Cosine ? "cosine" : "mse") +
                   (optimizer == OptimizerKind::Adam ? ", adam" : ", sgd"));
      const TrainSettings settings = hint_settings(kind, optimizer);
      const Trained want = distill_epoch(*make_cpu_engine(), SoftTargets::Online, settings);
      const Trained got = distill_epoch(*GetParam().make(), SoftTargets::Online, settings);
      EXPECT_LE(move_error(got.params, want.params, student_init), kMoveTolerance);
      ASSERT_EQ(got.hint_map.params.size(), map_init.size());
      EXPECT_LE(move_error(got.hint_map.params, want.hint_map.params, map_init), kMoveTolerance);
      EXPECT_GT(got.stats.hint, 0) << "the hint distance is reported";
      EXPECT_NEAR(got.stats.hint, want.stats.hint, kLossTolerance * want.stats.hint);
      EXPECT_NEAR(got.stats.loss, want.stats.loss, kLossTolerance * want.stats.loss);
      EXPECT_EQ(got.hint_map.v.size(), optimizer == OptimizerKind::Adam ? map_init.size() : 0);
    }
  const Trained without = distill_epoch(*GetParam().make(), SoftTargets::Online, settings_for(OptimizerKind::Adam));
  const Trained with =
      distill_epoch(*GetParam().make(), SoftTargets::Online, hint_settings(HintKind::Cosine, OptimizerKind::Adam));
  EXPECT_GT(move_error(with.params, without.params, student_init), 100 * kMoveTolerance) << "the hint had no effect";
}

// The map's state round-trips through get_hint_map / set_hint_map (checkpoints),
// and the hint's misuses are refused with the same line on every engine.
TEST_P(Conformance, HintMapRoundTripsAndMisuseIsRefused) {
  const Arch student = arch_of(kMlp);
  auto engine = GetParam().make();
  engine->load(random_splits());
  const TrainSettings mse = hint_settings(HintKind::Mse, OptimizerKind::Adam);
  auto model = engine->create_model(student, initial_params(student), mse);
  HintMapState state = model->get_hint_map();
  EXPECT_EQ(state.params, init_hint_map(12, 16, settings_for(OptimizerKind::Adam).seed));
  EXPECT_EQ(state.m, std::vector<float>(state.params.size(), 0.0f));
  for (size_t i = 0; i < state.params.size(); ++i) state.m[i] = state.v[i] = float(i) * 1e-3f, state.params[i] += 1;
  model->set_hint_map(state);
  const HintMapState back = model->get_hint_map();
  EXPECT_EQ(back.params, state.params);
  EXPECT_EQ(back.m, state.m);
  EXPECT_EQ(back.v, state.v);
  state.params.pop_back();
  EXPECT_EQ(test::error_of([&] { model->set_hint_map(state); }),
            "hint map state does not match the model (207 values for a map of 208): was it saved with another "
            "--student-arch, teacher or --optimizer?");
  auto plain = engine->create_model(student, initial_params(student), settings_for(OptimizerKind::Adam));
  EXPECT_TRUE(plain->get_hint_map().params.empty());
  EXPECT_EQ(test::error_of([&] { plain->set_hint_map(back); }),
            "set_hint_map: this model trains no hint (created with --hint off)");
  // No online teacher: the features have nowhere to come from.
  model->begin_epoch({0, 1, 2, 3}, 1);
  EXPECT_EQ(test::error_of([&] {
              model->train_step(0, 4, LossConfig{4.0f, 0.9f});
            }),
            "--hint: the teacher's features come from its run on each training batch; add --soft-targets online");
  // A teacher of another width than the map was made for.
  auto teacher = engine->create_model(student, initial_params(student), settings_for(OptimizerKind::Adam));
  engine->use_online_teacher(*teacher);
  auto fresh = engine->create_model(student, initial_params(student), mse);
  fresh->begin_epoch({0, 1, 2, 3}, 1);
  EXPECT_EQ(test::error_of([&] {
              fresh->train_step(0, 4, LossConfig{4.0f, 0.9f});
            }),
            "--hint: the online teacher 'flatten,dense:12,relu,dense:3' does not have the 16 features this "
            "student's hint map was made for");
  // A student with no hidden layer.
  const Arch linear = arch_of("flatten,dense:3");
  EXPECT_EQ(test::error_of([&] { engine->create_model(linear, initial_params(linear), mse); }),
            "--hint: the student 'flatten,dense:3' has no hidden layer feeding a last dense layer, so it has no "
            "features to match; use a student with one (e.g. 'flatten,dense:128,relu,dense:10') or --hint off");
}

// Mixup on the recipe's augmented batches (kd/augment.h): the mixed views from
// the reference's gather on the CPU engines and kernels/augment.cu on CUDA,
// the per-batch draws (host-drawn; on CUDA tabulated per epoch and taken by
// the replayed graph), the mixed hard-label loss, and, distilling, the online
// teacher on the mixed batch. Each engine matches the reference, scratch and
// distilled, and mixup changes the training.
TEST_P(Conformance, MixupEpochMatchesTheReference) {
  TrainSettings mixed = recipe_settings();
  mixed.mixup = 0.4f;
  const Arch arch = arch_of(kMlp);
  const std::vector<float> init = initial_params(arch);
  auto engine = GetParam().make();
  const Trained want = expect_scratch_epoch_matches(*engine, mixed);
  const Trained unmixed = train_epoch(*engine->create_model(arch, init, recipe_settings()), LossConfig{1.0f, 0.0f});
  EXPECT_GT(move_error(unmixed.params, want.params, init), 100 * kMoveTolerance) << "mixup had no effect";
  expect_distillation_matches(GetParam(), SoftTargets::Online, mixed);
}

TEST_P(Conformance, BestEpochCopyRoundTrips) {
  const Arch arch = arch_of(kMlp);
  const std::vector<float> init = initial_params(arch);
  auto engine = GetParam().make();
  engine->load(random_splits());
  auto model = engine->create_model(arch, init, settings_for(OptimizerKind::Adam));
  EXPECT_TRUE(model->get_best().empty()) << "nothing kept yet";
  model->keep_best();
  const Trained trained = train_epoch(*model, LossConfig{1.0f, 0.0f});
  EXPECT_NE(trained.params, init);
  EXPECT_EQ(model->get_best(), init);
  model->restore_best();
  EXPECT_EQ(model->get_params(), init) << "restore_best copies the kept parameters back, bit for bit";
  model->set_best(trained.params);
  model->restore_best();
  EXPECT_EQ(model->get_params(), trained.params);
}

// The entry points check for every engine; the messages are the same.
TEST_P(Conformance, EntryPointsRefuseMisuseWithOneMessage) {
  const Arch arch = arch_of(kMlp);
  auto engine = GetParam().make();
  engine->load(random_splits());
  auto model = engine->create_model(arch, initial_params(arch), settings_for(OptimizerKind::Adam));
  const LossConfig ce{1.0f, 0.0f};
  EXPECT_EQ(test::error_of([&] { model->train_step(0, 8, ce); }),
            "train_step: no epoch begun; call begin_epoch with the epoch's order first");
  EXPECT_EQ(test::error_of([&] {
              model->begin_epoch({0, 1, int32_t(kTrainN)}, 1);
            }),
            "begin_epoch: order[2] = 150 is not an index into the training split of 150 images");
  model->begin_epoch({0, 1, 2, 3}, 1);
  EXPECT_EQ(test::error_of([&] { model->train_step(0, 65, ce); }),
            "train_step: batch of 65 samples; this model was built for 1 to 64");
  EXPECT_EQ(test::error_of([&] { model->train_step(2, 3, ce); }),
            "train_step: samples [2, 5) are outside this epoch's order of 4");
  EXPECT_EQ(test::error_of([&] {
              model->train_step(0, 2, LossConfig{0.0f, 0.5f});
            }),
            "train_step: need temperature > 0 and alpha in [0, 1], got T = 0.000000, alpha = 0.500000");
  model->train_step(0, 2, ce);
  EXPECT_EQ(test::error_of([&] { model->train_step(3, 1, ce); }),
            "train_step: begin = 3, but the epoch's previous step ended at 2; steps within an epoch must take "
            "consecutive ranges of the order");
  model->end_epoch();
  EXPECT_EQ(test::error_of([&] { model->set_params({1.0f}); }), "set_params: 1 values for a model of 1251 parameters");
  EXPECT_EQ(test::error_of([&] { model->restore_best(); }),
            "restore_best: no parameters were kept (keep_best was never called)");
  OptimState sgd_shaped;
  sgd_shaped.m.resize(size_t(arch.param_count));
  EXPECT_EQ(test::error_of([&] { model->set_optim_state(sgd_shaped); }),
            "optimiser state does not match the model (1251 moments for 1251 parameters): was it saved with "
            "another --optimizer or arch?");
}

INSTANTIATE_TEST_SUITE_P(EveryEngine, Conformance, ::testing::ValuesIn(engines()),
                         [](const ::testing::TestParamInfo<NamedEngine>& info) {
                           std::string name = info.param.name;
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

}  // namespace
}  // namespace kd
