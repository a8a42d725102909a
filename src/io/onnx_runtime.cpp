// Exported models under ONNX Runtime through node + scripts/ort_run.js (see
// kd/onnx_runtime.h). Every exchange goes through files in a private
// temporary directory: the model, the runner's JSON or raw logits.
#include "kd/onnx_runtime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "kd/error.h"
#include "kd/onnx_export.h"
#include "kd/process.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

constexpr const char* kNotInstalled = "ONNX Runtime not installed";

// A fresh private directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "kdtrain-ort-XXXXXX").string();
    if (!mkdtemp(templ.data())) fail("cannot create a temporary directory " + templ + " for ONNX Runtime");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// What one run of the runner gave: empty `failure` when it succeeded.
struct RunnerResult {
  std::string failure;  // "ONNX Runtime not installed (...)" or "ONNX Runtime failed: ..."
  std::string output;
};

// Runs `node <runner> args...`, mapping the runner's exit statuses (see
// scripts/ort_run.js) and the shell's 127 (node missing) to a one-line reason.
RunnerResult run_runner(const std::vector<std::string>& args) {
  RunnerResult r;
  const std::string runner = ort_runner_path();
  if (!fs::is_regular_file(runner)) {
    r.failure = std::string(kNotInstalled) + " (no runner script at " + runner + "; set KD_ORT_RUNNER to scripts/ort_run.js)";
    return r;
  }
  std::string command = "node " + shell_quote(runner);
  for (const std::string& a : args) command += " " + shell_quote(a);
  const int status = run_shell(command + " </dev/null", r.output);
  std::string why = last_line(r.output);
  if (why.rfind("ort_run.js: ", 0) == 0) why.erase(0, 12);
  if (status == 127) r.failure = std::string(kNotInstalled) + " (node not found on PATH; apt-get install nodejs)";
  else if (status == 3) r.failure = std::string(kNotInstalled) + " (" + why + ")";
  else if (status != 0) r.failure = "ONNX Runtime failed (exit " + std::to_string(status) + "): " + why;
  return r;
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string join(const std::vector<int>& v) {
  std::string out;
  for (int x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

// The runner's latency JSON -> OrtLatency, checking that every batch asked for came back.
OrtLatency parse_latency_json(const std::string& text, const OrtLatencyOptions& options) {
  OrtLatency out;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    out.version = j.at("onnxruntime").get<std::string>();
    out.threads = options.threads;
    for (const nlohmann::json& entry : j.at("latency"))
      out.latency.push_back(latency_stats(entry.at("batch").get<int>(), entry.at("ms").get<std::vector<double>>()));
  } catch (const std::exception& e) {
    out.latency.clear();
    out.note = std::string("ONNX Runtime failed: the runner's result is malformed: ") + e.what();
    return out;
  }
  if (out.latency.size() != options.batches.size()) {
    out.note = "ONNX Runtime failed: the runner timed " + std::to_string(out.latency.size()) + " batch sizes of " +
               std::to_string(options.batches.size());
    out.latency.clear();
    return out;
  }
  out.measured = true;
  return out;
}

}  // namespace

std::string ort_runner_path() {
  const char* env = std::getenv("KD_ORT_RUNNER");
  return env && *env ? env : KD_ORT_RUNNER_DEFAULT;
}

OrtLatency ort_latency_of_file(const std::string& onnx_path, const Shape& input, const OrtLatencyOptions& options) {
  if (options.batches.empty()) fail("ort_latency: no batch sizes to time");
  const TempDir tmp;
  const std::string json_path = tmp.file("latency.json");
  const RunnerResult r = run_runner({"latency", onnx_path, "--shape",
                                     std::to_string(input.c) + "x" + std::to_string(input.h) + "x" +
                                         std::to_string(input.w),
                                     "--batches", join(options.batches), "--json", json_path, "--threads",
                                     std::to_string(options.threads), "--repeats",
                                     std::to_string(options.max_repeats), "--budget-ms",
                                     std::to_string(options.budget_ms)});
  if (!r.failure.empty()) {
    OrtLatency out;
    out.note = r.failure;
    return out;
  }
  return parse_latency_json(read_file_text(json_path), options);
}

OrtLatency ort_latency(const Arch& arch, const std::vector<float>& params, const OrtLatencyOptions& options) {
  const TempDir tmp;
  const std::string model = tmp.file("model.onnx");
  // Timing only: the normalisation's values do not change the cost.
  export_onnx(model, arch, params, Normalization{}, {});
  return ort_latency_of_file(model, arch.input, options);
}

std::string ort_version(std::string& why_not) {
  const RunnerResult r = run_runner({"version"});
  why_not = r.failure;
  return r.failure.empty() ? last_line(r.output) : "";
}

std::string ort_latency_text(const OrtLatency& ort) {
  if (!ort.measured) return ort.note + "\n";
  std::string out = "ONNX Runtime " + ort.version + " on the CPU (" +
                    (ort.threads > 0 ? std::to_string(ort.threads) + " threads" : std::string("its default threads")) +
                    "), the exported ONNX model timed from node\n";
  char line[128];
  std::snprintf(line, sizeof line, "%8s %12s %12s %14s\n", "batch", "median ms", "p90 ms", "samples/s");
  out += line;
  for (const LatencyRecord& l : ort.latency) {
    std::snprintf(line, sizeof line, "%8d %12.4f %12.4f %14.0f\n", l.batch, l.median_ms, l.p90_ms, l.samples_per_s);
    out += line;
  }
  return out;
}

std::vector<float> ort_infer_images(const std::string& onnx_path, const std::string& images, int64_t limit,
                                    int classes) {
  const TempDir tmp;
  const std::string out = tmp.file("logits.f32");
  std::vector<std::string> args = {"infer", onnx_path, images, out};
  if (limit > 0) args.insert(args.end(), {"--limit", std::to_string(limit)});
  const RunnerResult r = run_runner(args);
  if (!r.failure.empty()) fail(onnx_path + ": " + r.failure);
  const std::string bytes = read_file_text(out);
  const size_t row = size_t(classes) * sizeof(float);
  if (bytes.empty() || bytes.size() % row != 0)
    fail(onnx_path + ": ONNX Runtime wrote " + std::to_string(bytes.size()) + " bytes of logits, not a multiple of " +
         std::to_string(classes) + " floats");
  std::vector<float> logits(bytes.size() / sizeof(float));
  std::memcpy(logits.data(), bytes.data(), bytes.size());
  return logits;
}

}  // namespace kd
