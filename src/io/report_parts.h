// src/io/report_parts.h: what the summary, the table and the plots read alike
// from a RunReport (report.cpp): the models by role and their labels, the
// batch sizes timed, the comparisons between the models, the selection rule;
// and the plots' entry point, which write_report_files calls (plots.cpp).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "kd/report.h"

namespace kd {

// The model of `role` in the run, or null when the run had none.
const ModelReport* find_model(const RunReport& r, Phase role);
// The record of `batch` in `records`, or null.
const LatencyRecord* latency_at(const std::vector<LatencyRecord>& records, int batch);
// The column heading of a model in the table and its name in the plots.
std::string model_label(Phase role);
// Every batch size any model was timed at by kdtrain (or, with `ort`, by ONNX Runtime), ascending.
std::vector<int> measured_batches(const RunReport& r, bool ort = false);

// What the comparisons between the models say. Each holds only when the
// models it needs were part of the run (the flags say which).
struct Comparisons {
  bool student_vs_teacher = false;  // a teacher and a distilled student
  bool student_vs_scratch = false;  // a distilled student and the scratch baseline
  struct Speedup {
    int batch;
    double teacher_ms, student_ms, speedup;  // speedup = teacher_ms / student_ms
  };
  std::vector<Speedup> speedups;
  std::vector<Speedup> ort_speedups;  // the same under ONNX Runtime, when both were measured there
  double size_ratio = NAN;            // teacher bytes / student bytes
  double accuracy_gap = NAN;          // teacher test_acc - student test_acc (fraction)
  double distillation_gain = NAN;     // student test_acc - scratch test_acc (fraction)
};

Comparisons compare_models(const RunReport& r);

// Which rule chose the selected epochs, in words.
std::string selection_rule(const RunReport& r);
// A difference of fractions in percentage points, "+1.70 points"; "n/a" when not finite.
std::string signed_points(double fraction);

// curves.png and latency.png, when there is something to draw. Returns a note
// when they could not be drawn.
std::string draw_plots(const RunReport& r, const std::string& dir);

}  // namespace kd
