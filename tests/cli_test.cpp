// The command line: parse_command_line for every flag, subcommand and
// rejection, and the built kdtrain binary's exit codes.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <optional>
#include <vector>

#include "kd/error.h"
#include "kd/cli.h"

namespace kd {
namespace {

// argv for `args` (after argv[0]), pointing into them.
std::vector<const char*> argv_of(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"kdtrain"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return argv;
}

// Parses `args` (after argv[0]) into `out`; returns parse_command_line's result.
bool parse_into(const std::vector<std::string>& args, Options& out) {
  const std::vector<const char*> argv = argv_of(args);
  return parse_command_line(int(argv.size()), argv.data(), out);
}

Options parse(const std::vector<std::string>& args) {
  Options o;
  EXPECT_TRUE(parse_into(args, o));
  return o;
}

// command_of's answer for `args` (after argv[0]).
Command command_of_args(const std::vector<std::string>& args) {
  const std::vector<const char*> argv = argv_of(args);
  return command_of(int(argv.size()), argv.data());
}

// The kd::Error message for `args`, or a test failure when they are accepted.
std::string rejection(const std::vector<std::string>& args) {
  Options o;
  try {
    parse_into(args, o);
  } catch (const Error& e) {
    return e.what();
  }
  std::string joined;
  for (const std::string& a : args) joined += a + " ";
  ADD_FAILURE() << "accepted: " << joined;
  return "";
}

// Every flag the tool documents (SPEC section 3 "CLI" plus the options struct).
const std::vector<std::string> kAllFlags = {"--data",
                                            "--device",
                                            "--out",
                                            "--seed",
                                            "--batch-size",
                                            "--epochs-teacher",
                                            "--epochs-student",
                                            "--lr",
                                            "--optimizer",
                                            "--momentum",
                                            "--temperature",
                                            "--alpha",
                                            "--teacher-arch",
                                            "--student-arch",
                                            "--val-size",
                                            "--train-limit",
                                            "--test-limit",
                                            "--no-baseline",
                                            "--deterministic",
                                            "--quiet",
                                            "--dense-impl",
                                            "--select",
                                            "--resume",
                                            "--eval-batch-size",
                                            "--latency-batches",
                                            "--version",
                                            "--help",
                                            "--no-ort",
                                            "--lr-schedule",
                                            "--warmup-epochs",
                                            "--weight-decay",
                                            "--augment",
                                            "--shift",
                                            "--rotate",
                                            "--scale",
                                            "--soft-targets",
                                            "--recipe",
                                            "--hint",
                                            "--hint-weight",
                                            "--mixup"};

TEST(Cli, NoArgumentsGiveTheDefaults) {
  const Options o = parse({});
  const Options d;
  EXPECT_EQ(o.command, Command::Run);
  EXPECT_EQ(o.data_dir, "data/mnist");
  EXPECT_EQ(o.device, DeviceChoice::Auto);
  EXPECT_EQ(o.out_dir, "");
  EXPECT_EQ(o.seed, 0u);
  EXPECT_EQ(o.batch_size, 64);
  EXPECT_EQ(o.epochs_teacher, 5);
  EXPECT_EQ(o.epochs_student, 20);
  EXPECT_EQ(o.lr, 1e-3);
  EXPECT_EQ(o.optimizer, OptimizerKind::Adam);
  EXPECT_EQ(o.momentum, d.momentum);
  EXPECT_EQ(o.temperature, 4.0);
  EXPECT_EQ(o.alpha, 0.9);
  EXPECT_EQ(o.teacher_arch, kDefaultTeacherArch);
  EXPECT_EQ(o.student_arch, kDefaultStudentArch);
  EXPECT_EQ(o.val_size, 5000);
  EXPECT_EQ(o.train_limit, 0);
  EXPECT_EQ(o.test_limit, 0);
  EXPECT_FALSE(o.no_baseline);
  EXPECT_FALSE(o.deterministic);
  EXPECT_FALSE(o.quiet);
  EXPECT_EQ(o.dense_impl, DenseImplChoice::Auto);
  EXPECT_EQ(o.teacher_path, "");
  EXPECT_EQ(o.model_path, "");
  EXPECT_EQ(o.resume_dir, "");
  EXPECT_EQ(o.eval_batch_size, 1000);
  EXPECT_EQ(o.latency_batches, (std::vector<int>{1, 64, 1024, 10000}));
  EXPECT_EQ(o.select, SelectRule::Best);
  EXPECT_FALSE(o.channels_last);
  EXPECT_EQ(o.image_size, ImageSize{});
  EXPECT_EQ(o.normalize, "auto");
}

TEST(Cli, EveryFlagSetsItsField) {
  const Options o = parse({"--data",
                           "d/fashion",
                           "--device",
                           "cpu",
                           "--out",
                           "o/x",
                           "--seed",
                           "18446744073709551615",
                           "--batch-size",
                           "128",
                           "--epochs-teacher",
                           "0",
                           "--epochs-student",
                           "12",
                           "--lr",
                           "2.5e-4",
                           "--optimizer",
                           "sgd",
                           "--momentum",
                           "0",
                           "--temperature",
                           "0.5",
                           "--alpha",
                           "1",
                           "--teacher-arch",
                           "flatten,dense:10",
                           "--student-arch",
                           "flatten,dense:32,relu,dense:10",
                           "--val-size",
                           "0",
                           "--train-limit",
                           "1000",
                           "--test-limit",
                           "500",
                           "--no-baseline",
                           "--deterministic",
                           "--quiet",
                           "--dense-impl",
                           "cublas",
                           "--select",
                           "last",
                           "--resume",
                           "runs/a",
                           "--eval-batch-size",
                           "1",
                           "--latency-batches",
                           "1,7,64",
                           "--no-ort",
                           "--channels-last",
                           "--image-size",
                           "24x40",
                           "--normalize",
                           "0.5,0.4,0.3/0.2,0.2,0.25"});
  EXPECT_EQ(o.data_dir, "d/fashion");
  EXPECT_EQ(o.device, DeviceChoice::Cpu);
  EXPECT_EQ(o.out_dir, "o/x");
  EXPECT_EQ(o.seed, UINT64_MAX);
  EXPECT_EQ(o.batch_size, 128);
  EXPECT_EQ(o.epochs_teacher, 0);
  EXPECT_EQ(o.epochs_student, 12);
  EXPECT_EQ(o.lr, 2.5e-4);
  EXPECT_EQ(o.optimizer, OptimizerKind::Sgd);
  EXPECT_EQ(o.momentum, 0.0);
  EXPECT_EQ(o.temperature, 0.5);
  EXPECT_EQ(o.alpha, 1.0);
  EXPECT_EQ(o.teacher_arch, "flatten,dense:10");
  EXPECT_EQ(o.student_arch, "flatten,dense:32,relu,dense:10");
  EXPECT_EQ(o.val_size, 0);
  EXPECT_EQ(o.train_limit, 1000);
  EXPECT_EQ(o.test_limit, 500);
  EXPECT_TRUE(o.no_baseline);
  EXPECT_TRUE(o.deterministic);
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(o.dense_impl, DenseImplChoice::Cublas);
  EXPECT_EQ(o.select, SelectRule::Last);
  EXPECT_EQ(o.resume_dir, "runs/a");
  EXPECT_EQ(o.eval_batch_size, 1);
  EXPECT_EQ(o.latency_batches, (std::vector<int>{1, 7, 64}));
  EXPECT_TRUE(o.no_ort);
  EXPECT_TRUE(o.channels_last);
  EXPECT_EQ(o.image_size, (ImageSize{24, 40}));
  EXPECT_EQ(o.normalize, "0.5,0.4,0.3/0.2,0.2,0.25");
  EXPECT_EQ(o.command, Command::Run);
}

TEST(Cli, RecipeFlagsSetTheirFields) {
  const Options d = parse({});
  EXPECT_EQ(d.lr_schedule, LrScheduleKind::Constant);
  EXPECT_EQ(d.warmup_epochs, 0.0);
  EXPECT_EQ(d.weight_decay, 0.0);
  const Options o = parse({"--lr-schedule", "cosine", "--warmup-epochs", "1.5", "--weight-decay", "0.05"});
  EXPECT_EQ(o.lr_schedule, LrScheduleKind::Cosine);
  EXPECT_EQ(o.warmup_epochs, 1.5);
  EXPECT_EQ(o.weight_decay, 0.05);
  EXPECT_FALSE(d.augment);
  EXPECT_EQ(d.shift, 2.0);
  EXPECT_EQ(d.rotate, 12.0);
  EXPECT_EQ(d.scale.lo, 0.9);
  EXPECT_EQ(d.scale.hi, 1.1);
  const Options a = parse({"train-teacher", "--augment", "--shift", "3", "--rotate", "15", "--scale", "0.8,1.2"});
  EXPECT_TRUE(a.augment);
  EXPECT_EQ(a.shift, 3.0);
  EXPECT_EQ(a.rotate, 15.0);
  EXPECT_EQ(a.scale.lo, 0.8);
  EXPECT_EQ(a.scale.hi, 1.2);
  EXPECT_EQ(d.soft_targets, SoftTargets::Cached);
  EXPECT_EQ(parse({"--augment", "--soft-targets", "online"}).soft_targets, SoftTargets::Online);
  EXPECT_EQ(d.hint, HintKind::Off);
  EXPECT_EQ(d.hint_weight, 1.0);
  const Options h = parse({"--hint", "mse", "--hint-weight", "0.25", "--soft-targets", "online"});
  EXPECT_EQ(h.hint, HintKind::Mse);
  EXPECT_EQ(h.hint_weight, 0.25);
  EXPECT_EQ(parse({"--hint", "cosine", "--soft-targets", "online"}).hint, HintKind::Cosine);
  EXPECT_EQ(recipe_text(h, true).substr(recipe_text(h, true).rfind(';')), "; hint mse weight 0.25");
  EXPECT_EQ(d.mixup, 0.0);
  EXPECT_EQ(parse({"--mixup", "0.2", "--soft-targets", "online"}).mixup, 0.2);
}

// train-teacher trains no student: a flag that changes only how students
// train would do nothing there, so given explicitly it is refused, naming the
// flag and the fix. A recipe setting one (patient's --soft-targets online) is
// no flag given; the flags named for the student stay accepted.
TEST(Cli, TrainTeacherRefusesStudentTrainingFlags) {
  const std::vector<std::vector<std::string>> given = {{"--mixup", "0.4"},       {"--hint", "cosine"},
                                                       {"--hint-weight", "0.5"}, {"--soft-targets", "online"},
                                                       {"--temperature", "2"},   {"--alpha", "0.5"}};
  for (const std::vector<std::string>& flag : given) {
    SCOPED_TRACE(flag[0]);
    std::vector<std::string> args = {"train-teacher", "--augment"};
    args.insert(args.end(), flag.begin(), flag.end());
    EXPECT_EQ(rejection(args), flag[0] +
                                   ": only changes how students train, and train-teacher trains none; drop it, or "
                                   "train a student with 'kdtrain run' or 'kdtrain distill --teacher F'");
    // Before the command too, and accepted where students train.
    std::vector<std::string> before(flag);
    before.push_back("train-teacher");
    EXPECT_EQ(rejection(before).rfind(flag[0] + ": only changes how students train", 0), 0u);
    std::vector<std::string> run = {"--soft-targets", "online"};
    run.insert(run.end(), flag.begin(), flag.end());
    EXPECT_EQ(parse(run).command, Command::Run);
    run.insert(run.begin(), {"distill", "--teacher", "t"});
    EXPECT_EQ(parse(run).command, Command::Distill);
  }
  const Options patient = parse({"train-teacher", "--recipe", "patient"});
  EXPECT_EQ(patient.soft_targets, SoftTargets::Online) << "set by the recipe, not given";
  EXPECT_EQ(
      rejection({"train-teacher", "--recipe", "patient", "--soft-targets", "online"}).rfind("--soft-targets: ", 0), 0u);
  const Options named =
      parse({"train-teacher", "--student-arch", "flatten,dense:10", "--epochs-student", "3", "--no-baseline"});
  EXPECT_EQ(named.command, Command::TrainTeacher);
}

// --recipe patient sets its values where no flag did; a flag given overrides
// it, before or after --recipe; seed is the defaults.
TEST(Cli, RecipesSetTheirValuesAndFlagsOverrideThem) {
  const Options d = parse({}), seed = parse({"--recipe", "seed"});
  EXPECT_EQ(seed.recipe, Recipe::Seed);
  EXPECT_EQ(recipe_text(seed, true), recipe_text(d, true));
  EXPECT_EQ(recipe_text(d, true),
            "recipe seed: teacher 5 epochs, student and baseline 20 epochs; adam lr 0.001, constant schedule, 0 "
            "epochs of warm-up, weight decay 0; augmentation off; soft targets cached, mixup off; hint off");
  EXPECT_EQ(recipe_text(d, false),
            "recipe seed: teacher 5 epochs; adam lr 0.001, constant schedule, 0 epochs of warm-up, weight decay 0; "
            "augmentation off");
  const Options p = parse({"--recipe", "patient"});
  EXPECT_EQ(p.epochs_teacher, 20);
  EXPECT_EQ(p.epochs_student, 40);
  EXPECT_EQ(p.lr_schedule, LrScheduleKind::Cosine);
  EXPECT_EQ(p.warmup_epochs, 1.0);
  EXPECT_EQ(p.weight_decay, 0.01);
  EXPECT_TRUE(p.augment);
  EXPECT_EQ(p.soft_targets, SoftTargets::Online);
  const Options o = parse({"--epochs-student", "3", "--recipe", "patient", "--lr-schedule", "constant",
                           "--warmup-epochs", "0", "--weight-decay", "0"});
  EXPECT_EQ(o.epochs_student, 3);
  EXPECT_EQ(o.epochs_teacher, 20);
  EXPECT_EQ(o.lr_schedule, LrScheduleKind::Constant);
  EXPECT_EQ(o.warmup_epochs, 0.0);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_TRUE(o.augment);
  EXPECT_NE(recipe_text(parse({"--recipe", "patient", "--mixup", "0.2"}), true).find("soft targets online, mixup 0.2"),
            std::string::npos);
  // The recipe's augmentation needs its online targets: overriding only those is refused, naming the fix.
  EXPECT_NE(rejection({"--recipe", "patient", "--soft-targets", "cached"}).find("add --soft-targets online"),
            std::string::npos);
  EXPECT_NE(rejection({"--recipe", "slow"}).find("--recipe: 'slow' is not one of seed, patient"), std::string::npos);
}

TEST(Cli, ChoiceValues) {
  EXPECT_EQ(parse({"--device", "cuda"}).device, DeviceChoice::Cuda);
  EXPECT_EQ(parse({"--device", "auto"}).device, DeviceChoice::Auto);
  EXPECT_EQ(parse({"--device", "reference"}).device, DeviceChoice::Reference);
  EXPECT_EQ(parse({"--threads", "3"}).threads, 3);
  EXPECT_EQ(parse({}).threads, 0);
  EXPECT_EQ(parse({"--optimizer", "adam"}).optimizer, OptimizerKind::Adam);
  EXPECT_EQ(parse({"--dense-impl", "custom"}).dense_impl, DenseImplChoice::Custom);
  EXPECT_EQ(parse({"--dense-impl", "auto"}).dense_impl, DenseImplChoice::Auto);
  EXPECT_EQ(parse({"--select", "best"}).select, SelectRule::Best);
  EXPECT_NE(rejection({"--select", "first"}).find("--select: 'first' is not one of best, last"), std::string::npos);
}

TEST(Cli, ValueSyntaxes) {
  EXPECT_EQ(parse({"--batch-size=32"}).batch_size, 32);
  EXPECT_EQ(parse({"--batch-size", "32", "--batch-size", "16"}).batch_size, 16);  // the last one wins
  EXPECT_EQ(parse({"--batch-size", "010"}).batch_size, 10);                       // decimal, not octal
  EXPECT_EQ(parse({"--lr", "1e-2"}).lr, 1e-2);
  EXPECT_EQ(parse({"--latency-batches", "5"}).latency_batches, (std::vector<int>{5}));
  EXPECT_EQ(parse({"--seed", "42"}).seed, 42u);
}

TEST(Cli, Subcommands) {
  EXPECT_EQ(parse({"run"}).command, Command::Run);
  EXPECT_EQ(parse({"train-teacher"}).command, Command::TrainTeacher);
  const Options d = parse({"distill", "--teacher", "t.safetensors"});
  EXPECT_EQ(d.command, Command::Distill);
  EXPECT_EQ(d.teacher_path, "t.safetensors");
  const Options e = parse({"eval", "--model", "m.safetensors"});
  EXPECT_EQ(e.command, Command::Eval);
  EXPECT_EQ(e.model_path, "m.safetensors");
  const Options l = parse({"latency", "--model", "s.safetensors", "--latency-batches", "2,4"});
  EXPECT_EQ(l.command, Command::Latency);
  EXPECT_EQ(l.model_path, "s.safetensors");
  EXPECT_EQ(l.latency_batches, (std::vector<int>{2, 4}));
  const Options x = parse({"export", "--model", "s.safetensors", "--onnx", "s.onnx"});
  EXPECT_EQ(x.command, Command::Export);
  EXPECT_EQ(x.model_path, "s.safetensors");
  EXPECT_EQ(x.onnx_path, "s.onnx");
}

TEST(Cli, GlobalFlagsBeforeAndAfterTheCommand) {
  const Options after = parse({"distill", "--teacher", "t", "--lr", "0.01", "--no-baseline", "--seed", "3"});
  EXPECT_EQ(after.command, Command::Distill);
  EXPECT_EQ(after.lr, 0.01);
  EXPECT_TRUE(after.no_baseline);
  EXPECT_EQ(after.seed, 3u);
  const Options before = parse({"--lr", "0.02", "--quiet", "train-teacher", "--epochs-teacher", "2"});
  EXPECT_EQ(before.command, Command::TrainTeacher);
  EXPECT_EQ(before.lr, 0.02);
  EXPECT_TRUE(before.quiet);
  EXPECT_EQ(before.epochs_teacher, 2);
  // A command's own flags too, as the --help footer says.
  const Options sweep = parse(
      {"--seeds", "3", "--export-best", "runs/best.onnx", "--quiet", "sweep", "--max-params", "9000", "--seed", "5"});
  EXPECT_EQ(sweep.command, Command::Sweep);
  EXPECT_EQ(sweep.seeds, 3);
  EXPECT_EQ(sweep.export_best, "runs/best.onnx");
  EXPECT_TRUE(sweep.quiet);
  EXPECT_EQ(sweep.max_params, std::optional<int64_t>(9000));
  EXPECT_EQ(sweep.seed, 5u);
  const Options distill = parse({"--teacher=t.safetensors", "distill"});
  EXPECT_EQ(distill.command, Command::Distill);
  EXPECT_EQ(distill.teacher_path, "t.safetensors");
  // A flag's value that names a command is the value, not the command.
  const Options out = parse({"--out", "sweep", "--model", "m.safetensors", "eval"});
  EXPECT_EQ(out.command, Command::Eval);
  EXPECT_EQ(out.out_dir, "sweep");
  EXPECT_EQ(out.model_path, "m.safetensors");
}

// Each rejection is one line that starts with (or names) the flag at fault.
TEST(Cli, Rejections) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;  // the message's beginning
  };
  const Case cases[] = {
      {{"--normalize", "0.5"}, "--normalize: '0.5' is not (MEAN[,MEAN...]/STD[,STD...]"},
      {{"--normalize", "0.5/0"}, "--normalize: std 0.000000 in '0.5/0' must be > 0"},
      {{"--normalize", "0.5,0.4/0.2"}, "--normalize: '0.5,0.4/0.2' has 2 means and 1 stds"},
      {{"--image-size", "32"}, "--image-size: '32' is not HxW with H and W from 1 to 65535 (e.g. 32x32)"},
      {{"--image-size", "0x32"}, "--image-size: '0x32' is not HxW"},
      {{"--image-size", "32x-1"}, "--image-size: '32x-1' is not HxW"},
      {{"--image-size", "99999x2"}, "--image-size: '99999x2' is not HxW"},
      {{"--batch-size", "0"}, "--batch-size: must be >= 1, got 0"},
      {{"--batch-size", "-5"}, "--batch-size: must be >= 1, got -5"},
      {{"--batch-size", "abc"}, "--batch-size: 'abc' is not an integer"},
      {{"--batch-size", "12x"}, "--batch-size: '12x' is not an integer"},
      {{"--batch-size", "1.5"}, "--batch-size: '1.5' is not an integer"},
      {{"--batch-size", "+5"}, "--batch-size: '+5' is not an integer"},
      {{"--batch-size", "99999999999"}, "--batch-size: '99999999999' is out of range"},
      {{"--batch-size"}, "--batch-size: needs a value"},
      {{"--batch-size", "--quiet"}, "--batch-size: needs a value, got the flag '--quiet'"},
      {{"--epochs-teacher", "-1"}, "--epochs-teacher: must be >= 0, got -1"},
      {{"--epochs-student", "-2"}, "--epochs-student: must be >= 0, got -2"},
      {{"--lr", "0"}, "--lr: must be > 0, got 0"},
      {{"--lr", "-0.1"}, "--lr: must be > 0"},
      {{"--lr", "nan"}, "--lr: 'nan' is not a finite number"},
      {{"--lr", "inf"}, "--lr: 'inf' is not a finite number"},
      {{"--lr", "1e999"}, "--lr: '1e999' is not a finite number"},
      {{"--lr", "fast"}, "--lr: 'fast' is not a number"},
      {{"--temperature", "0"}, "--temperature: must be > 0, got 0"},
      {{"--temperature", "-1"}, "--temperature: must be > 0"},
      {{"--temperature", "infinity"}, "--temperature: 'infinity' is not a finite number"},
      {{"--alpha", "1.5"}, "--alpha: must be in [0, 1], got 1.5"},
      {{"--alpha", "-0.01"}, "--alpha: must be in [0, 1]"},
      {{"--momentum", "1"}, "--momentum: must be in [0, 1), got 1"},
      {{"--lr-schedule", "step"}, "--lr-schedule: 'step' is not one of constant, cosine"},
      {{"--warmup-epochs", "-1"}, "--warmup-epochs: must be >= 0, got -1"},
      {{"--warmup-epochs", "6"},
       "--warmup-epochs: must be at most --epochs-teacher 5 (lower it or raise --epochs-teacher), got 6"},
      {{"--warmup-epochs", "4", "--epochs-student", "3"}, "--warmup-epochs: must be at most --epochs-student 3"},
      {{"--weight-decay", "-0.1"}, "--weight-decay: must be in [0, 1), got -0.1"},
      {{"--shift", "-1"}, "--shift: must be in [0, 1024] pixels, got -1"},
      {{"--rotate", "181"}, "--rotate: must be in [0, 180] degrees, got 181"},
      {{"--scale", "1.1,0.9"}, "--scale: must be LO,HI with 1/16 <= LO <= HI <= 16, got 1.1,0.9"},
      {{"--scale", "0.9"}, "--scale: '0.9' is not two numbers LO,HI"},
      {{"--scale", "0.9,x"}, "--scale: 'x' is not a number"},
      {{"--soft-targets", "fresh"}, "--soft-targets: 'fresh' is not one of cached, online"},
      {{"--augment"},
       "--augment with --soft-targets cached: the student would learn each augmented view against the "
       "teacher's logits for the unaugmented image; add --soft-targets online"},
      {{"distill", "--teacher", "t", "--augment"}, "--augment with --soft-targets cached"},
      {{"--hint", "l1"}, "--hint: 'l1' is not one of off, cosine, mse"},
      {{"--hint", "cosine"},
       "--hint with --soft-targets cached: the teacher's features come from its run on each "
       "training batch; add --soft-targets online"},
      {{"--hint", "mse", "--soft-targets", "online", "--hint-weight", "-1"},
       "--hint-weight: must be a finite number >= 0, got -1"},
      {{"--hint-weight", "inf"}, "--hint-weight: 'inf' is not a finite number"},
      {{"sweep", "--hint", "cosine", "--soft-targets", "online"},
       "--hint: kdtrain sweep does not train hints yet; use kdtrain run or distill, or --hint off"},
      {{"--mixup", "0.2"},
       "--mixup with --soft-targets cached: the student would learn each mixed image against "
       "the teacher's logits for one unmixed image; add --soft-targets online"},
      {{"sweep", "--mixup", "0.2"}, "--mixup with --soft-targets cached"},
      {{"--mixup", "-0.1"}, "--mixup: must be in [0, 1000] (0 = off), got -0.1"},
      {{"--mixup", "1001", "--soft-targets", "online"}, "--mixup: must be in [0, 1000] (0 = off), got 1001"},
      {{"--mixup", "nan"}, "--mixup: 'nan' is not a finite number"},
      {{"--val-size", "-1"}, "--val-size: must be >= 0, got -1"},
      {{"--train-limit", "-1"}, "--train-limit: must be >= 0"},
      {{"--test-limit", "-1"}, "--test-limit: must be >= 0"},
      {{"--eval-batch-size", "0"}, "--eval-batch-size: must be >= 1, got 0"},
      {{"--latency-batches", "1,0,64"}, "--latency-batches: must be a list of batch sizes >= 1, got 1,0,64"},
      {{"--latency-batches", "1,,2"}, "--latency-batches: '1,,2' is not a comma-separated list of integers"},
      {{"--latency-batches", "1,x"}, "--latency-batches: '1,x' is not a comma-separated list"},
      {{"--seed", "-1"}, "--seed: '-1' is not a non-negative integer"},
      {{"--seed", "99999999999999999999"}, "--seed: '99999999999999999999' is out of range"},
      {{"--device", "gpu"}, "--device: 'gpu' is not one of auto, cuda, cpu, reference"},
      {{"--threads", "-1"}, "--threads: must be >= 0 (0 = every hardware thread), got -1"},
      {{"--optimizer", "rmsprop"}, "--optimizer: 'rmsprop' is not one of adam, sgd"},
      {{"--dense-impl", "cudnn"}, "--dense-impl: 'cudnn' is not one of auto, custom, cublas"},
      {{"--data", ""}, "--data: needs a non-empty value"},
      {{"distill"}, "distill: --teacher FILE is required"},
      {{"eval"}, "eval: --model FILE is required"},
      {{"latency"}, "latency: --model FILE is required"},
      {{"export", "--onnx", "m.onnx"}, "export: --model FILE is required"},
      {{"export", "--model", "m"}, "export: --onnx OUT is required"},
      {{"--onnx", "m.onnx"}, "--onnx: only valid with 'export'"},
      {{"distill", "--teacher"}, "--teacher: needs a value"},
      {{"eval", "--teacher", "t"}, "--teacher: only valid with 'distill'"},
      {{"--model", "m"}, "--model: only valid with 'eval' or 'latency'"},
      {{"--bogus"}, "unknown flag '--bogus' (see kdtrain --help)"},
      {{"--bach-size", "3"}, "unknown flag '--bach-size'; did you mean --batch-size?"},
      {{"--temprature=2"}, "unknown flag '--temprature'; did you mean --temperature?"},
      {{"trian-teacher"}, "unexpected argument 'trian-teacher'; commands are run, train-teacher, distill"},
      {{"distill", "--teacher", "t", "extra"}, "unexpected argument 'extra'"},
      {{"eval", "distill"}, "unexpected argument 'distill'"},
      // kdtrain sweep's lists and constraints
      {{"sweep", "--temperature", "2;0"}, "--temperature: must be > 0, got 0"},
      {{"sweep", "--temperature", "2", "--temperature", "-1"}, "--temperature: must be > 0, got -1"},
      {{"sweep", "--alpha", "0.5;1.5"}, "--alpha: must be in [0, 1], got 1.5"},
      {{"sweep", "--temperature", "2;;4"}, "--temperature: empty value in the list '2;;4'"},
      {{"sweep", "--temperature", "2;x"}, "--temperature: 'x' is not a number"},
      {{"sweep", "--temperature", "2;nan"}, "--temperature: 'nan' is not a finite number"},
      {{"sweep", "--temperature", "2", "--temperature", "2.0"}, "--temperature: '2.0' is listed twice"},
      {{"sweep", "--student-arch", ";"}, "--student-arch: empty value in the list ';'"},
      {{"sweep", "--student-arch", "--quiet"}, "--student-arch: needs a value"},
      {{"sweep", "--seeds", "0"}, "--seeds: must be >= 1, got 0"},
      {{"sweep", "--seeds", "two"}, "--seeds: 'two' is not an integer"},
      {{"sweep", "--max-latency-us", "0"}, "--max-latency-us: must be > 0, got 0"},
      {{"sweep", "--max-params", "0"}, "--max-params: must be >= 1, got 0"},
      {{"sweep", "--min-accuracy", "101"}, "--min-accuracy: must be a percentage in [0, 100], got 101"},
      {{"--seeds", "2"}, "--seeds: only valid with 'sweep'"},
      {{"--seeds", "2", "run"}, "--seeds: only valid with 'sweep'"},
      {{"--teacher", "t"}, "--teacher: only valid with 'distill' or 'sweep'"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const std::string& a : c.args) joined += "'" + a + "' ";
    SCOPED_TRACE("kdtrain " + joined);
    const std::string msg = rejection(c.args);
    EXPECT_EQ(msg.rfind(c.expected, 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// kdtrain sweep: --student-arch, --temperature and --alpha take lists, from
// repeated flags or ';'-separated values (arch strings contain commas).
TEST(Cli, SweepListsFromRepeatedFlagsAndSemicolons) {
  const Options o = parse({"sweep",
                           "--student-arch",
                           "flatten,dense:32,relu,dense:10;flatten,dense:10",
                           "--student-arch",
                           "flatten,dense:64,relu,dense:10",
                           "--temperature",
                           "2;4",
                           "--temperature",
                           "8",
                           "--alpha",
                           "0.5",
                           "--seeds",
                           "3",
                           "--max-latency-us",
                           "20",
                           "--max-params",
                           "100000",
                           "--min-accuracy",
                           "97.5",
                           "--teacher",
                           "t.safetensors"});
  EXPECT_EQ(o.command, Command::Sweep);
  EXPECT_EQ(o.student_archs, (std::vector<std::string>{"flatten,dense:32,relu,dense:10", "flatten,dense:10",
                                                       "flatten,dense:64,relu,dense:10"}));
  EXPECT_EQ(o.temperatures, (std::vector<double>{2, 4, 8}));
  EXPECT_EQ(o.alphas, (std::vector<double>{0.5}));
  EXPECT_EQ(o.seeds, 3);
  EXPECT_EQ(o.max_latency_us, 20.0);
  EXPECT_EQ(o.max_params, int64_t(100000));
  EXPECT_EQ(o.min_accuracy, 97.5);
  EXPECT_EQ(o.teacher_path, "t.safetensors");
  EXPECT_EQ(o.temperature, 4.0) << "the single-value option keeps its default";

  const Options d = parse({"sweep"});  // empty lists: the default grid
  EXPECT_TRUE(d.student_archs.empty() && d.temperatures.empty() && d.alphas.empty());
  EXPECT_EQ(d.seeds, 1);
  EXPECT_FALSE(d.max_latency_us || d.max_params || d.min_accuracy);
}

TEST(Cli, OtherCommandsTakeOneValueOfTheListFlags) {
  const Options o = parse({"--temperature", "2", "--alpha", "0.5", "--student-arch", "flatten,dense:10"});
  EXPECT_EQ(o.temperature, 2.0);
  EXPECT_EQ(o.alpha, 0.5);
  EXPECT_EQ(o.student_arch, "flatten,dense:10");
  EXPECT_TRUE(o.temperatures.empty() && o.alphas.empty() && o.student_archs.empty());
  EXPECT_EQ(rejection({"--temperature", "2;4"}),
            "--temperature: takes one value (got 2); lists are for 'kdtrain sweep'");
  EXPECT_EQ(rejection({"distill", "--teacher", "t", "--alpha", "0.1", "--alpha", "0.2"}),
            "--alpha: takes one value (got 2); lists are for 'kdtrain sweep'");
}

TEST(Cli, SweepHelpDocumentsListsAndTheDefaultGrid) {
  Options o;
  testing::internal::CaptureStdout();
  EXPECT_FALSE(parse_into({"sweep", "--help"}, o));
  const std::string help = testing::internal::GetCapturedStdout();
  for (const char* shown :
       {"--seeds", "--max-latency-us", "--max-params", "--min-accuracy", "--teacher", "';'-separated values",
        "flatten,dense:800,relu,dense:800,relu,dense:10", "--temperature 2;4;8", "--resume DIR"})
    EXPECT_NE(help.find(shown), std::string::npos) << shown << "\n" << help;
}

TEST(Cli, RejectionLeavesTheOptionsUntouched) {
  Options o;
  o.batch_size = 77;
  EXPECT_THROW(parse_into({"--batch-size", "32", "--lr", "x"}, o), Error);
  EXPECT_EQ(o.batch_size, 77);
}

TEST(Cli, ArchStringsAreNotCheckedHere) {
  // The data's shape decides whether an arch fits, so the pipeline checks it.
  EXPECT_EQ(parse({"--teacher-arch", "dense:7"}).teacher_arch, "dense:7");
}

TEST(Cli, HelpListsEveryFlagWithItsDefaultAndReturnsFalse) {
  Options o;
  testing::internal::CaptureStdout();
  const bool go_on = parse_into({"--help"}, o);
  const std::string help = testing::internal::GetCapturedStdout();
  EXPECT_FALSE(go_on);
  for (const std::string& flag : kAllFlags) EXPECT_NE(help.find(flag), std::string::npos) << flag << "\n" << help;
  for (const char* shown : {"=data/mnist", "=auto", "=64", "=0.001", "=adam", "=4 ", "=0.9 ", "=5000",
                            "=1,64,1024,10000", "=1000", kDefaultStudentArch, "runs/<timestamp>/"})
    EXPECT_NE(help.find(shown), std::string::npos) << shown << "\n" << help;
  for (const char* command : {"run", "train-teacher", "distill", "eval", "latency", "export"})
    EXPECT_NE(help.find(command), std::string::npos) << command;
}

TEST(Cli, CommandHelpAndVersion) {
  Options o;
  testing::internal::CaptureStdout();
  EXPECT_FALSE(parse_into({"distill", "--help"}, o));
  const std::string help = testing::internal::GetCapturedStdout();
  EXPECT_NE(help.find("--teacher"), std::string::npos) << help;
  testing::internal::CaptureStdout();
  EXPECT_FALSE(parse_into({"--version"}, o));
  EXPECT_EQ(testing::internal::GetCapturedStdout().rfind("kdtrain ", 0), 0u);
}

TEST(Cli, Names) {
  EXPECT_STREQ(command_name(Command::Run), "run");
  EXPECT_STREQ(command_name(Command::TrainTeacher), "train-teacher");
  EXPECT_STREQ(command_name(Command::Distill), "distill");
  EXPECT_STREQ(command_name(Command::Eval), "eval");
  EXPECT_STREQ(command_name(Command::Latency), "latency");
  EXPECT_STREQ(device_name(DeviceChoice::Auto), "auto");
  EXPECT_STREQ(device_name(DeviceChoice::Cuda), "cuda");
  EXPECT_STREQ(device_name(DeviceChoice::Cpu), "cpu");
}

// ---------------------------------------------------------------- the built binary

struct Ran {
  int status = -1;  // exit status, -1 if it did not exit normally
  std::string out, err;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fresh_dir() {
  std::string templ = ::testing::TempDir() + "kd_cli_XXXXXX";
  const char* made = mkdtemp(templ.data());
  EXPECT_NE(made, nullptr) << templ;
  return templ;
}

// Single-quotes `s` for /bin/sh.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

Ran run_kdtrain(const std::vector<std::string>& args) {
  const std::string dir = fresh_dir();
  std::string cmd = quoted(std::string(KD_BINARY_DIR) + "/kdtrain");
  for (const std::string& a : args) cmd += " " + quoted(a);
  cmd += " >" + quoted(dir + "/out") + " 2>" + quoted(dir + "/err") + " </dev/null";
  const int raw = std::system(cmd.c_str());
  Ran r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_text(dir + "/out");
  r.err = read_text(dir + "/err");
  std::filesystem::remove_all(dir);
  return r;
}

int count_lines(const std::string& s) {
  int lines = 0;
  for (char ch : s) lines += ch == '\n';
  return lines;
}

TEST(CliBinary, BadFlagValueIsOneLineOnStderrAndNonZeroExit) {
  const Ran r = run_kdtrain({"--batch-size", "0"});
  EXPECT_GT(r.status, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--batch-size"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.rfind("kdtrain: ", 0), 0u) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliBinary, UnknownFlagIsOneLineOnStderr) {
  const Ran r = run_kdtrain({"--epochs", "3"});
  EXPECT_GT(r.status, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("'--epochs'"), std::string::npos) << r.err;
}

TEST(CliBinary, TrainTeacherWithMixupExitsOneWithOneLine) {
  const Ran r = run_kdtrain({"train-teacher", "--mixup", "0.4", "--device", "cpu", "--data", "no-such-dir"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "kdtrain: --mixup: only changes how students train, and train-teacher trains none; drop it, or train a "
            "student with 'kdtrain run' or 'kdtrain distill --teacher F'\n");
  EXPECT_EQ(r.out, "");
}

TEST(CliBinary, HelpExitsZeroAndMentionsEveryFlag) {
  const Ran r = run_kdtrain({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  for (const std::string& flag : kAllFlags) EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

// Writes a big-endian IDX file: magic, dims, then u8 payload.
void write_idx(const std::string& path, uint32_t magic, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& payload) {
  std::ofstream f(path, std::ios::binary);
  const auto put_u32 = [&f](uint32_t v) {
    const char bytes[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
    f.write(bytes, 4);
  };
  put_u32(magic);
  for (uint32_t d : dims) put_u32(d);
  f.write(reinterpret_cast<const char*>(payload.data()), std::streamsize(payload.size()));
}

// A tiny MNIST-format dataset: n side x side images with labels cycling through 0..9.
void write_tiny_mnist(const std::string& dir, const std::string& prefix, uint32_t n, uint32_t side = 28) {
  std::vector<uint8_t> pixels(size_t(n) * side * side), labels(n);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i * 37);
  for (uint32_t i = 0; i < n; ++i) labels[i] = uint8_t(i % 10);
  write_idx(dir + "/" + prefix + "-images-idx3-ubyte", 2051, {n, side, side}, pixels);
  write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", 2049, {n}, labels);
}

TEST(CliBinary, BadTeacherArchExitsNonZeroNamingTheToken) {
  const std::string data = fresh_dir();
  write_tiny_mnist(data, "train", 20);
  write_tiny_mnist(data, "t10k", 10);
  const Ran r = run_kdtrain({"--device", "cpu", "--data", data, "--out", data + "/run", "--val-size", "4", "--quiet",
                             "--teacher-arch", "flatten,dense:7"});
  std::filesystem::remove_all(data);
  EXPECT_GT(r.status, 0);
  EXPECT_NE(r.err.find("kdtrain: --teacher-arch: token 2 'dense:7': output width 7 != 10 classes"), std::string::npos)
      << r.err;
}

// Images too small for the default teacher's two 3x3 convolutions and 2x2 pool:
// the one-line error names the layer that cannot take them and the data.
TEST(CliBinary, ImagesTheArchCannotTakeNameTheTokenAndTheData) {
  const std::string data = fresh_dir();
  write_tiny_mnist(data, "train", 20, 5);
  write_tiny_mnist(data, "t10k", 10, 5);
  const Ran r = run_kdtrain(
      {"--device", "cpu", "--data", data, "--out", data + "/run", "--val-size", "4", "--quiet", "--no-ort"});
  std::filesystem::remove_all(data);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  const std::vector<std::string> parts = {"--teacher-arch: token 5 'maxpool:2': spatial size shrinks below 1",
                                          "input 64x1x1", "the data in " + data + " has 5x5 images and 10 classes"};
  for (const std::string& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << part << " not in: " << r.err;
}

// export needs neither data nor a device; a bad --model is one line naming it,
// and nothing is written.
TEST(CliBinary, ExportNamesABadModelAndWritesNothing) {
  const std::string dir = fresh_dir();
  const Ran r = run_kdtrain(
      {"export", "--model", dir + "/missing.safetensors", "--onnx", dir + "/m.onnx", "--data", dir + "/no-data"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(dir + "/missing.safetensors"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

// main() picks how OpenMP threads wait from the command before parsing (spinning only for `latency`):
// the command as parse_command_line finds it, wherever it stands, and not a flag's value.
TEST(Cli, CommandOfFindsTheCommandAsTheParserDoes) {
  EXPECT_EQ(command_of_args({}), Command::Run);
  EXPECT_EQ(command_of_args({"latency", "--model", "s.safetensors"}), Command::Latency);
  EXPECT_EQ(command_of_args({"--threads", "2", "latency", "--model", "s.safetensors"}), Command::Latency);
  EXPECT_EQ(command_of_args({"--out", "latency", "run"}), Command::Run);
  EXPECT_EQ(command_of_args({"--out", "latency"}), Command::Run);
  EXPECT_EQ(command_of_args({"--quiet", "eval", "--model", "m"}), Command::Eval);
}

}  // namespace
}  // namespace kd
