// kd/onnx_runtime.h: exported models under ONNX Runtime (CPU), where they
// will be deployed, through node and the npm package onnxruntime-node.
//
// kdtrain does not link ONNX Runtime; it runs scripts/ort_run.js with node:
//   runner  $KD_ORT_RUNNER (a path to ort_run.js) or, by default, the source
//           tree's scripts/ort_run.js (its path is compiled in)
//   node    the first `node` on PATH
//   package $KD_ORT_DIR/node_modules/onnxruntime-node or, by default,
//           <source tree>/.ort (scripts/onnxruntime.sh installs it there)
// When any of them is missing the result says "ONNX Runtime not installed"
// and why; nothing here throws for that, so a run goes on without the numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/report.h"  // OrtLatency, LatencyRecord

namespace kd {

struct OrtLatencyOptions {
  std::vector<int> batches = {1, 1024};  // batch sizes to time
  int threads = 0;                       // ONNX Runtime intra-op threads; 0 = its default (one per physical core)
  int max_repeats = 50;                  // timed runs per batch size (after 2 warm-up runs) ...
  int budget_ms = 1500;                  // ... fewer once this is spent, but at least min(5, max_repeats)
};

// Exports `arch` with `params` to a temporary ONNX file (kd/onnx_export.h) and
// times it under ONNX Runtime: forward only, input already in memory, each
// batch size timed with session.run from node (so the times include node's
// small per-call overhead, as a node deployment would see). params: (arch.param_count).
OrtLatency ort_latency(const Arch& arch, const std::vector<float>& params, const OrtLatencyOptions& options = {});

// The same for an ONNX file that exists; `input` is its per-sample (C, H, W).
OrtLatency ort_latency_of_file(const std::string& onnx_path, const Shape& input, const OrtLatencyOptions& options);

// ONNX Runtime's logits for the first `limit` images (0 = all) of an IDX image
// file or a .npy file of u8 (N, C, H, W) images (kd/npy.h), fed as float
// pixel values 0..255: (n, classes) row-major. Throws
// kd::Error with the runner's reason when ONNX Runtime is missing or fails.
std::vector<float> ort_infer_images(const std::string& onnx_path, const std::string& images, int64_t limit,
                                    int classes);

// The runner script kdtrain uses ($KD_ORT_RUNNER or the compiled-in default).
std::string ort_runner_path();

// ONNX Runtime's version ("1.23.2"), or "" with `why_not` set to the reason
// ("ONNX Runtime not installed (...)"): one cheap check before many models.
std::string ort_version(std::string& why_not);

// `kdtrain latency`'s lines for the ONNX Runtime timings: a title naming the
// version and threads, then batch, median ms, p90 ms, samples/s per row; or
// the note when none were measured. Ends with a newline.
std::string ort_latency_text(const OrtLatency& ort);

}  // namespace kd
