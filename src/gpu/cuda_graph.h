// CudaGraph: an instantiated CUDA graph captured from the work a function
// enqueues on a stream, replayed with one cudaGraphLaunch.
#pragma once

#include <cuda_runtime.h>

#include <optional>
#include <string>
#include <utility>

#include "kd/cuda_buffer.h"

namespace kd::cuda {

// Test hook (kd::force_graph_capture_failure_for_testing): while true, every
// capture ends with a call that is illegal while capturing, so the capture
// fails the way an uncapturable library call would make it fail.
inline bool graph_capture_failure_forced = false;

class CudaGraph {
 public:
  // Captures what `enqueue()` puts on `stream` (nothing runs) and
  // instantiates it. The stream must not be capturing already. Whatever
  // enqueue() may call must be capture-safe: no allocation, no synchronous
  // copy, no cuDNN algorithm search. Returns nothing when the capture failed
  // (a call inside enqueue() threw kd::Error or invalidated the capture, or
  // instantiation failed) and then sets `why` to the capture status, the CUDA
  // errors and the library's message; the capture is ended and discarded
  // either way, so the stream stays usable and nothing was run.
  template <typename Enqueue>
  static std::optional<CudaGraph> try_capture(cudaStream_t stream, Enqueue&& enqueue, std::string& why) {
    KD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    EndCaptureOnUnwind guard{stream};  // any other exception: end the capture, let it propagate
    std::string enqueue_error;
    try {
      enqueue();
      if (graph_capture_failure_forced) KD_CUDA_CHECK(cudaStreamSynchronize(stream));  // illegal while capturing
    } catch (const Error& e) {
      enqueue_error = e.what();
    }
    guard.armed = false;
    cudaStreamCaptureStatus capture_status = cudaStreamCaptureStatusNone;
    const cudaError_t query = cudaStreamIsCapturing(stream, &capture_status);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    const cudaError_t last = cudaGetLastError();  // also clears a non-sticky error the capture left behind
    if (enqueue_error.empty() && end == cudaSuccess && graph != nullptr) {
      cudaGraphExec_t exec = nullptr;
      const cudaError_t instantiate = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      if (instantiate == cudaSuccess) return CudaGraph(exec);
      cudaGetLastError();
      why = "cudaGraphInstantiate: " + error_text(instantiate);
      return std::nullopt;
    }
    if (graph != nullptr) cudaGraphDestroy(graph);
    why = std::string("capture status ") +
          (query != cudaSuccess ? "unknown (cudaStreamIsCapturing: " + error_text(query) + ")"
                                : capture_status_name(capture_status)) +
          "; cudaStreamEndCapture: " + error_text(end) + "; last CUDA error: " + error_text(last);
    if (!enqueue_error.empty()) why += "; the step's calls failed with: " + enqueue_error;
    return std::nullopt;
  }

  CudaGraph() = default;
  ~CudaGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  CudaGraph(CudaGraph&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& o) noexcept {
    if (this != &o) {
      if (exec_) cudaGraphExecDestroy(exec_);
      exec_ = std::exchange(o.exec_, nullptr);
    }
    return *this;
  }

  void launch(cudaStream_t stream) const { KD_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}

  // Ends a capture that an exception other than kd::Error leaves open.
  struct EndCaptureOnUnwind {
    cudaStream_t stream;
    bool armed = true;
    ~EndCaptureOnUnwind() {
      if (!armed) return;
      cudaGraph_t graph = nullptr;
      if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph != nullptr) cudaGraphDestroy(graph);
    }
  };
  static std::string error_text(cudaError_t e) {
    return e == cudaSuccess ? "cudaSuccess" : std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
  }
  static const char* capture_status_name(cudaStreamCaptureStatus s) {
    switch (s) {
      case cudaStreamCaptureStatusNone: return "none (the capture had ended)";
      case cudaStreamCaptureStatusActive: return "active";
      case cudaStreamCaptureStatusInvalidated: return "invalidated";
    }
    return "unknown";
  }

  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace kd::cuda
