// kd/options.h: the run configuration and the command-line front end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kd/arch.h"

namespace kd {

enum class Command { Run, TrainTeacher, Distill, Eval, Latency, Export, Sweep };
enum class DeviceChoice { Auto, Cuda, Cpu, Reference };
enum class OptimizerKind { Adam, Sgd };
enum class DenseImplChoice { Auto, Custom, Cublas };
// Which epoch of each model is saved, tested and timed: the one with the best
// validation accuracy (ties: lower validation loss, then the earlier), or the last.
enum class SelectRule { Best, Last };

struct Options {
  Command command = Command::Run;
  std::string data_dir = "data/mnist";
  DeviceChoice device = DeviceChoice::Auto;
  std::string out_dir;                 // empty -> runs/<timestamp>/
  uint64_t seed = 0;
  int batch_size = 64;
  int epochs_teacher = 5;
  int epochs_student = 5;
  double lr = 1e-3;
  OptimizerKind optimizer = OptimizerKind::Adam;
  double momentum = 0.9;               // SGD only
  double temperature = 4.0;
  double alpha = 0.9;
  std::string teacher_arch = kDefaultTeacherArch;
  std::string student_arch = kDefaultStudentArch;
  int64_t val_size = 5000;
  int64_t train_limit = 0;             // 0 = all
  int64_t test_limit = 0;              // 0 = all 10,000; >0 evaluates only the first N test images
  bool no_baseline = false;
  bool deterministic = false;
  bool quiet = false;
  DenseImplChoice dense_impl = DenseImplChoice::Auto;
  SelectRule select = SelectRule::Best;
  std::string teacher_path;            // distill --teacher F
  std::string model_path;              // eval / latency / export --model F
  std::string onnx_path;               // export --onnx OUT
  bool no_ort = false;                 // --no-ort: no ONNX Runtime latency in the report
  std::string resume_dir;              // --resume DIR
  int eval_batch_size = 1000;
  int threads = 0;                     // fast CPU engine threads; 0 = every hardware thread
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
  std::optional<double> min_accuracy;    // percent
  std::string export_best;               // --export-best OUT.onnx: the recommended student as ONNX
};

// Parses argv into Options. Throws kd::Error with a one-line message naming the
// flag for any bad value. Returns false when --help/--version was printed (exit 0).
bool parse_command_line(int argc, const char* const* argv, Options& out);

const char* command_name(Command c);
const char* device_name(DeviceChoice d);
const char* select_rule_name(SelectRule s);

}  // namespace kd
