// Exported models under ONNX Runtime (see kd/onnx_runtime.h): in this process
// through ort_inprocess.h, else through node + scripts/ort_run.js. Every
// exchange with node goes through files in a private temporary directory: the
// model, the runner's JSON or raw logits.
#include "kd/onnx_runtime.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "kd/data.h"
#include "kd/error.h"
#include "kd/npy.h"
#include "kd/onnx_export.h"
#include "kd/process.h"
#include "ort_inprocess.h"

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
    r.failure =
        std::string(kNotInstalled) + " (no runner script at " + runner + "; set KD_ORT_RUNNER to scripts/ort_run.js)";
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
    out.via = "node";
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

namespace {

OrtLatency node_latency(const std::string& onnx_path, const Shape& input, const OrtLatencyOptions& options) {
  const TempDir tmp;
  const std::string json_path = tmp.file("latency.json");
  const RunnerResult r =
      run_runner({"latency", onnx_path, "--shape",
                  std::to_string(input.c) + "x" + std::to_string(input.h) + "x" + std::to_string(input.w), "--batches",
                  join(options.batches), "--json", json_path, "--threads", std::to_string(options.threads), "--repeats",
                  std::to_string(options.max_repeats), "--budget-ms", std::to_string(options.budget_ms)});
  if (!r.failure.empty()) {
    OrtLatency out;
    out.note = r.failure;
    return out;
  }
  return parse_latency_json(read_file_text(json_path), options);
}

// x (b, C, H, W) for a latency batch of b: options.input's rows 0..b-1,
// repeated when it has fewer, or the runner's pixel-like pattern.
std::vector<float> latency_input(const OrtLatencyOptions& options, int64_t pixels, int b) {
  std::vector<float> x(size_t(b) * pixels);
  const size_t have = options.input.size() - options.input.size() % size_t(pixels);
  for (size_t i = 0; i < x.size(); ++i) x[i] = have > 0 ? options.input[i % have] : float((i * 37) % 256);
  return x;
}

OrtLatency inprocess_latency(const std::string& onnx_path, const Shape& input, int classes,
                             const OrtLatencyOptions& options) {
  OrtLatency out;
  std::string why_not;
  out.version = ort_inprocess_version(why_not);
  out.threads = options.threads;
  out.via = "in-process";
  try {
    const OrtInProcessModel model(onnx_path, input, classes, options.threads);
    for (const int b : options.batches) {
      std::vector<float> x = latency_input(options, input.size(), b), logits(size_t(b) * classes);
      const int slice = options.slice > 0 ? std::min(options.slice, b) : b;
      std::vector<OrtInProcessModel::Call> calls;
      for (int begin = 0; begin < b; begin += slice)
        calls.push_back(model.prepare(x.data() + size_t(begin) * input.size(), logits.data() + size_t(begin) * classes,
                                      std::min(slice, b - begin)));
      out.latency.push_back(time_forwards(b, options.max_repeats, [&] {
        for (OrtInProcessModel::Call& call : calls) call.run();
      }));
    }
  } catch (const Error& e) {
    out.latency.clear();
    out.note = e.what();
    return out;
  }
  out.measured = true;
  return out;
}

// "ONNX Runtime not installed (in-process: <why>; node: <why>)" from the two reasons.
std::string not_installed_anywhere(const std::string& why_inprocess, const std::string& node_failure) {
  const std::string prefix = std::string(kNotInstalled) + " (";
  if (node_failure.rfind(prefix, 0) != 0) return node_failure;  // node ran and failed: that is the news
  return prefix + "in-process: " + why_inprocess + "; node: " + node_failure.substr(prefix.size());
}

}  // namespace

OrtLatency ort_latency(const Arch& arch, const std::vector<float>& params, const OrtLatencyOptions& options) {
  if (options.batches.empty()) fail("ort_latency: no batch sizes to time");
  const TempDir tmp;
  const std::string model = tmp.file("model.onnx");
  // Timing only: the normalisation's values do not change the cost.
  export_onnx(model, arch, params, Normalization{}, {});
  std::string why_not;
  if (!ort_inprocess_version(why_not).empty())
    return inprocess_latency(model, arch.input, int(arch.output.size()), options);
  OrtLatency out = node_latency(model, arch.input, options);
  if (!out.measured) out.note = not_installed_anywhere(why_not, out.note);
  return out;
}

std::string ort_version(std::string& why_not) {
  std::string why_inprocess;
  if (std::string version = ort_inprocess_version(why_inprocess); !version.empty()) return version;
  const RunnerResult r = run_runner({"version"});
  why_not = r.failure.empty() ? "" : not_installed_anywhere(why_inprocess, r.failure);
  return r.failure.empty() ? last_line(r.output) : "";
}

std::string ort_description(const OrtLatency& ort) {
  return "ONNX Runtime " + ort.version + " (CPU, " +
         (ort.threads > 0 ? std::to_string(ort.threads) + (ort.threads == 1 ? " thread" : " threads")
                          : std::string("its default threads")) +
         "): the exported ONNX model, forward only, " +
         (ort.via == "in-process" ? "timed in this process through its C API" : "timed from node (fallback)");
}

std::string latency_side_by_side_text(const std::vector<LatencyRecord>& kdtrain, const OrtLatency& ort) {
  char line[160];
  std::snprintf(line, sizeof line, "%8s %12s %12s %12s %12s %14s\n", "batch", "kdtrain ms", "p90 ms", "ORT ms",
                "p90 ms", "ORT / kdtrain");
  std::string out = line;
  for (const LatencyRecord& k : kdtrain) {
    const auto o = std::find_if(ort.latency.begin(), ort.latency.end(),
                                [&](const LatencyRecord& l) { return l.batch == k.batch; });
    if (o == ort.latency.end())
      std::snprintf(line, sizeof line, "%8d %12.4f %12.4f %12s %12s %14s\n", k.batch, k.median_ms, k.p90_ms, "-", "-",
                    "-");
    else
      std::snprintf(line, sizeof line, "%8d %12.4f %12.4f %12.4f %12.4f %13.2fx\n", k.batch, k.median_ms, k.p90_ms,
                    o->median_ms, o->p90_ms, o->median_ms / k.median_ms);
    out += line;
  }
  if (ort.measured) return out + ort_description(ort) + "\n";
  return out + (ort.note.empty() ? "" : ort.note + "\n");
}

std::vector<float> ort_infer_images(const std::string& onnx_path, const std::string& images, int64_t limit,
                                    int classes) {
  std::string why_not;
  if (!ort_inprocess_version(why_not).empty()) {
    const bool npy = images.size() >= 4 && images.compare(images.size() - 4, 4, ".npy") == 0;
    const std::vector<uint8_t> bytes = read_file_maybe_gzip(images);
    const Dataset data = npy ? parse_npy_images(bytes, false, images) : parse_idx_images(bytes, images);
    const int64_t n = limit > 0 ? std::min(limit, data.n) : data.n;
    const Shape input{data.c, data.h, data.w};
    const OrtInProcessModel model(onnx_path, input, classes, 0);
    std::vector<float> x(size_t(n) * input.size()), logits(size_t(n) * classes);
    std::copy_n(data.images.data(), x.size(), x.begin());
    // The runner's batching: 1,000 images per session run.
    for (int64_t begin = 0; begin < n; begin += 1000)
      model
          .prepare(x.data() + begin * input.size(), logits.data() + begin * classes,
                   int(std::min<int64_t>(1000, n - begin)))
          .run();
    return logits;
  }
  const TempDir tmp;
  const std::string out = tmp.file("logits.f32");
  std::vector<std::string> args = {"infer", onnx_path, images, out};
  if (limit > 0) args.insert(args.end(), {"--limit", std::to_string(limit)});
  const RunnerResult r = run_runner(args);
  if (!r.failure.empty()) fail(onnx_path + ": " + not_installed_anywhere(why_not, r.failure));
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
