// The commands of the kdtrain binary on one session: run / train-teacher /
// distill (train, distill, baseline, report), eval and latency of a saved
// model; sweep lives in src/sweep/ (kd/commands.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "kd/commands.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/json_text.h"
#include "kd/onnx_runtime.h"
#include "kd/params.h"
#include "kd/safetensors.h"
#include "kd/seed.h"
#include "kd/session.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// Trains (or, resuming, reloads) one student phase, tests, times and saves it
// (without the hint's map: it is no part of the student).
void train_student(Session& s, Phase phase, const Arch& arch, const std::vector<float>& init, const LossConfig& loss,
                   const Arch& teacher) {
  auto model = s.engine().create_model(arch, init, s.student_settings(phase, teacher));
  ModelReport rep = s.new_report(phase, arch);
  const TrainingCheckpoint* resume = s.state().resume();
  const bool saved = resume && resume->phase > phase;
  if (saved) s.load_finished(phase, *model, rep);
  else s.train(phase, *model, loss, s.opt().epochs_student, rep, s.opt().seed);
  s.finish_model(*model, rep, !saved);
  s.state().stop_if_interrupted("the " + std::string(phase_name(phase)) + "'s test evaluation and timing");
  save_model_file(s.out_dir() + "/" + phase_file(phase), arch, model->get_params(), s.model_facts(rep));
  s.report().models.push_back(rep);
}

}  // namespace

void train_and_report(Session& s) {
  const Options& opt = s.opt();
  s.state().load_resume_checkpoint();

  // Both arch strings are checked before any training, so a typo in the
  // student's costs seconds, not a trained teacher.
  const Arch student_arch = s.parse_model_arch(opt.student_arch, "--student-arch");
  const ModelFile teacher_file = s.teacher_start();
  const bool distills = opt.command != Command::TrainTeacher;
  const bool online = distills && opt.soft_targets == SoftTargets::Online;
  if (distills && opt.hint != HintKind::Off) {  // both have features to match, or the run stops here
    hint_feature_width(student_arch, "student");
    hint_feature_width(teacher_file.arch, "teacher");
  }
  // The distilled student, with its hint, is the larger of the two students
  // (one at a time: the baseline trains after it).
  std::vector<Session::LiveModel> live = {{&teacher_file.arch, "teacher", s.teacher_flag(), s.settings(), online}};
  if (distills)
    live.push_back({&student_arch, "student", "--student-arch", s.student_settings(Phase::Student, teacher_file.arch)});
  s.check_memory(live, distills && !online);
  // Only now is anything written: a refused configuration leaves no trace.
  s.prepare_out_dir();
  s.say(recipe_text(opt, distills));
  install_interrupt_handlers();

  ModelReport teacher_report;
  // Past the teacher's phase, the interrupted run saved it already.
  const TrainingCheckpoint* resume = s.state().resume();
  auto teacher = s.ready_teacher(teacher_file, resume && resume->phase != Phase::Teacher, teacher_report);

  if (distills) {
    s.compute_soft_targets(*teacher);
    std::vector<float> student_init(size_t(student_arch.param_count));
    init_params(student_arch, mix_seed(opt.seed, kStudentSalt), student_init.data());
    const LossConfig distill{float(opt.temperature), float(opt.alpha)};
    train_student(s, Phase::Student, student_arch, student_init, distill, teacher->arch());
    if (!opt.no_baseline)
      train_student(s, Phase::Scratch, student_arch, student_init, LossConfig{1.0f, 0.0f}, teacher->arch());
  }
  RunReport& report = s.report();
  report.models.insert(report.models.begin(), teacher_report);
  report.total_seconds = s.elapsed();
  fs::remove(s.state().checkpoint_path());
  if (s.discards_results()) return;  // rank 0 reports the run
  const std::string note = write_report_files(report, s.out_dir());
  if (!opt.quiet) std::cout << "\n" << report_table(report);
  if (!note.empty()) s.say(note);
  std::string written;
  for (const std::string& f : run_output_files(opt, note.empty())) written += (written.empty() ? "" : ", ") + f;
  s.say("wrote " + written + " to " + s.out_dir());
}

std::vector<std::string> run_output_files(const Options& opt, bool plots_drawn) {
  const bool distills = opt.command != Command::TrainTeacher;
  std::vector<std::string> files = {"metrics.csv", "summary.json"};
  // A teacher given with --teacher is read, not written again.
  if (opt.teacher_path.empty()) files.push_back(phase_file(Phase::Teacher));
  if (distills) files.push_back(phase_file(Phase::Student));
  if (distills && !opt.no_baseline) files.push_back(phase_file(Phase::Scratch));
  if (plots_drawn) files.insert(files.end(), {"curves.png", "latency.png"});
  return files;
}

namespace {
// The model of --model F on the session's engine, after checking it fits the
// data and the device; `file` receives what was read.
std::unique_ptr<ModelEngine> model_of_file(Session& s, ModelFile& file) {
  const std::string& path = s.opt().model_path;
  file = load_model_file(path);
  s.check_input_shape(file.arch, path);
  s.check_memory({{&file.arch, "model", "--model " + path, s.settings()}}, false);
  return s.engine().create_model(file.arch, file.params, s.settings());
}
}  // namespace

void eval_model_file(Session& s) {
  ModelFile f;
  auto model = model_of_file(s, f);
  for (SplitId split : {SplitId::Val, SplitId::Test}) {
    const EvalResult r = model->evaluate(split);
    std::printf("%s %s: accuracy %.2f%% (%lld errors of %lld), loss %.4f\n", s.opt().model_path.c_str(),
                split == SplitId::Val ? "val " : "test", 100 * r.accuracy(), (long long)(r.n - r.correct),
                (long long)r.n, r.loss);
  }
}

void latency_of_model_file(Session& s) {
  ModelFile f;
  auto model = model_of_file(s, f);
  std::printf("%s on %s\n", s.opt().model_path.c_str(), s.report().device.c_str());
  const std::vector<LatencyRecord> kdtrain = s.measure_latencies(*model);
  const OrtLatency ort = s.opt().no_ort ? OrtLatency{} : ort_latency(f.arch, f.params, s.ort_options());
  std::printf("%s", latency_side_by_side_text(kdtrain, ort).c_str());
}

namespace {

// A directory removed with everything in it when the command ends.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// Rank 0's model files and checkpoint of --resume DIR (its *.safetensors)
// reach every other rank's `dir`: a resumed data-parallel job needs no
// shared file system. One broadcast: a JSON list of [name, bytes] pairs, a
// NUL, then the files one after another.
void share_resume_files(const Options& opt, Comm& comm, const std::string& dir) {
  std::string message;
  if (comm.rank() == 0) {
    json names = json::array();
    std::string contents;
    for (const fs::directory_entry& e : fs::directory_iterator(opt.resume_dir)) {
      if (e.path().extension() != ".safetensors" || !e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      names.push_back(json::array({e.path().filename().string(), bytes.size()}));
      contents += bytes;
    }
    message = names.dump() + '\0' + contents;
  }
  comm.broadcast(message, 0);
  if (comm.rank() == 0) return;
  const size_t nul = message.find('\0');
  size_t at = nul + 1;
  for (const json& f : json::parse(message.substr(0, nul))) {
    const size_t size = f[1].get<size_t>();
    write_file_atomic(dir + "/" + f[0].get<std::string>(), message.substr(at, size));
    at += size;
  }
}

}  // namespace

int run_command(const Options& given, Engine& engine, Comm& comm) {
  clear_interrupt();
  const bool trains = given.command == Command::Run || given.command == Command::TrainTeacher;
  if (given.data_parallel && !trains)
    fail(std::string("--data-parallel: for run and train-teacher; ") +
         (given.command == Command::Sweep ? "a sweep spreads its runs over the ranks without it"
                                          : std::string(command_name(given.command)) + " trains nothing to share"));
  if (comm.size() > 1 && given.command != Command::Sweep && !given.data_parallel)
    fail(std::string(command_name(given.command)) + " under mpirun/srun with " + std::to_string(comm.size()) +
         " ranks: add --data-parallel (run, train-teacher), or run it as one process (without mpirun); "
         "'kdtrain sweep' spreads its runs over the ranks");
  // A data-parallel rank other than 0 trains what rank 0 trains and keeps
  // nothing: its files go to a scratch directory of its own.
  Options opt = given;
  ScratchDir scratch;
  if (given.data_parallel && comm.rank() != 0) {
    scratch.path =
        (fs::temp_directory_path() / ("kdtrain-rank" + std::to_string(comm.rank()) + "-" + std::to_string(::getpid())))
            .string();
    fs::create_directories(scratch.path);
    opt.out_dir = scratch.path;
    if (!given.resume_dir.empty()) opt.resume_dir = scratch.path;
    opt.no_ort = true;
  }
  if (given.data_parallel && !given.resume_dir.empty()) share_resume_files(given, comm, scratch.path);
  Session session(opt, engine, comm);
  session.load_data();
  switch (opt.command) {
    case Command::Run:
    case Command::TrainTeacher:
    case Command::Distill: train_and_report(session); break;
    case Command::Eval: eval_model_file(session); break;
    case Command::Latency: latency_of_model_file(session); break;
    case Command::Sweep: run_sweep(session); break;
    case Command::Export:  // main() runs it before any data or device (kd/onnx_export.h)
      break;
  }
  return 0;
}

}  // namespace kd
