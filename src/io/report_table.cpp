// The report table printed at the end of a run, and its text helpers (kd/report.h).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "kd/json_text.h"
#include "kd/onnx_runtime.h"
#include "kd/report.h"
#include "report_parts.h"

namespace kd {

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

// "--batch-size 100000 -> 50, --eval-batch-size 1000 -> 100" for each flag
// whose value was larger than the data it batches; empty when none was.
std::string capped_batches(const RunReport& r) {
  const Options& o = r.options;
  std::string out;
  auto note = [&](const std::string& flag, int asked, int used) {
    if (used > 0 && used != asked)
      out += (out.empty() ? "" : ", ") + flag + " " + thousands(asked) + " -> " + thousands(used);
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
  const Comparisons c = compare_models(r);
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
    verdicts.push_back("distillation gain (distilled - scratch student): " + signed_points(c.distillation_gain) + " (" +
                       percent(student->test_acc) + " vs " + percent(scratch->test_acc) + ")");

  // Where the ONNX Runtime numbers come from, or why there are none (one line per distinct note).
  std::set<std::string> ort_lines;
  for (const ModelReport& m : r.models) {
    if (m.ort.measured) ort_lines.insert(ort_description(m.ort));
    else if (!m.ort.note.empty()) ort_lines.insert(m.ort.note);
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

}  // namespace kd
