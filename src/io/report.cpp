// metrics.csv, summary.json, the report table and the gnuplot pictures (see kd/report.h).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "kd/safetensors.h"
#include "kd/error.h"
#include "kd/json_text.h"
#include "kd/process.h"
#include "kd/report.h"
#include "kd/onnx_runtime.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

constexpr const char* kGnuplotMissingNote = "plots skipped: gnuplot not found (apt-get install gnuplot-nox)";


// Every Options field under the name of the flag that sets it.
json config_json(const Options& o) {
  return json{{"command", command_name(o.command)},
              {"recipe", name_of(kRecipes, o.recipe)},
              {"resolved-recipe", recipe_text(o, o.command != Command::TrainTeacher)},
              {"data", o.data_dir},
              {"device", device_name(o.device)},
              {"out", o.out_dir},
              {"seed", o.seed},
              {"batch-size", o.batch_size},
              {"epochs-teacher", o.epochs_teacher},
              {"epochs-student", o.epochs_student},
              {"lr", json_number(o.lr)},
              {"optimizer", name_of(kOptimizers, o.optimizer)},
              {"momentum", json_number(o.momentum)},
              {"lr-schedule", name_of(kLrSchedules, o.lr_schedule)},
              {"warmup-epochs", json_number(o.warmup_epochs)},
              {"weight-decay", json_number(o.weight_decay)},
              {"augment", o.augment},
              {"shift", json_number(o.shift)},
              {"rotate", json_number(o.rotate)},
              {"scale", json{json_number(o.scale.lo), json_number(o.scale.hi)}},
              {"soft-targets", name_of(kSoftTargets, o.soft_targets)},
              {"temperature", json_number(o.temperature)},
              {"alpha", json_number(o.alpha)},
              {"teacher-arch", o.teacher_arch},
              {"student-arch", o.student_arch},
              {"val-size", o.val_size},
              {"train-limit", o.train_limit},
              {"test-limit", o.test_limit},
              {"no-baseline", o.no_baseline},
              {"deterministic", o.deterministic},
              {"quiet", o.quiet},
              {"dense-impl", name_of(kDenseImpls, o.dense_impl)},
              {"select", select_rule_name(o.select)},
              {"teacher", o.teacher_path},
              {"model", o.model_path},
              {"onnx", o.onnx_path},
              {"no-ort", o.no_ort},
              {"resume", o.resume_dir},
              {"eval-batch-size", o.eval_batch_size},
              {"latency-batches", o.latency_batches}};
}

const ModelReport* find_model(const RunReport& r, Phase role) {
  for (const ModelReport& m : r.models)
    if (m.role == role) return &m;
  return nullptr;
}

const LatencyRecord* latency_at(const std::vector<LatencyRecord>& records, int batch) {
  for (const LatencyRecord& l : records)
    if (l.batch == batch) return &l;
  return nullptr;
}

// The column heading of a model in the table and its name in the plots.
std::string model_label(Phase role) {
  switch (role) {
    case Phase::Teacher: return "teacher";
    case Phase::Student: return "student (distilled)";
    case Phase::Scratch: return "student (scratch)";
  }
  return "?";
}

// Every batch size any model was timed at by kdtrain (or, with `ort`, by ONNX Runtime), ascending.
std::vector<int> measured_batches(const RunReport& r, bool ort = false) {
  std::set<int> batches;
  for (const ModelReport& m : r.models)
    for (const LatencyRecord& l : ort ? m.ort.latency : m.latency) batches.insert(l.batch);
  return {batches.begin(), batches.end()};
}

// What the comparisons between the models say. Each holds only when the
// models it needs were part of the run (the flags say which).
struct Comparisons {
  bool student_vs_teacher = false;   // a teacher and a distilled student
  bool student_vs_scratch = false;   // a distilled student and the scratch baseline
  struct Speedup {
    int batch;
    double teacher_ms, student_ms, speedup;  // speedup = teacher_ms / student_ms
  };
  std::vector<Speedup> speedups;
  std::vector<Speedup> ort_speedups;  // the same under ONNX Runtime, when both were measured there
  double size_ratio = NAN;         // teacher bytes / student bytes
  double accuracy_gap = NAN;       // teacher test_acc - student test_acc (fraction)
  double distillation_gain = NAN;  // student test_acc - scratch test_acc (fraction)
};

// Teacher / student latency at every batch size both were timed at.
std::vector<Comparisons::Speedup> speedups(const std::vector<LatencyRecord>& teacher,
                                           const std::vector<LatencyRecord>& student) {
  std::vector<Comparisons::Speedup> out;
  for (const LatencyRecord& t : teacher)
    if (const LatencyRecord* s = latency_at(student, t.batch))
      out.push_back({t.batch, t.median_ms, s->median_ms, t.median_ms / s->median_ms});
  return out;
}

Comparisons compare(const RunReport& r) {
  Comparisons c;
  const ModelReport* teacher = find_model(r, Phase::Teacher);
  const ModelReport* student = find_model(r, Phase::Student);
  const ModelReport* scratch = find_model(r, Phase::Scratch);
  c.student_vs_teacher = teacher && student;
  c.student_vs_scratch = student && scratch;
  if (c.student_vs_teacher) {
    c.speedups = speedups(teacher->latency, student->latency);
    c.ort_speedups = speedups(teacher->ort.latency, student->ort.latency);
    c.size_ratio = double(teacher->bytes) / double(student->bytes);
    c.accuracy_gap = teacher->test_acc - student->test_acc;
  }
  if (c.student_vs_scratch) c.distillation_gain = student->test_acc - scratch->test_acc;
  return c;
}

// Which rule chose the selected epochs, in words.
std::string selection_rule(const RunReport& r) {
  if (r.options.select == SelectRule::Last) return "the last of every model (--select last)";
  if (r.val_n == 0) return "the last of every model: --val-size 0 leaves nothing to select on (--select best fell back to last)";
  return "the best validation accuracy of every model, ties to the lower validation loss, then the earlier epoch "
         "(--select best)";
}

json epoch_json(const EpochRecord& e) {
  return json{{"phase", e.phase},
              {"epoch", e.epoch},
              {"train_loss", json_number(e.train_loss)},
              {"train_kl", json_number(e.train_kl)},
              {"val_loss", json_number(e.val_loss)},
              {"val_acc", json_number(e.val_acc)},
              {"seconds", json_number(e.seconds)},
              {"samples_per_s", json_number(e.samples_per_s)}};
}

json latency_json(const LatencyRecord& l) {
  return json{{"batch", l.batch},
              {"median_ms", json_number(l.median_ms)},
              {"p90_ms", json_number(l.p90_ms)},
              {"repeats", l.repeats},
              {"samples_per_s", json_number(l.samples_per_s)}};
}

// The exported model under ONNX Runtime: null when not asked (--no-ort), the
// reason when it could not be measured, else version, threads and timings,
// each with "vs_kdtrain": its median over kdtrain's at that batch (above 1:
// kdtrain is faster; null where kdtrain was not timed at it).
json ort_json(const OrtLatency& o, const std::vector<LatencyRecord>& kdtrain) {
  if (!o.measured) return o.note.empty() ? json(nullptr) : json{{"note", o.note}};
  json latency = json::array();
  for (const LatencyRecord& l : o.latency) {
    json entry = latency_json(l);
    const LatencyRecord* k = latency_at(kdtrain, l.batch);
    entry["vs_kdtrain"] = k && k->median_ms > 0 ? json_number(l.median_ms / k->median_ms) : json(nullptr);
    latency.push_back(entry);
  }
  return json{{"version", o.version}, {"device", "CPU"}, {"threads", o.threads}, {"via", o.via}, {"latency", latency}};
}

json model_json(const ModelReport& m) {
  json curve = json::array(), latency = json::array();
  for (const EpochRecord& e : m.curve) curve.push_back(epoch_json(e));
  for (const LatencyRecord& l : m.latency) latency.push_back(latency_json(l));
  return json{{"role", phase_name(m.role)},
              {"arch", m.arch},
              {"params", m.params},
              {"bytes", m.bytes},
              {"selection", m.selection.empty() ? json(nullptr) : json(m.selection)},
              {"selected_epoch", m.selected_epoch > 0 ? json(m.selected_epoch) : json(nullptr)},
              {"test_acc", json_number(m.test_acc)},
              {"test_errors", m.test_errors},
              {"test_loss", json_number(m.test_loss)},
              {"last_epoch_test_acc", json_number(m.last_epoch_test_acc)},
              {"train_seconds", json_number(m.train_seconds)},
              {"curve", curve},
              {"latency", latency},
              {"onnxruntime", ort_json(m.ort, m.latency)}};
}

json comparisons_json(const Comparisons& c) {
  json out = json::object();
  if (c.student_vs_teacher) {
    const auto speedups_json = [](const std::vector<Comparisons::Speedup>& list) {
      json out = json::array();
      for (const Comparisons::Speedup& s : list)
        out.push_back(json{{"batch", s.batch},
                           {"teacher_median_ms", json_number(s.teacher_ms)},
                           {"student_median_ms", json_number(s.student_ms)},
                           {"speedup", json_number(s.speedup)}});
      return out;
    };
    out["student_vs_teacher"] = json{{"speedup", speedups_json(c.speedups)},
                                     {"speedup_onnxruntime", speedups_json(c.ort_speedups)},
                                     {"size_ratio", json_number(c.size_ratio)},
                                     {"accuracy_gap", json_number(c.accuracy_gap)}};
  }
  if (c.student_vs_scratch) out["distillation_gain"] = json_number(c.distillation_gain);
  return out;
}

// ------------------------------------------------------------ table text
}  // namespace

std::string thousands(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string byte_size(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  if (bytes < 1024 * 1024) return format("%.1f KiB", double(bytes) / 1024);
  return format("%.2f MiB", double(bytes) / (1024.0 * 1024.0));
}

namespace {

std::string percent(double fraction) { return std::isfinite(fraction) ? format("%.2f %%", 100 * fraction) : "n/a"; }

// Milliseconds with about four significant digits and no exponent.
std::string milliseconds(double ms) {
  if (!std::isfinite(ms)) return "n/a";
  if (ms < 0.1) return format("%.4f", ms);
  if (ms < 10) return format("%.3f", ms);
  if (ms < 1000) return format("%.1f", ms);
  return format("%.0f", ms);
}

std::string ratio(double x) { return std::isfinite(x) ? format("%.2fx", x) : "n/a"; }

std::string signed_points(double fraction) {
  return std::isfinite(fraction) ? format("%+.2f points", 100 * fraction) : "n/a";
}

}  // namespace

// Each column as wide as its widest cell.
std::string aligned(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) {
      if (width.size() <= c) width.push_back(0);
      width[c] = std::max(width[c], row[c].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += c == 0 ? row[c] + pad : "   " + pad + row[c];
    }
    out += line + "\n";
  }
  return out;
}

namespace {

// ------------------------------------------------------------ plots
// What distillation bought, in one line for the curves' title.
std::string curves_title(const RunReport& r) {
  const ModelReport* teacher = find_model(r, Phase::Teacher);
  const ModelReport* student = find_model(r, Phase::Student);
  const ModelReport* scratch = find_model(r, Phase::Scratch);
  auto acc = [](const ModelReport* m) { return format("%.2f%%", 100 * m->test_acc); };
  std::string title;
  if (student && scratch)
    title = "distillation: student " + acc(student) + " vs " + acc(scratch) + " from scratch (" +
            signed_points(student->test_acc - scratch->test_acc) + ")";
  else if (student)
    title = "distilled student " + acc(student);
  if (teacher) title += (title.empty() ? "teacher " : ", teacher ") + acc(teacher);
  return title + " test accuracy";
}

// One `plot` command over `file` with a line per role/phase: rows whose first
// column is that name, x = column 2, y = `y_expr`.
std::string plot_per_name(const std::string& file, const std::vector<Phase>& names, const std::string& y_expr) {
  std::string cmd = "plot";
  for (size_t i = 0; i < names.size(); ++i)
    cmd += std::string(i ? "," : "") + " \\\n  " + gnuplot_string(file) + " skip 1 using 2:(strcol(1) eq " +
           gnuplot_string(phase_name(names[i])) + " ? " + y_expr + " : NaN) with linespoints lw 2 pt 7 ps 0.8 title " +
           gnuplot_string(model_label(names[i]));
  return cmd + "\n";
}

bool plottable_latency(const LatencyRecord& l) { return l.median_ms > 0 && std::isfinite(l.median_ms); }

std::string latency_csv(const RunReport& r) {
  std::string out = "model,batch,median_ms,p90_ms,samples_per_s\n";
  char buf[256];
  for (const ModelReport& m : r.models)
    for (const LatencyRecord& l : m.latency) {
      std::snprintf(buf, sizeof buf, "%s,%d,%.9g,%.9g,%.9g\n", phase_name(m.role), l.batch, l.median_ms, l.p90_ms,
                    l.samples_per_s);
      out += buf;
    }
  return out;
}

// Log axes label only powers of ten, which leaves a latency range narrower
// than 100x with one label or none: give it a tic per factor of 2 instead.
std::string latency_y_tics(const RunReport& r) {
  double lo = INFINITY, hi = 0;
  for (const ModelReport& m : r.models)
    for (const LatencyRecord& l : m.latency)
      if (plottable_latency(l)) lo = std::min(lo, l.median_ms), hi = std::max(hi, l.median_ms);
  if (!(hi > 0) || hi / lo >= 100) return "set ytics autofreq\n";
  std::string tics;
  for (int k = int(std::floor(std::log2(lo))); k <= int(std::ceil(std::log2(hi))); ++k)
    tics += (tics.empty() ? "" : ", ") + format("%g", std::ldexp(1.0, k));
  return "set ytics (" + tics + ")\n";
}

// The validation-accuracy panel's title, and a circle around each model's
// selected epoch (--select) when one was selected.
std::string selected_epoch_marks(const RunReport& r) {
  std::string marks;
  for (const ModelReport& m : r.models)
    for (const EpochRecord& e : m.curve)
      if (e.epoch == m.selected_epoch)
        marks += "set label " + gnuplot_string("") + " at " + std::to_string(e.epoch) + ", " + format("%.9g", 100 * e.val_acc) +
                 " point pt 6 ps 2.5 lw 2 lc rgb 'black' front\n";
  return "set title " +
         gnuplot_string(marks.empty() ? "validation accuracy per epoch"
                                      : "validation accuracy per epoch (circled: the epoch each model keeps)") +
         "\n" + marks;
}

// The gnuplot script drawing curves.png from metrics.csv (when any model has
// epochs) and latency.png from latency.csv (when any was timed); run in out_dir.
// The output names are variables so that kdtrain can have gnuplot write
// temporary files and rename them into place.
std::string gnuplot_script(const RunReport& r, const std::vector<Phase>& phases, const std::vector<Phase>& timed_roles) {
  std::string s =
      "# Written by kdtrain; redraw with: gnuplot plots.gp (in this directory)\n"
      "if (!exists('curves_png')) curves_png = 'curves.png'\n"
      "if (!exists('latency_png')) latency_png = 'latency.png'\n"
      "term = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0 ? 'pngcairo' : 'png'\n"
      "set datafile separator ','\n"
      "set grid\n";
  if (!phases.empty()) {
    int max_epoch = 1;
    for (const ModelReport& m : r.models)
      for (const EpochRecord& e : m.curve) max_epoch = std::max(max_epoch, e.epoch);
    s += "set terminal @term size 1400,600 noenhanced\n"
         "set output curves_png\n"
         "set multiplot layout 1,2 title " + gnuplot_string(curves_title(r)) + "\n" +
         (max_epoch <= 20 ? "set xtics 1\n" : "") +  // whole epochs only
         "set autoscale xfix\nset offsets 0.2, 0.2, graph 0.05, graph 0.05\n"
         // Losses fall and accuracies rise, so the keys go where the curves are not.
         "set title 'training loss per epoch (the distilled student''s is its distillation loss)'\n"
         "set xlabel 'epoch'\nset ylabel 'mean training loss'\nset key top right\n" +
         plot_per_name("metrics.csv", phases, "$3") +
         selected_epoch_marks(r) +
         "set ylabel 'validation accuracy (%)'\nset key bottom right\n" +
         plot_per_name("metrics.csv", phases, "100*$6") +
         "unset label\nunset multiplot\nset output\nunset offsets\nset autoscale x\nset xtics autofreq\n";
  }
  if (!timed_roles.empty()) {
    const std::vector<int> batches = measured_batches(r);
    std::string batch_tics;
    for (int batch : batches) batch_tics += (batch_tics.empty() ? "" : ", ") + std::to_string(batch);
    // A little room left and right of the extreme batches on the log axis.
    const std::string x_range = format("[%g:", batches.front() / 1.5) + format("%g]", batches.back() * 1.5);
    s += "set terminal @term size 900,640 noenhanced\n"
         "set output latency_png\n"
         "set title " + gnuplot_string("inference latency, forward only (" + r.device + ")") + "\n"
         "set logscale xy\nset xrange " + x_range + "\nset xtics (" + batch_tics + ")\n"
         "set autoscale yfix\nset offsets 0, 0, graph 0.08, graph 0.08\n" + latency_y_tics(r) +
         "set xlabel 'batch size'\nset ylabel 'median latency (ms)'\nset key top left\n" +
         plot_per_name("latency.csv", timed_roles, "$3") +
         "set output\n";
  }
  return s;
}

// curves.png and latency.png, when there is something to draw. Returns a note
// when they could not be drawn.
std::string draw_plots(const RunReport& r, const fs::path& dir) {
  std::vector<Phase> phases, timed_roles;
  for (const ModelReport& m : r.models) {
    for (const EpochRecord& e : m.curve)
      if (std::find(phases.begin(), phases.end(), e.phase) == phases.end()) phases.push_back(e.phase);
    // Only positive finite latencies can go on a log axis.
    if (std::any_of(m.latency.begin(), m.latency.end(), plottable_latency)) timed_roles.push_back(m.role);
  }
  if (phases.empty() && timed_roles.empty()) return "";
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return kGnuplotMissingNote;

  if (!timed_roles.empty()) write_file_atomic((dir / "latency.csv").string(), latency_csv(r));
  std::vector<PlotPicture> pictures;
  if (!phases.empty()) pictures.push_back({"curves_png", "curves.png"});
  if (!timed_roles.empty()) pictures.push_back({"latency_png", "latency.png"});
  return render_plots(dir.string(), "plots.gp", gnuplot_script(r, phases, timed_roles), pictures);
}

}  // namespace

// '' is a gnuplot single-quoted string's only escape; a line break would end
// the command, so control characters become spaces.
std::string gnuplot_string(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("''") : std::string(1, (unsigned char)ch < 0x20 ? ' ' : ch);
  return out + "'";
}

std::string render_plots(const std::string& dir, const std::string& script_name, const std::string& script,
                         const std::vector<PlotPicture>& pictures) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return kGnuplotMissingNote;
  const std::string script_path = (fs::path(dir) / script_name).string();
  write_file_atomic(script_path, script);
  const std::string tmp_suffix = ".tmp." + std::to_string(::getpid());
  std::string names;
  for (const PlotPicture& p : pictures) names += p.variable + "=" + gnuplot_string(p.file + tmp_suffix) + "; ";
  auto remove_temporaries = [&] {
    std::error_code ec;
    for (const PlotPicture& p : pictures) fs::remove(fs::path(dir) / (p.file + tmp_suffix), ec);
  };

  std::string output;
  const int status =
      run_shell("cd " + shell_quote(dir) + " && gnuplot -e " + shell_quote(names) + " " + shell_quote(script_name), output);
  if (status != 0) {
    remove_temporaries();
    return "plots skipped: gnuplot failed (exit " + std::to_string(status) + "): " + last_line(output) + "; see " +
           script_path;
  }
  for (const PlotPicture& p : pictures) {
    std::error_code ec;
    const fs::path tmp = fs::path(dir) / (p.file + tmp_suffix);
    if (fs::file_size(tmp, ec) == 0 || ec) {
      remove_temporaries();
      return "plots skipped: gnuplot wrote no " + p.file + " (" + last_line(output) + "); see " + script_path;
    }
    fs::rename(tmp, fs::path(dir) / p.file, ec);
    if (ec) {
      remove_temporaries();
      return "plots skipped: cannot rename " + tmp.string() + " to " + p.file + ": " + ec.message();
    }
  }
  return "";
}

std::string metrics_csv(const RunReport& r) {
  std::string out = "phase,epoch,train_loss,train_kl,val_loss,val_acc,seconds,samples_per_s\n";
  for (const ModelReport& m : r.models)
    for (const EpochRecord& e : m.curve) out += metrics_csv_row(e);
  return out;
}

std::string summary_json(const RunReport& r) {
  json models = json::array(), phases = json::array();
  for (const ModelReport& m : r.models) models.push_back(model_json(m));
  for (const PhaseTime& p : r.phases) phases.push_back(json{{"phase", p.phase}, {"seconds", json_number(p.seconds)}});
  const json summary{{"started_at", r.started_at},
                     {"total_seconds", json_number(r.total_seconds)},
                     {"config", config_json(r.options)},
                     {"device", r.device},
                     {"versions", r.versions},
                     {"batch_sizes_used", json{{"batch-size", r.batch_size_used},
                                               {"eval-batch-size", r.eval_batch_size_used},
                                               {"latency-batches", r.latency_batches_used}}},
                     {"data", json{{"dir", r.data_dir},
                                   {"format", r.data_format},
                                   {"input", r.input},
                                   {"class_names", r.class_names},
                                   {"normalize", r.normalization},
                                   {"train", r.train_n},
                                   {"val", r.val_n},
                                   {"test", r.test_n},
                                   {"classes", r.num_classes}}},
                     {"selection", selection_rule(r)},
                     {"models", models},
                     {"comparisons", comparisons_json(compare(r))},
                     {"phases", phases}};
  // replace: a path or device string with invalid UTF-8 must not make the report unwritable.
  return summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// "--batch-size 100000 -> 50, --eval-batch-size 1000 -> 100" for each flag
// whose value was larger than the data it batches; empty when none was.
std::string capped_batches(const RunReport& r) {
  const Options& o = r.options;
  std::string out;
  auto note = [&](const std::string& flag, int asked, int used) {
    if (used > 0 && used != asked) out += (out.empty() ? "" : ", ") + flag + " " + thousands(asked) + " -> " + thousands(used);
  };
  note("--batch-size", o.batch_size, r.batch_size_used);
  note("--eval-batch-size", o.eval_batch_size, r.eval_batch_size_used);
  const std::vector<int>& timed = r.latency_batches_used;
  for (int asked : o.latency_batches)  // a batch larger than the test split is timed at all of it
    if (asked > r.test_n && std::find(timed.begin(), timed.end(), int(r.test_n)) != timed.end())
      note("--latency-batches", asked, int(r.test_n));
  return out;
}

std::string report_table(const RunReport& r) {
  if (r.models.empty()) return "";
  using Row = std::vector<std::string>;
  auto row = [&](const std::string& label, auto cell) {
    Row out{label};
    for (const ModelReport& m : r.models) out.push_back(cell(m));
    return out;
  };
  std::vector<Row> rows;
  rows.push_back(row("", [](const ModelReport& m) { return model_label(m.role); }));
  rows.push_back(row("params", [](const ModelReport& m) { return thousands(m.params); }));
  rows.push_back(row("size (fp32)", [](const ModelReport& m) { return byte_size(m.bytes); }));
  auto was_trained = [](const ModelReport& m) { return !m.curve.empty() || m.train_seconds > 0; };
  const bool any_trained = std::any_of(r.models.begin(), r.models.end(), was_trained);
  if (any_trained)
    rows.push_back(row("selected epoch", [](const ModelReport& m) {
      if (m.selected_epoch == 0) return std::string("-");
      return std::to_string(m.selected_epoch) + " of " + std::to_string(m.curve.back().epoch) + " (" + m.selection +
             ")";
    }));
  rows.push_back(row("test accuracy", [](const ModelReport& m) { return percent(m.test_acc); }));
  rows.push_back(row("test errors", [](const ModelReport& m) { return thousands(m.test_errors); }));
  if (any_trained)
    rows.push_back(row("test accuracy, last epoch", [&](const ModelReport& m) {
      return was_trained(m) ? percent(m.last_epoch_test_acc) : std::string("-");
    }));
  if (any_trained)
    rows.push_back(row("training time", [&](const ModelReport& m) {
      return was_trained(m) ? format("%.1f s", m.train_seconds) : std::string("-");
    }));
  for (int batch : measured_batches(r)) {
    rows.push_back(row("latency b=" + std::to_string(batch) + " (ms, median)", [&](const ModelReport& m) {
      const LatencyRecord* l = latency_at(m.latency, batch);
      return l ? milliseconds(l->median_ms) : std::string("-");
    }));
    rows.push_back(row("throughput b=" + std::to_string(batch) + " (samples/s)", [&](const ModelReport& m) {
      const LatencyRecord* l = latency_at(m.latency, batch);
      if (!l) return std::string("-");
      return std::isfinite(l->samples_per_s) ? thousands(std::llround(l->samples_per_s)) : std::string("n/a");
    }));
  }

  for (int batch : measured_batches(r, /*ort=*/true)) {
    rows.push_back(row("ONNX Runtime b=" + std::to_string(batch) + " (ms, median)", [&](const ModelReport& m) {
      const LatencyRecord* l = latency_at(m.ort.latency, batch);
      return l ? milliseconds(l->median_ms) : std::string("-");
    }));
    // Above 1: kdtrain is faster than ONNX Runtime on the same model, input and threads.
    rows.push_back(row("ONNX Runtime / kdtrain b=" + std::to_string(batch), [&](const ModelReport& m) {
      const LatencyRecord* o = latency_at(m.ort.latency, batch);
      const LatencyRecord* k = latency_at(m.latency, batch);
      return o && k && k->median_ms > 0 ? ratio(o->median_ms / k->median_ms) : std::string("-");
    }));
  }

  std::vector<std::string> verdicts;
  const Comparisons c = compare(r);
  const ModelReport* teacher = find_model(r, Phase::Teacher);
  const ModelReport* student = find_model(r, Phase::Student);
  const ModelReport* scratch = find_model(r, Phase::Scratch);
  if (c.student_vs_teacher) {
    std::string speedups;
    for (const Comparisons::Speedup& s : c.speedups)
      speedups += (speedups.empty() ? "" : ", ") + ratio(s.speedup) + " at batch " + std::to_string(s.batch);
    if (!speedups.empty()) verdicts.push_back("speed-up (teacher / student latency): " + speedups);
    std::string ort_speedups;
    for (const Comparisons::Speedup& s : c.ort_speedups)
      ort_speedups += (ort_speedups.empty() ? "" : ", ") + ratio(s.speedup) + " at batch " + std::to_string(s.batch);
    if (!ort_speedups.empty()) verdicts.push_back("speed-up under ONNX Runtime: " + ort_speedups);
    verdicts.push_back("size ratio (teacher / student): " + ratio(c.size_ratio) + " (" + byte_size(teacher->bytes) +
                       " vs " + byte_size(student->bytes) + ")");
    verdicts.push_back("accuracy gap (teacher - student): " + signed_points(c.accuracy_gap) + " (" +
                       percent(teacher->test_acc) + " vs " + percent(student->test_acc) + ")");
  }
  if (c.student_vs_scratch)
    verdicts.push_back("distillation gain (distilled - scratch student): " + signed_points(c.distillation_gain) +
                       " (" + percent(student->test_acc) + " vs " + percent(scratch->test_acc) + ")");

  // Where the ONNX Runtime numbers come from, or why there are none (one line per distinct note).
  std::set<std::string> ort_lines;
  for (const ModelReport& m : r.models) {
    if (m.ort.measured)
      ort_lines.insert(ort_description(m.ort));
    else if (!m.ort.note.empty())
      ort_lines.insert(m.ort.note);
  }
  verdicts.insert(verdicts.end(), ort_lines.begin(), ort_lines.end());

  std::string out = "results on the test split (" + thousands(r.test_n) + " images)\n" + aligned(rows);
  if (!r.input.empty()) {
    out += "\ndata: " + r.data_format + ", " + r.input + " images, " + std::to_string(r.num_classes) + " classes";
    if (!r.class_names.empty()) {
      std::string names;
      for (const std::string& n : r.class_names) names += (names.empty() ? " (" : ", ") + n;
      out += names + ")";
    }
    out += "; normalisation mean/std " + r.normalization + "\n";
  }
  if (!verdicts.empty()) out += "\n";
  for (const std::string& v : verdicts) out += v + "\n";
  if (any_trained) out += "selected epoch: " + selection_rule(r) + "\n";
  if (any_trained) out += recipe_text(r.options, student != nullptr || scratch != nullptr) + "\n";
  const std::string capped = capped_batches(r);
  if (!capped.empty()) out += "batch sizes capped at the data: " + capped + "\n";
  if (!r.phases.empty()) {
    std::vector<std::vector<std::string>> phase_rows = {{"phase", "wall time"}};
    for (const PhaseTime& p : r.phases) phase_rows.push_back({p.phase, format("%.2f s", p.seconds)});
    out += "\n" + aligned(phase_rows);
  }
  return out;
}

std::string write_report_files(const RunReport& r, const std::string& out_dir) {
  const fs::path dir(out_dir);
  write_file_atomic((dir / "metrics.csv").string(), metrics_csv(r));
  write_file_atomic((dir / "summary.json").string(), summary_json(r));
  return draw_plots(r, dir);
}

}  // namespace kd
