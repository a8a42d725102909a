// kd/report.h: what a run measured, and the files and table made from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/config.h"
#include "kd/engine.h"  // LatencyRecord
#include "kd/phase.h"   // Phase, EpochRecord

namespace kd {

// ONNX Runtime's CPU latency of the model exported to ONNX (kd/onnx_runtime.h),
// measured in the same run beside kdtrain's own, or why there is none.
struct OrtLatency {
  bool measured = false;
  std::string note;     // !measured: "ONNX Runtime not installed (...)", "ONNX Runtime failed: ..."; "" = not asked
  std::string version;  // ONNX Runtime version, e.g. "1.23.2"
  int threads = 0;      // intra-op threads asked for; 0 = ONNX Runtime's default (one per physical core)
  std::string via;      // "in-process" (its C API in kdtrain's process) or "node" (the fallback runner)
  std::vector<LatencyRecord> latency;  // one per batch size
};

struct ModelReport {
  Phase role = Phase::Teacher;
  std::string arch;
  int64_t params = 0;
  int64_t bytes = 0;  // params * 4 (fp32)
  std::vector<EpochRecord> curve;
  // The epoch whose parameters were saved, tested and timed (--select), and
  // by which rule: "best" (validation accuracy) or "last"; 0 and "" for a
  // model not trained in this run (distill's teacher).
  int selected_epoch = 0;
  std::string selection;
  double test_acc = 0;  // of the selected epoch
  int64_t test_errors = 0;
  double test_loss = 0;
  double last_epoch_test_acc = 0;  // of the last epoch (== test_acc when it is the selected one)
  double train_seconds = 0;
  std::vector<LatencyRecord> latency;
  OrtLatency ort;  // the exported model under ONNX Runtime (CPU)
};

struct PhaseTime {
  std::string phase;  // "load data", "teacher training", "soft targets", ...
  double seconds = 0;
};

struct RunReport {
  Options options;
  std::string device;    // "CPU (2 threads, <model name>)" or the CUDA device description
  std::string versions;  // "kdtrain 0.1, CUDA runtime 13.0, cuDNN 9.x" etc.
  std::string data_dir;
  std::string data_format;               // "IDX", ".npy", "image folder"
  std::string input;                     // "28x28", "3x32x32"
  std::vector<std::string> class_names;  // index = label; empty unless the format names classes
  std::string normalization;             // mean/std in --normalize syntax
  int64_t train_n = 0, val_n = 0, test_n = 0;
  int num_classes = 0;
  // The batch sizes used: the flags' values capped at the data they batch
  // (a training batch at the training split, and so on).
  int batch_size_used = 0, eval_batch_size_used = 0;
  std::vector<int> latency_batches_used;
  std::vector<ModelReport> models;  // teacher first, then student, then scratch if run
  std::vector<PhaseTime> phases;
  double total_seconds = 0;
  std::string started_at;  // ISO-8601 UTC
};

// metrics.csv: phase,epoch,train_loss,train_kl,val_loss,val_acc,seconds,samples_per_s
std::string metrics_csv(const RunReport& r);
// summary.json: config, device, versions, per-model results, latency table.
std::string summary_json(const RunReport& r);
// The human report printed at the end of a run (models side by side, speed-up,
// size ratio, what distillation added over the scratch baseline).
std::string report_table(const RunReport& r);
// Writes metrics.csv and summary.json atomically into out_dir, then tries to
// draw curves.png and latency.png with gnuplot; returns a note when plots were
// skipped (gnuplot missing) or an empty string.
std::string write_report_files(const RunReport& r, const std::string& out_dir);

// Table text: 1234567 -> "1,234,567"; bytes -> "918.5 KiB"; rows of cells
// aligned in columns (the first left-aligned, the others right-aligned).
std::string thousands(int64_t v);
std::string byte_size(int64_t bytes);
std::string aligned(const std::vector<std::vector<std::string>>& rows);

// A picture a gnuplot script draws: the script sets its output to the
// variable `variable`, which render_plots points at a temporary file.
struct PlotPicture {
  std::string variable;  // e.g. "curves_png"
  std::string file;      // e.g. "curves.png", in the plot directory
};
// Writes `script` to dir/script_name and runs gnuplot on it in `dir`, drawing
// each picture into a temporary file renamed into place (a reader never sees
// half a PNG). Returns a note when gnuplot is missing or failed, else "".
std::string render_plots(const std::string& dir, const std::string& script_name, const std::string& script,
                         const std::vector<PlotPicture>& pictures);
// `s` as a gnuplot single-quoted string literal.
std::string gnuplot_string(const std::string& s);

}  // namespace kd
