// kd/onnx_runtime.h: exported models under ONNX Runtime (CPU), where they
// will be deployed.
//
// In this process first: libonnxruntime.so from the npm package
// onnxruntime-node, opened with dlopen and driven through ONNX Runtime's C API
// (src/io/ort_inprocess.h says where it is looked for: $KD_ORT_LIB, else
// $KD_ORT_DIR or <source tree>/.ort, which scripts/onnxruntime.sh fills). Same
// process, same threads, same input and the same timing rule as kdtrain's own
// latency, so the two compare at every batch size.
//
// When that library cannot be loaded, node with scripts/ort_run.js is the fallback:
//   runner  $KD_ORT_RUNNER (a path to ort_run.js) or, by default, the source
//           tree's scripts/ort_run.js (its path is compiled in)
//   node    the first `node` on PATH
//   package $KD_ORT_DIR/node_modules/onnxruntime-node or, by default,
//           <source tree>/.ort
// (its times include node's per-call overhead). When neither works the result
// says "ONNX Runtime not installed" and why; nothing here throws for that, so
// a run goes on without the numbers.
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
  int max_repeats = 50;                  // timed runs per batch size (after a warm-up) ...
  int budget_ms = 3000;                  // node only: fewer once this is spent, but at least min(5, max_repeats)
                                         // (in-process follows kdtrain's own rule, time_forwards in kd/engine.h)
  // In-process only: a batch larger than `slice` rows runs as consecutive
  // session runs of `slice` rows, as kdtrain's CPU engine runs it in slices of
  // its buffers; 0 = the whole batch in one run.
  int slice = 0;
  // In-process only: the images to time on, (rows, C, H, W) float pixel values
  // 0..255 (kdtrain times the first rows of the test split); batch b takes
  // rows 0..b-1, repeating them when there are fewer. Empty: a fixed
  // pixel-like pattern, as the node runner uses.
  std::vector<float> input;
};

// Exports `arch` with `params` to a temporary ONNX file (kd/onnx_export.h) and
// times it under ONNX Runtime: forward only, input and output already in
// memory, in this process (or, as the fallback, from node; OrtLatency::via
// says which). params: (arch.param_count).
OrtLatency ort_latency(const Arch& arch, const std::vector<float>& params, const OrtLatencyOptions& options = {});

// ONNX Runtime's logits for the first `limit` images (0 = all) of an IDX image
// file or a .npy file of u8 (N, C, H, W) images (kd/npy.h), fed as float
// pixel values 0..255: (n, classes) row-major; in this process, else through
// node. Throws kd::Error with the reason when ONNX Runtime is missing or fails.
std::vector<float> ort_infer_images(const std::string& onnx_path, const std::string& images, int64_t limit,
                                    int classes);

// The runner script kdtrain uses ($KD_ORT_RUNNER or the compiled-in default).
std::string ort_runner_path();

// ONNX Runtime's version ("1.23.2"), or "" with `why_not` set to the reason
// ("ONNX Runtime not installed (...)", naming both the in-process library and
// the node fallback): one cheap check before many models.
std::string ort_version(std::string& why_not);

// Where measured ONNX Runtime numbers come from, in one line: "ONNX Runtime
// 1.23.2 (CPU, 2 threads): the exported ONNX model, forward only, timed in
// this process through its C API" (or "from node (fallback)").
std::string ort_description(const OrtLatency& ort);

// `kdtrain latency`'s lines: kdtrain's timings beside ONNX Runtime's, one row
// per batch size: batch, kdtrain median and p90 ms, ONNX Runtime median and
// p90 ms, and the ratio ONNX Runtime / kdtrain (above 1: kdtrain is faster);
// then a line naming ONNX Runtime's version, threads and how it was called,
// or the note when it was not measured. Ends with a newline.
std::string latency_side_by_side_text(const std::vector<LatencyRecord>& kdtrain, const OrtLatency& ort);

}  // namespace kd
