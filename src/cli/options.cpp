// The command line: CLI11 for the grammar (subcommands, --help), our own
// parsers for every value so each failure is one line naming the flag.
//
// Every value is bound as text and converted in an option callback: CLI11's
// own conversions accept octal ("010" = 8), "nan" and "inf", which we reject.
#include "kd/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "kd/augment.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/layers.h"
#include "kd/sweep.h"

namespace kd {
namespace {

constexpr const char* kVersionText = "kdtrain 0.1";

// The flags that shape only how a student trains (its loss, its targets, its
// batches). train-teacher trains no student, so each would be accepted and do
// nothing: given explicitly there, it is refused. A recipe that sets one
// (--recipe patient's --soft-targets online) gives no flag, so stays accepted.
// The flags named for the student (--student-arch, --epochs-student,
// --no-baseline) stay accepted: their names say whose they are, so nobody
// takes them for the teacher's, and command lines shared by train-teacher and
// distill pass them (tests/sim/kdtrain_sim_test.sh does).
constexpr const char* kStudentTrainingFlags[] = {"--soft-targets", "--mixup",       "--hint",
                                                 "--hint-weight",  "--temperature", "--alpha"};

// The name table for each enum a flag can take, so one template parses them all.
template <class E>
struct Choices;
template <>
struct Choices<DeviceChoice> {
  static constexpr const auto& table = kDevices;
};
template <>
struct Choices<OptimizerKind> {
  static constexpr const auto& table = kOptimizers;
};
template <>
struct Choices<DenseImplChoice> {
  static constexpr const auto& table = kDenseImpls;
};
template <>
struct Choices<SelectRule> {
  static constexpr const auto& table = kSelectRules;
};
template <>
struct Choices<Recipe> {
  static constexpr const auto& table = kRecipes;
};
template <>
struct Choices<SoftTargets> {
  static constexpr const auto& table = kSoftTargets;
};
template <>
struct Choices<LrScheduleKind> {
  static constexpr const auto& table = kLrSchedules;
};
template <>
struct Choices<HintKind> {
  static constexpr const auto& table = kHintKinds;
};

// "a|b|c", or with sep = ", " for sentences.
template <class E, size_t N>
std::string names_list(const Named<E> (&table)[N], const char* sep) {
  std::string out;
  for (size_t i = 0; i < N; ++i) out += (i ? sep : "") + std::string(table[i].name);
  return out;
}

// ---------------------------------------------------------------- value parsers
// Each parses the text given to `flag` or throws kd::Error naming it.

[[noreturn]] void bad_value(const std::string& flag, const std::string& text, const std::string& why) {
  fail(flag + ": '" + text + "' " + why);
}

// An optional '-' then decimal digits; no '+', spaces, hex or octal.
int64_t parse_integer(const std::string& flag, const std::string& text) {
  const size_t digits_from = !text.empty() && text[0] == '-' ? 1 : 0;
  bool ok = text.size() > digits_from;
  for (size_t i = digits_from; i < text.size(); ++i) ok = ok && text[i] >= '0' && text[i] <= '9';
  if (!ok) bad_value(flag, text, "is not an integer");
  errno = 0;
  const long long v = std::strtoll(text.c_str(), nullptr, 10);
  if (errno == ERANGE) bad_value(flag, text, "is out of range");
  return v;
}

void parse_value(const std::string& flag, const std::string& text, int64_t& out) { out = parse_integer(flag, text); }

void parse_value(const std::string& flag, const std::string& text, int& out) {
  const int64_t v = parse_integer(flag, text);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    bad_value(flag, text, "is out of range");
  out = int(v);
}

void parse_value(const std::string& flag, const std::string& text, uint64_t& out) {
  bool ok = !text.empty();
  for (char ch : text) ok = ok && ch >= '0' && ch <= '9';
  if (!ok) bad_value(flag, text, "is not a non-negative integer");
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) bad_value(flag, text, "is out of range (at most 18446744073709551615)");
  out = v;
}

void parse_value(const std::string& flag, const std::string& text, double& out) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) bad_value(flag, text, "is not a number");
  if (!std::isfinite(v) || errno == ERANGE) bad_value(flag, text, "is not a finite number");
  out = v;
}

void parse_value(const std::string& flag, const std::string& text, std::string& out) { out = text; }

// Comma-separated integers, e.g. "1,64,1024".
void parse_value(const std::string& flag, const std::string& text, std::vector<int>& out) {
  std::vector<int> values;
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int v = 0;
    try {
      parse_value(flag, item, v);
    } catch (const Error&) {
      bad_value(flag, text, "is not a comma-separated list of integers (e.g. 1,64,1024)");
    }
    values.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  out = values;
}

// "HxW", e.g. "32x32": two integers from 1 to 65535.
void parse_value(const std::string& flag, const std::string& text, ImageSize& out) {
  const auto dimension = [&](const std::string& part) {
    const bool digits = !part.empty() && part.size() <= 5 &&
                        std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    const int v = digits ? std::stoi(part) : 0;
    if (v < 1 || v > 65535) bad_value(flag, text, "is not HxW with H and W from 1 to 65535 (e.g. 32x32)");
    return v;
  };
  const size_t x = text.find('x');
  if (x == std::string::npos) bad_value(flag, text, "is not HxW with H and W from 1 to 65535 (e.g. 32x32)");
  out = ImageSize{dimension(text.substr(0, x)), dimension(text.substr(x + 1))};
}

// "LO,HI", two numbers.
void parse_value(const std::string& flag, const std::string& text, ScaleRange& out) {
  const size_t comma = text.find(',');
  if (comma == std::string::npos || text.find(',', comma + 1) != std::string::npos)
    bad_value(flag, text, "is not two numbers LO,HI (e.g. 0.9,1.1)");
  ScaleRange r;
  parse_value(flag, text.substr(0, comma), r.lo);
  parse_value(flag, text.substr(comma + 1), r.hi);
  out = r;
}

// A constraint that is off until given.
template <class T>
void parse_value(const std::string& flag, const std::string& text, std::optional<T>& out) {
  T v{};
  parse_value(flag, text, v);
  out = v;
}

template <class E>
std::enable_if_t<std::is_enum<E>::value> parse_value(const std::string& flag, const std::string& text, E& out) {
  for (const Named<E>& n : Choices<E>::table)
    if (text == n.name) {
      out = n.value;
      return;
    }
  bad_value(flag, text, "is not one of " + names_list(Choices<E>::table, ", "));
}

// ---------------------------------------------------------------- default texts for --help

std::string value_text(int v) { return std::to_string(v); }
std::string value_text(int64_t v) { return std::to_string(v); }
std::string value_text(uint64_t v) { return std::to_string(v); }
std::string value_text(const std::string& v) { return v; }
std::string value_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
std::string value_text(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}
std::string value_text(const ImageSize& v) { return v.h ? std::to_string(v.h) + "x" + std::to_string(v.w) : "keep"; }
std::string value_text(const ScaleRange& v) { return value_text(v.lo) + "," + value_text(v.hi); }
template <class T>
std::string value_text(const std::optional<T>& v) {
  return v ? value_text(*v) : "none";
}
template <class E>
std::enable_if_t<std::is_enum<E>::value, std::string> value_text(E v) {
  return name_of(Choices<E>::table, v);
}

// ---------------------------------------------------------------- registration

// Adds `flag` taking one value into `target`; --help shows `target`'s current
// value as the default. A value that is itself a flag ("--lr --quiet") or empty
// is a missing value, not text to convert.
template <class T>
CLI::Option* add_value(CLI::App& app, const std::string& flag, T& target, const std::string& value_name,
                       const std::string& help) {
  const auto convert = [flag, &target](const std::string& text) {
    if (text.empty()) fail(flag + ": needs a non-empty value");
    if (text.size() > 1 && text[0] == '-' && text[1] == '-')
      fail(flag + ": needs a value, got the flag '" + text + "'");
    parse_value(flag, text, target);
  };
  return app.add_option_function<std::string>(flag, convert, help)
      ->type_name(value_name)
      ->default_str(value_text(target));
}

// Adds `flag` taking a list into `target` (kdtrain sweep): the flag may be
// repeated, and each value may hold several items separated by ';' (arch
// strings contain commas). --help shows `default_value`.
template <class T>
CLI::Option* add_list(CLI::App& app, const std::string& flag, std::vector<T>& target, const std::string& value_name,
                      const std::string& default_value, const std::string& help) {
  const auto convert = [flag, &target](const std::vector<std::string>& texts) {
    target.clear();
    for (const std::string& text : texts) {
      if (text.size() > 1 && text[0] == '-' && text[1] == '-')
        fail(flag + ": needs a value, got the flag '" + text + "'");
      size_t start = 0;
      for (;;) {
        const size_t semicolon = text.find(';', start);
        const std::string item =
            text.substr(start, semicolon == std::string::npos ? std::string::npos : semicolon - start);
        if (item.find_first_not_of(" \t") == std::string::npos)
          fail(flag + ": empty value" +
               (texts.size() > 1 || semicolon != std::string::npos ? " in the list '" + text + "'" : ""));
        T v{};
        parse_value(flag, item, v);
        if (std::find(target.begin(), target.end(), v) != target.end()) fail(flag + ": '" + item + "' is listed twice");
        target.push_back(v);
        if (semicolon == std::string::npos) break;
        start = semicolon + 1;
      }
    }
  };
  return app.add_option_function<std::vector<std::string>>(flag, convert, help)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->expected(1)
      ->allow_extra_args(false)
      ->type_name(value_name)
      ->default_str(default_value);
}

// The flags every command accepts. Subcommands fall through to the app, so
// these are defined once and may be written before or after the command.
void add_global_flags(CLI::App& app, Options& o) {
  const std::string devices = names_list(kDevices, "|");
  add_value(app, "--data", o.data_dir, "DIR",
            "data set directory, its format detected: the four MNIST-format IDX files (plain or .gz), or "
            "train_images.npy, train_labels.npy, test_images.npy, test_labels.npy, or image folders "
            "train/<class>/*.png|jpg|bmp and test/<class>/* (see docs/data.md)");
  app.add_flag("--channels-last", o.channels_last,
               ".npy images are (N, H, W, C) as NumPy and PIL write them, not (N, C, H, W)");
  add_value(app, "--normalize", o.normalize, "auto|data|MEAN[,MEAN...]/STD[,STD...]",
            "input normalisation x = (pixel / 255 - mean) / std per channel: data = the training split's mean and "
            "std; auto = MNIST's 0.1307/0.3081 for 1x28x28 images (the seed recipe), data otherwise; a saved model "
            "(--model, --teacher) brings its own");
  add_value(app, "--image-size", o.image_size, "HxW",
            "resize every image of an image folder to H x W (needed when its images differ in size)");
  add_value(app, "--device", o.device, devices,
            "where to run: auto picks CUDA when a GPU is present and says so when it falls back to the CPU; "
            "cpu is the fast CPU engine (oneDNN, fp32, --threads); reference is the slow double-accumulating "
            "CPU reference the GPU tests compare with");
  add_value(app, "--threads", o.threads, "N", "threads of the fast CPU engine (>= 0; 0 = every hardware thread)");
  add_value(app, "--out", o.out_dir, "DIR",
            "output directory for metrics.csv, summary.json and the models (default: runs/<timestamp>/, "
            "with runs/latest pointing at it)");
  add_value(app, "--seed", o.seed, "N", "seed for initialisation, shuffling and dropout");
  add_value(app, "--batch-size", o.batch_size, "N", "training batch size (>= 1)");
  add_value(app, "--epochs-teacher", o.epochs_teacher, "N", "teacher training epochs (>= 0)");
  add_value(app, "--epochs-student", o.epochs_student, "N", "student (and baseline) training epochs (>= 0)");
  std::string recipe_flags;
  for (const char* flag : kRecipeFlags) recipe_flags += std::string(recipe_flags.empty() ? "" : ", ") + flag;
  add_value(app, "--recipe", o.recipe, names_list(kRecipes, "|"),
            "training recipe: seed is SPEC section 2 (the tutorial's, student 20 epochs); patient is teacher 20 and "
            "student 40 epochs, --augment, --soft-targets online, cosine schedule with 1 warm-up epoch, weight "
            "decay 0.01. It sets " +
                recipe_flags + "; each of those flags given overrides it");
  add_value(app, "--lr", o.lr, "X", "learning rate (> 0)");
  add_value(app, "--optimizer", o.optimizer, names_list(kOptimizers, "|"), "optimiser for every model");
  add_value(app, "--momentum", o.momentum, "X", "SGD momentum in [0, 1); ignored by adam");
  add_value(app, "--lr-schedule", o.lr_schedule, names_list(kLrSchedules, "|"),
            "learning rate per update of each model over its own epochs: constant, or cosine decay to 0 at the "
            "last update (after any warm-up); a pure function of the update count, so resume is exact");
  add_value(app, "--warmup-epochs", o.warmup_epochs, "X",
            "linear warm-up from lr/W to lr over the first X epochs of each model (>= 0, fractions allowed, at "
            "most each model's epochs)");
  add_value(app, "--weight-decay", o.weight_decay, "W",
            "weight decay (>= 0): decoupled, as torch.optim.AdamW, with adam; L2 added to the gradient with sgd");
  app.add_flag("--augment", o.augment,
               "train every model (teacher, student, baseline) on a seeded random affine view of each sample: "
               "shift, rotation and scale drawn from (seed, epoch, sample), bilinear, background outside; the "
               "same views on every engine and thread count");
  add_value(app, "--shift", o.shift, "PX", "--augment: largest shift, pixels, each axis (0 to 1024)");
  add_value(app, "--rotate", o.rotate, "DEG", "--augment: largest rotation either way, degrees (0 to 180)");
  add_value(app, "--scale", o.scale, "LO,HI", "--augment: scale range, 1/16 <= LO <= HI <= 16");
  add_value(app, "--soft-targets", o.soft_targets, names_list(kSoftTargets, "|"),
            "the student's targets: the teacher's logits for every training image computed once (cached), or the "
            "teacher run in inference mode on every training batch exactly as the student sees it (online, "
            "needed with --augment and --mixup; costs a teacher forward per step)");
  add_value(app, "--mixup", o.mixup, "A",
            "mixup of the students' (distilled and baseline) training batches, after any augmentation: each batch "
            "is mixed with a cyclic shift of itself by one lambda ~ Beta(A, A), the hard-label loss mixed alike, "
            "drawn from (seed, epoch, batch); 0 = off (0 to 1000). The teacher trains without it. Distillation "
            "needs --soft-targets online (the teacher's logits on the mixed batch)");
  add_value(app, "--hint", o.hint, names_list(kHintKinds, "|"),
            "the distilled student also matches the teacher's penultimate features (the input of its last dense "
            "layer) with its last hidden layer's, through a learned linear map (kept in checkpoints, not in the "
            "exported student): cosine (1 - cos per sample) or mse; needs --soft-targets online");
  add_value(app, "--hint-weight", o.hint_weight, "W",
            "--hint: the distance's weight beside the distillation loss "
            "(>= 0)");
  const std::string sweep_list = "; sweep: a list, the flag repeated or values separated by ';'";
  add_list(app, "--temperature", o.temperatures, "T", value_text(o.temperature),
           "distillation temperature (> 0)" + sweep_list + " (default 2;4;8)");
  add_list(
      app, "--alpha", o.alphas, "X", value_text(o.alpha),
      "weight of the soft-target (KL) term in [0, 1]; 1 - alpha weighs the labels" + sweep_list + " (default 0.9)");
  add_value(app, "--teacher-arch", o.teacher_arch, "ARCH", "teacher layers: comma-separated " + layer_usage_list());
  add_list(app, "--student-arch", o.student_archs, "ARCH", o.student_arch,
           "student layers, same grammar as --teacher-arch" + sweep_list +
               " (quote it; default: the grid in kdtrain sweep --help)");
  add_value(app, "--val-size", o.val_size, "N", "the last N training images form the validation split (>= 0)");
  add_value(app, "--train-limit", o.train_limit, "N", "train on the first N training images only; 0 = all");
  add_value(app, "--test-limit", o.test_limit, "N", "evaluate on the first N test images only; 0 = all");
  app.add_flag("--no-baseline", o.no_baseline, "skip the student trained from scratch on hard labels");
  app.add_flag("--deterministic", o.deterministic,
               "CUDA: choose kernels without timing them, so reruns and resumes pick the same ones: cuDNN "
               "convolution algorithms from cuDNN's heuristic ranking, deterministic ones only, and, with "
               "--dense-impl auto, cuBLAS(Lt) for every dense layer instead of the faster of it and the custom "
               "kernel; the CPU engines ignore it");
  app.add_flag("--quiet", o.quiet, "no progress lines or report table on stdout");
  app.add_flag("--data-parallel", o.data_parallel,
               "run, train-teacher under mpirun/srun on the CPU engines: every batch shared by the ranks, gradients "
               "summed in rank order, weights identical on every rank; rank 0 writes (docs/mpi.md)");
  app.add_flag("--no-ort", o.no_ort,
               "skip the ONNX Runtime latency columns (measured when node and scripts/onnxruntime.sh's package exist)");
  add_value(app, "--dense-impl", o.dense_impl, names_list(kDenseImpls, "|"),
            "dense-layer GEMM: the custom kernel, cuBLAS, or auto (the faster per shape)");
  add_value(app, "--select", o.select, names_list(kSelectRules, "|"),
            "which epoch of every model is saved, tested and timed: best validation accuracy (ties: lower "
            "validation loss, then earlier; last when --val-size is 0) or the last");
  add_value(app, "--resume", o.resume_dir, "DIR", "continue the interrupted run in DIR from its checkpoint");
  add_value(app, "--eval-batch-size", o.eval_batch_size, "N", "batch size for evaluation passes (>= 1)");
  add_value(app, "--latency-batches", o.latency_batches, "LIST", "comma-separated batch sizes to time inference at");
  app.set_version_flag("--version", kVersionText, "print the version and exit");
}

// Range rules that a well-formed number can still break; the message names the flag.
void check_ranges(const Options& o) {
  const auto require = [](bool ok, const std::string& flag, const std::string& rule, const std::string& got) {
    if (!ok) fail(flag + ": must be " + rule + ", got " + got);
  };
  require(o.batch_size >= 1, "--batch-size", ">= 1", value_text(o.batch_size));
  require(o.epochs_teacher >= 0, "--epochs-teacher", ">= 0", value_text(o.epochs_teacher));
  require(o.epochs_student >= 0, "--epochs-student", ">= 0", value_text(o.epochs_student));
  require(o.lr > 0, "--lr", "> 0", value_text(o.lr));
  require(o.momentum >= 0 && o.momentum < 1, "--momentum", "in [0, 1)", value_text(o.momentum));
  require(o.warmup_epochs >= 0, "--warmup-epochs", ">= 0", value_text(o.warmup_epochs));
  require(o.weight_decay >= 0 && o.weight_decay < 1, "--weight-decay", "in [0, 1)", value_text(o.weight_decay));
  require(o.shift >= 0 && o.shift <= 1024, "--shift", "in [0, 1024] pixels", value_text(o.shift));
  require(o.rotate >= 0 && o.rotate <= 180, "--rotate", "in [0, 180] degrees", value_text(o.rotate));
  require(o.scale.lo >= 1.0 / 16 && o.scale.lo <= o.scale.hi && o.scale.hi <= 16, "--scale",
          "LO,HI with 1/16 <= LO <= HI <= 16", value_text(o.scale));
  // Cached soft targets are the teacher's logits for the unaugmented images.
  const bool distills = o.command == Command::Run || o.command == Command::Distill || o.command == Command::Sweep;
  if (o.augment && distills && o.soft_targets == SoftTargets::Cached)
    fail(
        "--augment with --soft-targets cached: the student would learn each augmented view against the "
        "teacher's logits for the unaugmented image; add --soft-targets online");
  require(o.mixup >= 0 && o.mixup <= kMaxMixup, "--mixup", "in [0, 1000] (0 = off)", value_text(o.mixup));
  if (o.mixup > 0 && distills && o.soft_targets == SoftTargets::Cached)
    fail(
        "--mixup with --soft-targets cached: the student would learn each mixed image against the teacher's "
        "logits for one unmixed image; add --soft-targets online");
  // Each model warms up over its own epochs; a warm-up longer than a trained phase is a mistake.
  const bool trains_teacher = o.teacher_path.empty() && o.command != Command::Eval && o.command != Command::Latency &&
                              o.command != Command::Export && o.command != Command::Distill;
  const bool trains_student = o.command == Command::Run || o.command == Command::Distill || o.command == Command::Sweep;
  if (trains_teacher)
    require(o.warmup_epochs <= o.epochs_teacher, "--warmup-epochs",
            "at most --epochs-teacher " + value_text(o.epochs_teacher) + " (lower it or raise --epochs-teacher)",
            value_text(o.warmup_epochs));
  if (trains_student)
    require(o.warmup_epochs <= o.epochs_student, "--warmup-epochs",
            "at most --epochs-student " + value_text(o.epochs_student) + " (lower it or raise --epochs-student)",
            value_text(o.warmup_epochs));
  require(o.temperature > 0, "--temperature", "> 0", value_text(o.temperature));
  require(o.alpha >= 0 && o.alpha <= 1, "--alpha", "in [0, 1]", value_text(o.alpha));
  require(o.hint_weight >= 0 && std::isfinite(o.hint_weight), "--hint-weight", "a finite number >= 0",
          value_text(o.hint_weight));
  // The teacher's features are those of the batch the student trains on: cached targets hold logits only.
  if (o.hint != HintKind::Off && distills && o.soft_targets == SoftTargets::Cached)
    fail(
        "--hint with --soft-targets cached: the teacher's features come from its run on each training batch; "
        "add --soft-targets online");
  if (o.hint != HintKind::Off && o.command == Command::Sweep)
    fail("--hint: kdtrain sweep does not train hints yet; use kdtrain run or distill, or --hint off");
  for (double t : o.temperatures) require(t > 0, "--temperature", "> 0", value_text(t));
  for (double a : o.alphas) require(a >= 0 && a <= 1, "--alpha", "in [0, 1]", value_text(a));
  if (o.normalize != "auto" && o.normalize != "data") parse_normalization(o.normalize, "--normalize");
  require(o.seeds >= 1, "--seeds", ">= 1", value_text(o.seeds));
  if (o.max_latency_us) require(*o.max_latency_us > 0, "--max-latency-us", "> 0", value_text(*o.max_latency_us));
  if (o.max_params) require(*o.max_params >= 1, "--max-params", ">= 1", value_text(*o.max_params));
  if (o.min_accuracy)
    require(*o.min_accuracy >= 0 && *o.min_accuracy <= 100, "--min-accuracy", "a percentage in [0, 100]",
            value_text(*o.min_accuracy));
  require(o.val_size >= 0, "--val-size", ">= 0", value_text(o.val_size));
  require(o.train_limit >= 0, "--train-limit", ">= 0 (0 = all)", value_text(o.train_limit));
  require(o.test_limit >= 0, "--test-limit", ">= 0 (0 = all)", value_text(o.test_limit));
  require(o.eval_batch_size >= 1, "--eval-batch-size", ">= 1", value_text(o.eval_batch_size));
  require(o.threads >= 0, "--threads", ">= 0 (0 = every hardware thread)", value_text(o.threads));
  for (int b : o.latency_batches)
    require(b >= 1, "--latency-batches", "a list of batch sizes >= 1", value_text(o.latency_batches));
}

// `kdtrain sweep`'s own flags and its help footer (kd/sweep.h).
void add_sweep_command(CLI::App& sweep, Options& o) {
  add_value(sweep, "--teacher", o.teacher_path, "FILE",
            "distill from this saved teacher instead of training one with the teacher flags (a PyTorch "
            "state_dict without kdtrain metadata is read as --teacher-arch)");
  add_value(sweep, "--seeds", o.seeds, "N", "runs per configuration, each from its own seed (>= 1); seed 0 is --seed");
  add_value(sweep, "--max-latency-us", o.max_latency_us, "US",
            "recommend only students at most this batch-1 latency on the run's device, microseconds (> 0)");
  add_value(sweep, "--max-params", o.max_params, "N", "recommend only students with at most N parameters (>= 1)");
  add_value(sweep, "--min-accuracy", o.min_accuracy, "PCT",
            "recommend only students with at least this mean test accuracy, percent (0 to 100)");
  add_value(sweep, "--export-best", o.export_best, "OUT.onnx",
            "also write the recommended student as ONNX, as 'kdtrain export' does; a relative path is from the "
            "current directory, not --out (e.g. runs/best.onnx; its directory must exist)");
  std::string grid;
  for (const std::string& arch : default_sweep_archs(10)) grid += "\n  " + arch;
  std::string temperatures, alphas;
  for (double t : kDefaultSweepTemperatures) temperatures += (temperatures.empty() ? "" : ";") + value_text(t);
  for (double a : kDefaultSweepAlphas) alphas += (alphas.empty() ? "" : ";") + value_text(a);
  sweep.footer(
      "Lists: --student-arch, --temperature and --alpha may be repeated, or given ';'-separated values (quote them: "
      "arch strings contain commas), e.g. --student-arch 'flatten,dense:64,relu,dense:10;flatten,dense:10' "
      "--temperature '2;4'.\nEvery architecture is distilled at every (T, alpha) and also trained from scratch "
      "(unless --no-baseline), each --seeds times, for --epochs-student epochs (default 20, as in kdtrain run); the "
      "teacher trains with the teacher flags (or comes from --teacher), and its soft targets are computed once."
      "\nDefault grid (the last layer is dense:<classes of the data>):" +
      grid + "\n  --temperature " + temperatures + "   --alpha " + alphas +
      "\nWrites sweep.csv, sweep.json, pareto.png, teacher.safetensors, models/*.safetensors and "
      "recommended.safetensors (the most accurate student meeting --max-latency-us, --max-params and "
      "--min-accuracy) to --out. --resume DIR continues an interrupted sweep: finished runs are skipped.\n"
      "Every flag of 'kdtrain --help' is accepted here too.");
}

// --student-arch, --temperature and --alpha: sweep keeps their lists; every
// other command takes at most one value, copied into the scalar option.
void settle_lists(Options& o) {
  const bool sweep = o.command == Command::Sweep;
  auto one = [&](const char* flag, const auto& list, auto& scalar) {
    if (list.empty()) return;
    if (list.size() > 1 && !sweep)
      fail(std::string(flag) + ": takes one value (got " + std::to_string(list.size()) +
           "); lists are for 'kdtrain sweep'");
    if (!sweep) scalar = list.front();
  };
  one("--student-arch", o.student_archs, o.student_arch);
  one("--temperature", o.temperatures, o.temperature);
  one("--alpha", o.alphas, o.alpha);
  if (!sweep) o.student_archs.clear(), o.temperatures.clear(), o.alphas.clear();
}

// The long names of every flag, for "did you mean" hints.
std::vector<std::string> known_flags(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : app.get_options())
    for (const std::string& n : opt->get_lnames()) names.push_back("--" + n);
  return names;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

// The first argument nobody claimed: an unknown flag (with the nearest known
// one, or the command it belongs to) or a stray positional argument.
[[noreturn]] void reject_extra(const CLI::App& app, const std::string& arg) {
  const std::string commands = names_list(kCommands, ", ");
  if (arg.empty() || arg[0] != '-')
    fail("unexpected argument '" + arg + "'; commands are " + commands + " (see kdtrain --help)");
  const std::string name = arg.substr(0, arg.find('='));
  std::string owners;  // the commands that define `name`, e.g. "'eval' or 'latency'"
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    for (const std::string& flag : known_flags(*sub))
      if (flag == name) owners += (owners.empty() ? "'" : " or '") + sub->get_name() + "'";
  if (!owners.empty()) fail(name + ": only valid with " + owners);
  std::string nearest;
  size_t best = 3;  // hint only for near misses: up to two edits
  for (const std::string& flag : known_flags(app)) {
    const size_t d = edit_distance(name, flag);
    if (d < best) best = d, nearest = flag;
  }
  fail("unknown flag '" + name + "'" + (nearest.empty() ? "" : "; did you mean " + nearest + "?") +
       " (see kdtrain --help)");
}

// `args` (argv without the program name) with the command moved to the front.
// CLI11 matches a command's own flags (sweep's --seeds, distill's --teacher)
// only after the command, and the app's flags fall through from it, so this
// lets every flag come before or after the command, as --help promises. The
// command is the first argument that names one and is not a flag's value.
std::vector<std::string> command_first(const CLI::App& app, std::vector<std::string> args) {
  const auto takes_value = [&](const std::string& name) {
    std::vector<const CLI::App*> apps = {&app};
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) apps.push_back(sub);
    for (const CLI::App* a : apps)
      if (const CLI::Option* opt = a->get_option_no_throw(name)) return opt->get_items_expected_min() > 0;
    return false;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() > 1 && arg[0] == '-') {
      if (arg.find('=') == std::string::npos && takes_value(arg)) ++i;  // skip the flag's value
      continue;
    }
    const auto names_it = [&](const Named<Command>& c) { return arg == c.name; };
    if (std::any_of(std::begin(kCommands), std::end(kCommands), names_it))
      std::rotate(args.begin(), args.begin() + long(i), args.begin() + long(i) + 1);
    break;
  }
  return args;
}

// CLI11 messages may span lines; ours are one line.
std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n') ch = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// kdtrain's CLI11 app, every flag and command bound to a field of o.
void define_app(CLI::App& app, Options& o) {
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated flag: last wins
  app.allow_extras();  // unclaimed arguments are reported by reject_extra with a better message
  app.require_subcommand(0, 1);
  app.footer("With no command, kdtrain runs 'run'. Flags may come before or after the command.");
  add_global_flags(app, o);

  const std::string global_footer = "Every flag of 'kdtrain --help' is accepted here too.";
  const auto add_command = [&](Command c, const std::string& help) {
    CLI::App* sub = app.add_subcommand(command_name(c), help)->fallthrough();
    sub->footer(global_footer);
    return sub;
  };
  add_command(Command::Run, "train the teacher, distill the student, train the baseline, report (the default)");
  add_command(Command::TrainTeacher, "train and save the teacher only");
  add_value(*add_command(Command::Distill, "distill a saved teacher into a student"), "--teacher", o.teacher_path,
            "FILE",
            "teacher .safetensors written by train-teacher or run, or a PyTorch state_dict saved with "
            "safetensors.torch.save_file, read as --teacher-arch (required)");
  add_value(*add_command(Command::Eval, "test accuracy of a saved model"), "--model", o.model_path, "FILE",
            "model .safetensors to evaluate (required)");
  add_value(*add_command(Command::Latency, "inference latency of a saved model at --latency-batches"), "--model",
            o.model_path, "FILE", "model .safetensors to time (required)");
  CLI::App* export_app = add_command(Command::Export, "write a saved model as ONNX (opset 13) for deployment");
  add_value(*export_app, "--model", o.model_path, "FILE", "model .safetensors to export (required)");
  add_value(*export_app, "--onnx", o.onnx_path, "OUT",
            "ONNX file to write; its input 'pixels' is float32 (N,C,H,W) pixel values 0..255, normalisation "
            "folded in (required)");
  add_sweep_command(*add_command(Command::Sweep,
                                 "distill a grid of students from one teacher and choose one by "
                                 "accuracy, latency and size"),
                    o);
}

CLI::App kdtrain_app() {
  return CLI::App(
      "kdtrain: train a CNN teacher on MNIST-format images, distill it into a small MLP student, "
      "and report accuracy, latency and size.",
      "kdtrain");
}

}  // namespace

Command command_of(int argc, const char* const* argv) {
  Options o;
  CLI::App app = kdtrain_app();
  define_app(app, o);
  const std::vector<std::string> args = command_first(app, std::vector<std::string>(argv + 1, argv + argc));
  for (const Named<Command>& c : kCommands)
    if (!args.empty() && args.front() == c.name) return c.value;
  return Command::Run;
}

bool parse_command_line(int argc, const char* const* argv, Options& out) {
  Options o;
  CLI::App app = kdtrain_app();
  define_app(app, o);
  std::vector<std::string> args = command_first(app, std::vector<std::string>(argv + 1, argv + argc));
  std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
  try {
    app.parse(args);
  } catch (const CLI::Success& e) {  // --help, --version
    app.exit(e, std::cout, std::cerr);
    return false;
  } catch (const CLI::ArgumentMismatch& e) {
    // CLI11 words a missing value as "<flag>: 1 required <TYPE> missing".
    const std::string what = e.what();
    if (what.find(" missing") == std::string::npos) fail(one_line(what) + " (see kdtrain --help)");
    fail(what.substr(0, what.find(':')) + ": needs a value (see kdtrain --help)");
  } catch (const CLI::ParseError& e) {
    fail(one_line(e.what()) + " (see kdtrain --help)");
  }
  const std::vector<std::string> extras = app.remaining(true);
  if (!extras.empty()) reject_extra(app, extras.front());
  for (const Named<Command>& c : kCommands)
    if (app.got_subcommand(c.name)) o.command = c.value;

  if (o.command == Command::Distill && o.teacher_path.empty())
    fail("distill: --teacher FILE is required (a .safetensors written by 'kdtrain train-teacher')");
  if ((o.command == Command::Eval || o.command == Command::Latency || o.command == Command::Export) &&
      o.model_path.empty())
    fail(std::string(command_name(o.command)) + ": --model FILE is required (a .safetensors written by kdtrain)");
  if (o.command == Command::Export && o.onnx_path.empty())
    fail("export: --onnx OUT is required (the .onnx file to write)");
  if (o.command == Command::TrainTeacher)
    for (const char* flag : kStudentTrainingFlags)
      if (app.count(flag) > 0)
        fail(std::string(flag) +
             ": only changes how students train, and train-teacher trains none; drop it, or train a student "
             "with 'kdtrain run' or 'kdtrain distill --teacher F'");
  settle_lists(o);
  apply_recipe(o, [&](const char* flag) { return app.count(flag) > 0; });
  check_ranges(o);
  out = o;
  return true;
}

}  // namespace kd
