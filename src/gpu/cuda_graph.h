// CudaGraph: an instantiated CUDA graph captured from the work a function
// enqueues on a stream, replayed with one cudaGraphLaunch.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kd/tensor.h"

namespace kd::cuda {

class CudaGraph {
 public:
  // Captures what `enqueue()` puts on `stream` (nothing runs) and
  // instantiates it. The stream must not be capturing already. Whatever
  // enqueue() may call must be capture-safe: no allocation, no synchronous
  // copy, no cuDNN algorithm search. If enqueue() throws, the capture is
  // ended and discarded so the stream stays usable, and the error propagates.
  template <typename Enqueue>
  static CudaGraph capture(cudaStream_t stream, Enqueue&& enqueue) {
    KD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      enqueue();
    } catch (...) {
      if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // the capture's own failure is not the error being reported
      throw;
    }
    KD_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    KD_CUDA_CHECK(status);
    return CudaGraph(exec);
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
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace kd::cuda
