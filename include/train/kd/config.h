// kd/config.h: the run configuration, as the command line gives it (kd/cli.h parses it).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/engine.h"  // OptimizerKind, DenseImplChoice
#include "kd/lr_schedule.h"

namespace kd {

enum class Command { Run, TrainTeacher, Distill, Eval, Latency, Export, Sweep };
enum class DeviceChoice { Auto, Cuda, Cpu, Reference };
// Which epoch of each model is saved, tested and timed: the one with the best
// validation accuracy (ties: lower validation loss, then the earlier), or the last.
enum class SelectRule { Best, Last };
// Where the student's soft targets come from: the teacher's logits for every
// training image computed once (cached), or the teacher run on each training
// batch as the student sees it (online; required by augmentation).
enum class SoftTargets { Cached, Online };
// A named set of training defaults (SPEC section 2): seed is the table of
// section 2 (the tutorial's recipe, student at 20 epochs); patient is
// augmentation, online consistent targets, cosine decay and AdamW over longer
// schedules. Flags given on the command line override a recipe's values.
enum class Recipe { Seed, Patient };

// --scale LO,HI: the range augmentation draws each sample's scale from.
struct ScaleRange {
  double lo = 0.9, hi = 1.1;
};

// --image-size HxW: the size image-folder images are resized to; 0x0 keeps them.
struct ImageSize {
  int h = 0, w = 0;
  bool operator==(const ImageSize& o) const { return h == o.h && w == o.w; }
};

struct Options {
  Command command = Command::Run;
  Recipe recipe = Recipe::Seed;  // apply_recipe sets the fields below that no flag gave
  std::string data_dir = "data/mnist";
  bool channels_last = false;  // --channels-last: .npy images are (N, H, W, C)
  ImageSize image_size;        // --image-size: image folders only
  // --normalize: "auto" (MNIST's constants for 1x28x28 data, else "data"),
  // "data" (the training split's per-channel mean and std), or
  // MEAN[,MEAN...]/STD[,STD...] (kd/data.h parse_normalization). A saved
  // model's own normalisation overrides all three (docs/data.md).
  std::string normalize = "auto";
  DeviceChoice device = DeviceChoice::Auto;
  std::string out_dir;  // empty -> runs/<timestamp>/
  uint64_t seed = 0;
  int batch_size = 64;
  int epochs_teacher = 5;
  int epochs_student = 20;  // SPEC section 2: the tutorial's 5 raised to 20 (issue #21)
  double lr = 1e-3;
  OptimizerKind optimizer = OptimizerKind::Adam;
  double momentum = 0.9;                                  // SGD only
  LrScheduleKind lr_schedule = LrScheduleKind::Constant;  // per model over its own epochs (kd/lr_schedule.h)
  double warmup_epochs = 0;                               // linear warm-up, in epochs of each model
  double weight_decay = 0;                                // Adam: decoupled (AdamW); SGD: L2 added to the gradient
  // Augmentation of every model's training batches (kd/augment.h).
  bool augment = false;
  double shift = 2;    // pixels, tx and ty ~ U[-shift, shift)
  double rotate = 12;  // degrees
  ScaleRange scale;
  SoftTargets soft_targets = SoftTargets::Cached;
  HintKind hint = HintKind::Off;  // --hint: the distilled student's hint loss (kd/hint.h)
  // --hint-weight: its weight beside the distillation loss. 1: the cosine distance, bounded in
  // [0, 2], is then 7-17 % of the student's loss over training (bench/RESULTS.md), a guide
  // that does not override the teacher's logits; mse follows the features' scale (lower it).
  double hint_weight = 1.0;
  // Mixup of the students' training batches (kd/augment.h), the Beta(A, A)
  // concentration A; 0 = off. The teacher trains without it.
  double mixup = 0;
  double temperature = 4.0;
  double alpha = 0.9;
  std::string teacher_arch = kDefaultTeacherArch;
  std::string student_arch = kDefaultStudentArch;
  int64_t val_size = 5000;
  int64_t train_limit = 0;  // 0 = all
  int64_t test_limit = 0;   // 0 = all 10,000; >0 evaluates only the first N test images
  bool no_baseline = false;
  bool deterministic = false;
  bool quiet = false;
  DenseImplChoice dense_impl = DenseImplChoice::Auto;
  SelectRule select = SelectRule::Best;
  std::string teacher_path;    // distill --teacher F
  std::string model_path;      // eval / latency / export --model F
  std::string onnx_path;       // export --onnx OUT
  bool no_ort = false;         // --no-ort: no ONNX Runtime latency in the report
  bool data_parallel = false;  // --data-parallel: every batch shared by the mpirun/srun ranks (docs/mpi.md)
  std::string resume_dir;      // --resume DIR
  int eval_batch_size = 1000;
  int threads = 0;  // fast CPU engine threads; 0 = every hardware thread
  std::vector<int> latency_batches = {1, 64, 1024, 10000};

  // kdtrain sweep (kd/sweep.h). --student-arch, --temperature and --alpha take
  // lists there (repeated flags or ';'-separated values); every other command
  // takes one value, copied into student_arch, temperature and alpha above.
  // An empty list means the sweep's default grid.
  std::vector<std::string> student_archs;
  std::vector<double> temperatures, alphas;
  int seeds = 1;                         // --seeds: runs per configuration
  std::optional<double> max_latency_us;  // constraints for the recommended student
  std::optional<int64_t> max_params;
  std::optional<double> min_accuracy;  // percent
  std::string export_best;             // --export-best OUT.onnx: the recommended student as ONNX
};

// The name of every value of the enums a flag takes, in --help order: one
// table per enum, read by the parser (kd/cli.h), the report and messages.
template <class E>
struct Named {
  const char* name;
  E value;
};

inline constexpr Named<Command> kCommands[] = {{"run", Command::Run},         {"train-teacher", Command::TrainTeacher},
                                               {"distill", Command::Distill}, {"eval", Command::Eval},
                                               {"latency", Command::Latency}, {"export", Command::Export},
                                               {"sweep", Command::Sweep}};
inline constexpr Named<DeviceChoice> kDevices[] = {{"auto", DeviceChoice::Auto},
                                                   {"cuda", DeviceChoice::Cuda},
                                                   {"cpu", DeviceChoice::Cpu},
                                                   {"reference", DeviceChoice::Reference}};
inline constexpr Named<OptimizerKind> kOptimizers[] = {{"adam", OptimizerKind::Adam}, {"sgd", OptimizerKind::Sgd}};
inline constexpr Named<DenseImplChoice> kDenseImpls[] = {
    {"auto", DenseImplChoice::Auto}, {"custom", DenseImplChoice::Custom}, {"cublas", DenseImplChoice::Cublas}};
inline constexpr Named<SelectRule> kSelectRules[] = {{"best", SelectRule::Best}, {"last", SelectRule::Last}};
inline constexpr Named<Recipe> kRecipes[] = {{"seed", Recipe::Seed}, {"patient", Recipe::Patient}};
inline constexpr Named<SoftTargets> kSoftTargets[] = {{"cached", SoftTargets::Cached}, {"online", SoftTargets::Online}};
inline constexpr Named<LrScheduleKind> kLrSchedules[] = {{"constant", LrScheduleKind::Constant},
                                                         {"cosine", LrScheduleKind::Cosine}};
inline constexpr Named<HintKind> kHintKinds[] = {
    {"off", HintKind::Off}, {"cosine", HintKind::Cosine}, {"mse", HintKind::Mse}};

template <class E, size_t N>
constexpr const char* name_of(const Named<E> (&table)[N], E value) {
  for (const Named<E>& n : table)
    if (n.value == value) return n.name;
  return "?";
}

inline const char* command_name(Command c) { return name_of(kCommands, c); }
inline const char* device_name(DeviceChoice d) { return name_of(kDevices, d); }
inline const char* select_rule_name(SelectRule s) { return name_of(kSelectRules, s); }

// The flags a recipe sets, each with its field: apply_recipe writes the
// recipe's value into every field whose flag `given` says was not on the
// command line. Recipe::Seed's values are Options' defaults.
// kRecipeFlags lists them, for --help and the tests.
inline constexpr const char* kRecipeFlags[] = {"--epochs-teacher", "--epochs-student", "--lr-schedule",
                                               "--warmup-epochs",  "--weight-decay",   "--augment",
                                               "--soft-targets"};
void apply_recipe(Options& o, const std::function<bool(const char* flag)>& given);
// One line with every value a recipe sets, as resolved: "recipe patient: teacher
// 20 epochs, student and baseline 40 epochs; adam lr 0.001, cosine schedule, ...";
// without the students' values unless `students` (train-teacher trains none).
std::string recipe_text(const Options& o, bool students);

}  // namespace kd
