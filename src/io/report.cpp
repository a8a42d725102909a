// The reading of a RunReport that summary.json, the report table and the
// plots share (report_parts.h), and write_report_files (kd/report.h).
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "kd/json_text.h"
#include "kd/report.h"
#include "kd/safetensors.h"  // write_file_atomic
#include "report_parts.h"

namespace fs = std::filesystem;

namespace kd {

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

std::string model_label(Phase role) {
  switch (role) {
    case Phase::Teacher: return "teacher";
    case Phase::Student: return "student (distilled)";
    case Phase::Scratch: return "student (scratch)";
  }
  return "?";
}

std::vector<int> measured_batches(const RunReport& r, bool ort) {
  std::set<int> batches;
  for (const ModelReport& m : r.models)
    for (const LatencyRecord& l : ort ? m.ort.latency : m.latency) batches.insert(l.batch);
  return {batches.begin(), batches.end()};
}

namespace {

// Teacher / student latency at every batch size both were timed at.
std::vector<Comparisons::Speedup> speedups(const std::vector<LatencyRecord>& teacher,
                                           const std::vector<LatencyRecord>& student) {
  std::vector<Comparisons::Speedup> out;
  for (const LatencyRecord& t : teacher)
    if (const LatencyRecord* s = latency_at(student, t.batch))
      out.push_back({t.batch, t.median_ms, s->median_ms, t.median_ms / s->median_ms});
  return out;
}

}  // namespace

Comparisons compare_models(const RunReport& r) {
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

std::string selection_rule(const RunReport& r) {
  if (r.options.select == SelectRule::Last) return "the last of every model (--select last)";
  if (r.val_n == 0)
    return "the last of every model: --val-size 0 leaves nothing to select on (--select best fell back to last)";
  return "the best validation accuracy of every model, ties to the lower validation loss, then the earlier epoch "
         "(--select best)";
}

std::string signed_points(double fraction) {
  return std::isfinite(fraction) ? format("%+.2f points", 100 * fraction) : "n/a";
}

std::string write_report_files(const RunReport& r, const std::string& out_dir) {
  const fs::path dir(out_dir);
  write_file_atomic((dir / "metrics.csv").string(), metrics_csv(r));
  write_file_atomic((dir / "summary.json").string(), summary_json(r));
  return draw_plots(r, out_dir);
}

}  // namespace kd
