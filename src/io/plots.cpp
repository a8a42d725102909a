// curves.png and latency.png drawn by gnuplot from metrics.csv and
// latency.csv, and the gnuplot runner the sweep's pareto.png shares (kd/report.h).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kd/json_text.h"
#include "kd/process.h"
#include "kd/report.h"
#include "kd/safetensors.h"  // write_file_atomic
#include "report_parts.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

constexpr const char* kGnuplotMissingNote = "plots skipped: gnuplot not found (apt-get install gnuplot-nox)";

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
  else if (student) title = "distilled student " + acc(student);
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
        marks += "set label " + gnuplot_string("") + " at " + std::to_string(e.epoch) + ", " +
                 format("%.9g", 100 * e.val_acc) + " point pt 6 ps 2.5 lw 2 lc rgb 'black' front\n";
  return "set title " +
         gnuplot_string(marks.empty() ? "validation accuracy per epoch"
                                      : "validation accuracy per epoch (circled: the epoch each model keeps)") +
         "\n" + marks;
}

// The gnuplot script drawing curves.png from metrics.csv (when any model has
// epochs) and latency.png from latency.csv (when any was timed); run in out_dir.
// The output names are variables so that kdtrain can have gnuplot write
// temporary files and rename them into place.
std::string gnuplot_script(const RunReport& r, const std::vector<Phase>& phases,
                           const std::vector<Phase>& timed_roles) {
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
         "set multiplot layout 1,2 title " +
         gnuplot_string(curves_title(r)) + "\n" + (max_epoch <= 20 ? "set xtics 1\n" : "") +  // whole epochs only
         "set autoscale xfix\nset offsets 0.2, 0.2, graph 0.05, graph 0.05\n"
         // Losses fall and accuracies rise, so the keys go where the curves are not.
         "set title 'training loss per epoch (the distilled student''s is its distillation loss)'\n"
         "set xlabel 'epoch'\nset ylabel 'mean training loss'\nset key top right\n" +
         plot_per_name("metrics.csv", phases, "$3") + selected_epoch_marks(r) +
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
         "set title " +
         gnuplot_string("inference latency, forward only (" + r.device + ")") +
         "\n"
         "set logscale xy\nset xrange " +
         x_range + "\nset xtics (" + batch_tics +
         ")\n"
         "set autoscale yfix\nset offsets 0, 0, graph 0.08, graph 0.08\n" +
         latency_y_tics(r) + "set xlabel 'batch size'\nset ylabel 'median latency (ms)'\nset key top left\n" +
         plot_per_name("latency.csv", timed_roles, "$3") + "set output\n";
  }
  return s;
}

}  // namespace

std::string draw_plots(const RunReport& r, const std::string& out_dir) {
  const fs::path dir(out_dir);
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
  const int status = run_shell(
      "cd " + shell_quote(dir) + " && gnuplot -e " + shell_quote(names) + " " + shell_quote(script_name), output);
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

}  // namespace kd
