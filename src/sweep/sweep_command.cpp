// `kdtrain sweep` on a session: one teacher and its soft targets, then every
// run of the grid, recorded as it finishes so a resumed sweep skips it
// (kd/sweep.h holds the grid, the Pareto front, the recommendation and the files).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "kd/distributed.h"
#include "kd/error.h"
#include "kd/interrupt.h"
#include "kd/json_text.h"
#include "kd/onnx_export.h"
#include "kd/onnx_runtime.h"
#include "kd/params.h"
#include "kd/safetensors.h"
#include "kd/seed.h"
#include "kd/session.h"
#include "kd/sweep.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using Clock = std::chrono::steady_clock;

// The run seed of a sweep's seed index: --seed itself for index 0, so that a
// sweep's seed-0 student is the one `kdtrain run` trains with the same
// architecture, T and alpha; an independent mix of (--seed, index) otherwise.
constexpr uint64_t kSweepSeedSalt = 1000;
uint64_t sweep_run_seed(uint64_t seed, int seed_index) {
  return seed_index == 0 ? seed : mix_seed(seed, kSweepSeedSalt + uint64_t(seed_index));
}

// "distilled_flatten_dense-32_relu_dense-10_T4_a0.9_s0": readable and unique per run key.
std::string sweep_file_stem(const SweepRun& r) {
  std::string arch;
  for (char ch : r.arch)
    arch += ch == ',' ? '_' : ch == ':' ? '-' : std::isalnum((unsigned char)ch) || ch == '.' ? ch : '~';
  char tail[96];
  if (r.kind == RunKind::Distilled)
    std::snprintf(tail, sizeof tail, "_T%g_a%g_s%d", r.temperature, r.alpha, r.seed_index);
  else std::snprintf(tail, sizeof tail, "_s%d", r.seed_index);
  return std::string(run_kind_name(r.kind)) + "_" + arch + tail;
}

// A run of the grid trained on some rank: its record, and the weights and
// metadata of its models/ file, which rank 0 writes.
struct TrainedRun {
  SweepRun run;
  std::vector<float> params;
  std::map<std::string, std::string> facts;
};

// Trains, tests and times one run of the grid (`time_ort`: under ONNX
// Runtime too). Its seed: sweep_run_seed; its init and shuffles derive from
// it as `kdtrain run --seed <seed>` derives the student's and the baseline's.
TrainedRun train_sweep_run(Session& s, SweepRun run, const Arch& arch, bool time_ort) {
  const Options& opt = s.opt();
  const Phase phase = run.kind == RunKind::Distilled ? Phase::Student : Phase::Scratch;
  run.seed = sweep_run_seed(opt.seed, run.seed_index);
  std::vector<float> init(size_t(arch.param_count));
  init_params(arch, mix_seed(run.seed, kStudentSalt), init.data());
  TrainSettings settings = s.student_settings();
  settings.seed = run.seed;  // the dropout streams
  auto model = s.engine().create_model(arch, init, settings);
  ModelReport rep = s.new_report(phase, arch);
  s.train(phase, *model, LossConfig{float(run.temperature), float(run.alpha)}, opt.epochs_student, rep, run.seed);
  s.finish_model(*model, rep, true, /*ort=*/false);
  s.state().stop_if_interrupted("the test evaluation and timing of " + sweep_run_key(run));
  run.params = rep.params;
  run.bytes = rep.bytes;
  run.selected_epoch = rep.selected_epoch;
  for (const EpochRecord& e : rep.curve)
    if (e.epoch == rep.selected_epoch) run.val_acc = e.val_acc;
  run.test_acc = rep.test_acc;
  run.train_seconds = rep.train_seconds;
  for (const LatencyRecord& l : rep.latency) {
    if (l.batch == 1) run.latency_b1_ms = l.median_ms;
    else run.latency_large_ms = l.median_ms, run.large_batch = l.batch;
  }
  if (time_ort) {
    const auto o0 = Clock::now();
    std::vector<int> batches = {1};
    if (run.large_batch > 1) batches.push_back(run.large_batch);
    const OrtLatency ort = ort_latency(arch, model->get_params(), s.ort_options(batches));
    for (const LatencyRecord& l : ort.latency) (l.batch == 1 ? run.ort_b1_ms : run.ort_large_ms) = l.median_ms;
    if (!ort.measured) s.ort_note() = ort.note;
    s.add_phase("ONNX Runtime latency", seconds_since(o0));
  }
  run.model_file = "models/" + sweep_file_stem(run) + ".safetensors";
  std::map<std::string, std::string> facts = s.model_facts(rep);
  facts["seed"] = std::to_string(run.seed);
  facts["sweep_run"] = sweep_run_key(run);
  return TrainedRun{run, model->get_params(), facts};
}

// A finished run as a message to rank 0: its record and facts as JSON, a
// NUL (which JSON text never holds), then the raw fp32 weights.
std::string trained_run_message(size_t plan_index, const TrainedRun& t) {
  const json head{{"plan_index", plan_index}, {"run", json::parse(sweep_run_text(t.run))}, {"facts", t.facts}};
  return head.dump() + '\0' + float_bytes(t.params);
}

std::pair<size_t, TrainedRun> parse_trained_run(const std::string& bytes) {
  const size_t nul = bytes.find('\0');
  const json head = json::parse(bytes.substr(0, nul));
  TrainedRun t{parse_sweep_run(head.at("run").dump()), floats_of(bytes.substr(nul + 1)),
               head.at("facts").get<std::map<std::string, std::string>>()};
  return {head.at("plan_index").get<size_t>(), t};
}

// Message tags between rank 0 and the other ranks of a distributed sweep.
enum SweepTag : int {
  kWantRun = 1,  // rank -> 0: ready for a run (its first request)
  kRunDone,      // rank -> 0: trained_run_message; also asks for the next run
  kRunFailed,    // rank -> 0: why its run failed (rank 0 then ends the job)
  kTrainRun,     // 0 -> rank: {"plan_index", "ort"}
  kNoMoreRuns,   // 0 -> rank: the grid is handed out
};

// Rank 0's book of the grid: hands the unfinished runs out in plan order
// (whichever rank asks first gets the next one, so long runs do not hold up
// short ones behind them) and records each finished run as it arrives: its
// model file, then sweep_state.json rewritten atomically, so that a job
// killed at any moment resumes with exactly the unfinished runs. Rank 0's
// training thread and its dispatch thread share it.
class SweepBook {
 public:
  SweepBook(Session& s, const std::vector<SweepRun>& plan, SweepState& state, const std::string& state_path,
            bool ort_ready)
      : s_(s), plan_(plan), state_(state), state_path_(state_path), ort_ready_(ort_ready), results_(plan.size()) {
    std::map<std::string, SweepRun> finished;
    for (const SweepRun& r : state.runs) finished[sweep_run_key(r)] = r;
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto it = finished.find(sweep_run_key(plan[i]));
      if (it != finished.end()) results_[i] = it->second, ++done_;
      else todo_.push_back(i);
      // ONNX Runtime's latency, like the device's, depends on the
      // architecture only: the first run of an architecture handed out
      // measures it, unless a finished run did.
      if (it != finished.end() && it->second.ort_b1_ms > 0) ort_archs_.insert(plan[i].arch);
    }
  }
  int skipped() const { return done_; }

  struct Assignment {
    size_t plan_index;
    bool time_ort;
  };
  // The next run for `rank`, or none when every run is handed out.
  std::optional<Assignment> take(int rank) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (next_ == todo_.size()) return std::nullopt;
    const size_t i = todo_[next_++];
    const bool ort = ort_ready_ && ort_archs_.insert(plan_[i].arch).second;
    s_.say("[sweep " + std::to_string(done_ + running_ + 1) + "/" + std::to_string(plan_.size()) + "] " +
           (s_.comm().size() > 1 ? "rank " + std::to_string(rank) + ": " : "") + sweep_run_key(plan_[i]));
    ++running_;
    return Assignment{i, ort};
  }
  // Writes models/<run>.safetensors and the state with the run in it.
  void finish(size_t plan_index, const TrainedRun& t, const Arch& arch, int rank) {
    std::lock_guard<std::mutex> lock(mutex_);
    save_model_file(s_.out_dir() + "/" + t.run.model_file, arch, t.params, t.facts);
    results_[plan_index] = t.run;
    state_.runs.push_back(t.run);
    write_file_atomic(state_path_, sweep_state_json(state_));
    --running_, ++done_;
    if (s_.comm().size() > 1)
      s_.say("[sweep] " + std::to_string(done_) + "/" + std::to_string(plan_.size()) + " done: rank " +
             std::to_string(rank) + " ran " + sweep_run_key(t.run) +
             format(", test accuracy %.2f%%", 100 * t.run.test_acc));
  }
  // Every run's record in plan order, once all are finished.
  std::vector<SweepRun> runs() const {
    std::vector<SweepRun> out;
    for (const auto& r : results_) out.push_back(r.value());
    return out;
  }

 private:
  Session& s_;
  const std::vector<SweepRun>& plan_;
  SweepState& state_;
  const std::string state_path_;
  const bool ort_ready_;
  std::mutex mutex_;
  std::vector<std::optional<SweepRun>> results_;  // by plan index
  std::vector<size_t> todo_;                      // plan indices of the unfinished runs
  size_t next_ = 0;                               // todo_[next_] is handed out next
  int done_ = 0, running_ = 0;
  std::set<std::string> ort_archs_;  // architectures whose ONNX Runtime latency is (being) measured
};

// Rank 0's dispatch thread: answers every other rank's request with the
// next run or kNoMoreRuns, and records what they send back. The only thread
// of rank 0 that calls MPI while the grid trains (MPI_THREAD_SERIALIZED). A
// failed run ends the job with the rank's reason; the runs already recorded
// stay, so --resume redoes only the rest.
void dispatch_runs(Session& s, SweepBook& book, const std::vector<const Arch*>& run_archs) {
  Comm& comm = s.comm();
  try {
    for (int active = comm.size() - 1; active > 0;) {
      const Message m = comm.receive(Comm::kAnySource);
      if (m.tag == kRunFailed)
        comm.abort("rank " + std::to_string(m.source) + " of " + std::to_string(comm.size()) + " failed: " + m.bytes +
                       " (every rank stops)",
                   1);
      if (m.tag == kRunDone) {
        const auto [index, trained] = parse_trained_run(m.bytes);
        book.finish(index, trained, *run_archs[index], m.source);
      }
      if (const auto next = book.take(m.source)) {
        comm.send(m.source, kTrainRun, json{{"plan_index", next->plan_index}, {"ort", next->time_ort}}.dump());
      } else {
        comm.send(m.source, kNoMoreRuns, "");
        --active;
      }
    }
  } catch (const std::exception& e) {  // a write on rank 0 failed: no rank may wait for this thread
    comm.abort(std::string(e.what()) + " (every rank stops)", 1);
  }
}

// A rank other than 0: trains the runs rank 0 hands it, and sends each back.
void train_handed_runs(Session& s, ModelEngine& teacher, const std::vector<SweepRun>& plan,
                       const std::vector<const Arch*>& run_archs) {
  Comm& comm = s.comm();
  bool soft_targets_ready = false;
  comm.send(0, kWantRun, "");
  for (;;) {
    const Message m = comm.receive(0);
    if (m.tag == kNoMoreRuns) return;
    const json assignment = json::parse(m.bytes);
    const size_t i = assignment.at("plan_index").get<size_t>();
    try {
      if (!soft_targets_ready) s.compute_soft_targets(teacher), soft_targets_ready = true;
      const TrainedRun t = train_sweep_run(s, plan[i], *run_archs[i], assignment.at("ort").get<bool>());
      comm.send(0, kRunDone, trained_run_message(i, t));
    } catch (const std::exception& e) {
      comm.send(0, kRunFailed, sweep_run_key(plan[i]) + ": " + e.what());
      comm.receive(0);  // rank 0 ends the job on the message; waiting here keeps this rank's exit from racing it
    }
  }
}

// recommended.safetensors: the chosen configuration's kept seed, with the
// sweep's reasons in its metadata.
void save_recommended(Session& s, const SweepConfig& c, const std::string& path) {
  ModelFile f = load_model_file(s.out_dir() + "/" + c.model_file);
  std::map<std::string, std::string> facts = f.metadata;
  facts["recommended_by"] = "kdtrain sweep";
  facts["sweep_test_accuracy_mean"] = std::to_string(c.acc_mean);
  facts["sweep_latency_b1_us"] = std::to_string(c.latency_b1_us);
  facts["sweep_source"] = c.model_file;
  save_model_file(path, f.arch, f.params, facts);
}

// "recommended: MLP ... distilled T 4 alpha 0.9, 97.91% ..., -> recommended.safetensors".
std::string recommendation_line(Session& s, const SweepResult& r) {
  const Options& opt = s.opt();
  const SweepConfig& c = r.configs[size_t(r.recommended)];
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.2f%% mean test accuracy, %.1f us at batch 1, %lld parameters", 100 * c.acc_mean,
                c.latency_b1_us, (long long)c.params);
  const auto g = [](const char* prefix, double v) {
    char text[64];
    std::snprintf(text, sizeof text, "%s%g", prefix, v);
    return std::string(text);
  };
  std::string constraints;
  const auto add = [&](const std::string& text) { constraints += (constraints.empty() ? "" : ", ") + text; };
  if (opt.max_latency_us) add(g("--max-latency-us ", *opt.max_latency_us));
  if (opt.max_params) add("--max-params " + std::to_string(*opt.max_params));
  if (opt.min_accuracy) add(g("--min-accuracy ", *opt.min_accuracy));
  return "recommended: " + std::string(run_kind_name(c.kind)) + " " + c.arch +
         (c.kind == RunKind::Distilled ? g(" (T ", c.temperature) + g(", alpha ", c.alpha) + ")" : std::string()) +
         ": " + buf + (constraints.empty() ? " (the most accurate; no constraints given)" : " under " + constraints) +
         "; weights of " + c.model_file + " in " + s.out_dir() + "/recommended.safetensors";
}

// Settings a resumed sweep must share with the interrupted one (the grid may differ).
std::vector<FingerprintField> sweep_fingerprint_fields(const Options& opt) {
  std::vector<FingerprintField> fields = options_fingerprint_fields(opt);
  fields.push_back({"epochs_teacher", "--epochs-teacher", std::to_string(opt.epochs_teacher)});
  fields.push_back({"epochs_student", "--epochs-student", std::to_string(opt.epochs_student)});
  fields.push_back({"test_limit", "--test-limit", std::to_string(opt.test_limit)});
  fields.push_back({"teacher_file", "--teacher", opt.teacher_path});
  return fields;
}

SweepState load_sweep_state(const Options& opt) {
  if (!opt.out_dir.empty() && fs::weakly_canonical(opt.out_dir) != fs::weakly_canonical(opt.resume_dir))
    fail("--resume: a sweep continues in its own directory " + opt.resume_dir + "; leave out --out");
  const std::string path = opt.resume_dir + "/sweep_state.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--resume: no sweep state at " + path + " (not the directory of a 'kdtrain sweep')");
  std::stringstream text;
  text << in.rdbuf();
  SweepState state = parse_sweep_state(text.str(), path);
  const std::string difference = fingerprint_difference(state.fingerprint, sweep_fingerprint_fields(opt));
  if (!difference.empty())
    fail("--resume: " + path + " was written with " + difference +
         "; pass the same flags as the interrupted sweep (the lists of the grid may differ)");
  return state;
}

}  // namespace

// One teacher and its soft targets, then every run of the grid; each
// finished run is recorded in sweep_state.json, so a resumed sweep skips it.
void run_sweep(Session& s) {
  const Options& opt = s.opt();
  // Every architecture is checked before any training.
  const std::vector<std::string> texts =
      opt.student_archs.empty() ? default_sweep_archs(s.splits().num_classes) : opt.student_archs;
  std::vector<Arch> archs;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string flag = texts.size() > 1 ? "--student-arch (value " + std::to_string(i + 1) + " of " +
                                                    std::to_string(texts.size()) + ")"
                                              : "--student-arch";
    archs.push_back(s.parse_model_arch(texts[i], flag.c_str()));
    for (size_t j = 0; j < i; ++j)
      if (archs[j].text == archs[i].text)
        fail("--student-arch: values " + std::to_string(j + 1) + " and " + std::to_string(i + 1) +
             " are the same architecture (" + archs[i].text + ")");
  }
  std::vector<std::string> arch_texts;
  for (const Arch& a : archs) arch_texts.push_back(a.text);
  const auto or_default = [](const std::vector<double>& list, const auto& defaults) {
    return list.empty() ? std::vector<double>(std::begin(defaults), std::end(defaults)) : list;
  };
  const std::vector<SweepRun> plan =
      sweep_plan(arch_texts, or_default(opt.temperatures, kDefaultSweepTemperatures),
                 or_default(opt.alphas, kDefaultSweepAlphas), opt.seeds, opt.no_baseline);

  if (!opt.export_best.empty()) {
    const fs::path parent = fs::absolute(opt.export_best).parent_path();
    if (!fs::is_directory(parent))
      fail("--export-best: directory " + parent.string() + " does not exist (for " + opt.export_best + ")");
  }
  Comm& comm = s.comm();
  // The teacher's architecture reaches every rank first, so each checks its
  // own memory; its file (--teacher F) need exist on rank 0 only.
  const ModelFile teacher_file = comm.rank() == 0 ? s.teacher_start() : ModelFile{};
  std::string teacher_arch_text = teacher_file.arch.text;
  comm.broadcast(teacher_arch_text, 0);
  const Arch teacher_arch =
      comm.rank() == 0 ? teacher_file.arch : s.parse_model_arch(teacher_arch_text, s.teacher_flag().c_str());
  const Arch* largest = &*std::max_element(archs.begin(), archs.end(),
                                           [](const Arch& a, const Arch& b) { return a.param_count < b.param_count; });
  const bool online = opt.soft_targets == SoftTargets::Online;
  s.check_memory({{&teacher_arch, "teacher", s.teacher_flag(), s.settings(), online},
                  {largest, "student", "--student-arch", s.student_settings()}},
                 !online);
  std::vector<const Arch*> run_archs;  // by plan index
  for (const SweepRun& r : plan)
    run_archs.push_back(&archs[size_t(std::find(arch_texts.begin(), arch_texts.end(), r.arch) - arch_texts.begin())]);

  if (comm.rank() != 0) {
    // The teacher's model is built while rank 0 trains it: building one
    // takes the fast engine seconds (7 s measured for the default teacher on
    // a loaded 2-core VM), which rank 0 would otherwise spend on runs alone.
    auto teacher =
        s.engine().create_model(teacher_arch, std::vector<float>(size_t(teacher_arch.param_count)), s.settings());
    // The teacher rank 0 trained or loaded, and where rank 0 keeps the
    // sweep's files: only rank 0 writes, so no shared file system is assumed.
    std::string message;
    comm.broadcast(message, 0);
    const size_t nul = message.find('\0');
    const json head = json::parse(message.substr(0, nul));
    s.state().set_out_dir(head.at("out_dir").get<std::string>());
    s.state().set_sweep_stop_note(head.at("stop_note").get<std::string>());  // also: students write no checkpoints
    install_interrupt_handlers();
    teacher->set_params(floats_of(message.substr(nul + 1)));
    train_handed_runs(s, *teacher, plan, run_archs);
    // Rank 0 arrives when it has written the results, or when it failed
    // after the grid (no student meets the constraints): then its message
    // and exit status are the job's, as in one process.
    comm.all_arrive(-1);
    return;
  }

  SweepState state;
  state.fingerprint = fingerprint_text(sweep_fingerprint_fields(opt));
  if (!opt.resume_dir.empty()) state = load_sweep_state(opt);
  s.prepare_out_dir();
  install_interrupt_handlers();
  const std::string state_path = s.out_dir() + "/sweep_state.json";
  // The teacher: an interrupted one continues its checkpoint; a finished one is loaded.
  if (!state.teacher_done && !opt.resume_dir.empty() && fs::exists(s.state().checkpoint_path())) {
    s.state().load_resume_checkpoint();
  }
  if (state.teacher_done) s.state().history() = parse_metrics_csv_rows(state.teacher_history_csv);
  write_file_atomic(state_path, sweep_state_json(state));
  ModelReport teacher_report;
  auto teacher = s.ready_teacher(teacher_file, state.teacher_done, teacher_report);
  s.state().drop_resume();  // students never continue a checkpoint: an interrupted one trains again
  if (state.teacher_done) teacher_report.train_seconds = state.teacher_train_seconds;
  else state.teacher_train_seconds = teacher_report.train_seconds;
  state.teacher_done = true;
  state.teacher_history_csv.clear();
  for (const EpochRecord& e : s.state().history_for(Phase::Teacher)) state.teacher_history_csv += metrics_csv_row(e);
  write_file_atomic(state_path, sweep_state_json(state));
  fs::remove(s.state().checkpoint_path());
  const std::string stop_note = "the teacher and every finished run are recorded in " + state_path +
                                "; a resumed sweep skips them and trains the interrupted run again. " +
                                s.state().resume_hint();
  s.state().set_sweep_stop_note(stop_note);
  if (comm.size() > 1) {
    std::string message =
        json{{"out_dir", s.out_dir()}, {"stop_note", stop_note}}.dump() + '\0' + float_bytes(teacher->get_params());
    comm.broadcast(message, 0);
  }

  std::error_code ec;
  fs::create_directories(s.out_dir() + "/models", ec);
  if (ec) fail("--out: cannot create directory '" + s.out_dir() + "/models': " + ec.message());
  // One cheap check before many models: is ONNX Runtime there at all?
  std::string ort_why;
  const bool ort_ready = !opt.no_ort && !ort_version(ort_why).empty();
  if (!opt.no_ort && !ort_ready) s.ort_note() = ort_why;
  SweepBook book(s, plan, state, state_path, ort_ready);
  s.say("sweep: " + std::to_string(archs.size()) + " architectures, " + std::to_string(plan.size()) + " runs of " +
        std::to_string(opt.epochs_student) + " epochs" +
        (book.skipped() ? " (" + std::to_string(book.skipped()) + " finished before, skipped)" : "") +
        (comm.size() > 1 ? ", on " + comm.describe() : ""));
  // Rank 0 trains runs too; with more ranks a second thread serves them.
  std::thread dispatch;
  if (comm.size() > 1) dispatch = std::thread(dispatch_runs, std::ref(s), std::ref(book), std::cref(run_archs));
  try {
    bool soft_targets_ready = false;
    while (const auto next = book.take(0)) {
      if (!soft_targets_ready) {  // only when a run is left to train (a finished sweep resumed needs none)
        s.compute_soft_targets(*teacher);
        soft_targets_ready = true;
      }
      const TrainedRun t = train_sweep_run(s, plan[next->plan_index], *run_archs[next->plan_index], next->time_ort);
      book.finish(next->plan_index, t, *run_archs[next->plan_index], 0);
    }
  } catch (const std::exception& e) {
    // The dispatch thread must not outlive this frame, and the other ranks
    // must not wait for it: the job ends here, with this message.
    if (dispatch.joinable()) comm.abort(std::string(e.what()) + " (every rank stops)", 1);
    throw;
  }
  if (dispatch.joinable()) dispatch.join();
  const std::vector<SweepRun> runs = book.runs();
  s.state().set_sweep_stop_note("");

  SweepResult result;
  s.report().models = {teacher_report};
  s.report().total_seconds = s.elapsed();
  result.run = s.report();
  result.runs = runs;
  result.configs = aggregate_sweep(runs);
  result.constraints = {opt.max_latency_us, opt.max_params, opt.min_accuracy};
  result.recommended = recommend_student(result.configs, result.constraints, result.why_none);
  result.ort_note = opt.no_ort ? "ONNX Runtime latencies skipped (--no-ort)" : s.ort_note();
  const std::string recommended_path = s.out_dir() + "/recommended.safetensors";
  fs::remove(recommended_path, ec);  // a resumed sweep may choose differently
  if (result.recommended >= 0) save_recommended(s, result.configs[size_t(result.recommended)], recommended_path);
  const std::string note = write_sweep_files(result, s.out_dir());
  if (!opt.quiet) std::cout << "\n" << sweep_table(result);
  if (!note.empty()) s.say(note);
  s.say("wrote sweep.csv, sweep.json" + std::string(note.empty() ? ", pareto.png" : "") +
        (result.recommended >= 0 ? ", recommended.safetensors" : "") + " to " + s.out_dir());
  if (result.recommended < 0)
    fail(result.why_none + "; every result is in " + s.out_dir() + "/sweep.csv" +
         (opt.export_best.empty() ? "" : ", and " + opt.export_best + " was not written"));
  s.say(recommendation_line(s, result));
  if (!opt.export_best.empty()) export_model_file(recommended_path, opt.export_best, opt.quiet);
  if (comm.size() > 1) comm.all_arrive(-1);  // the other ranks wait for this (above)
}

}  // namespace kd
