// kd/cuda_timer.h: device-time measurement of a stream's work with a pair of
// CUDA events, for the latency report (CudaModel), dense's choice between its
// implementations and the micro-benchmarks.
#pragma once

#include <cuda_runtime.h>

#include "kd/cuda_buffer.h"

namespace kd::cuda {

// A start/stop event pair that times whatever `enqueue` puts on `stream`.
class EventTimer {
 public:
  EventTimer() {
    KD_CUDA_CHECK(cudaEventCreate(&start_));
    KD_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Milliseconds of device time between the start and the end of `enqueue`'s
  // work (waits for it), at cudaEventElapsedTime's float resolution.
  template <typename Enqueue>
  double milliseconds(cudaStream_t stream, Enqueue&& enqueue) {
    KD_CUDA_CHECK(cudaEventRecord(start_, stream));
    enqueue();
    KD_CUDA_CHECK(cudaEventRecord(stop_, stream));
    KD_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    KD_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace kd::cuda
