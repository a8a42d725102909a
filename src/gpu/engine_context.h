// EngineContext: what every model of one CudaEngine shares: the device, the
// one stream all work is ordered on, the cuBLAS context, the dense
// implementation chosen per layer shape, the resident splits and the soft
// targets.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kd/cuda_engine.h"
#include "kd/data.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"
#include "kd/engine.h"

namespace kd::cuda {

class CudaModel;

// One split resident on the device.
struct DeviceSplit {
  int64_t n = 0;
  int64_t values_per_image = 0;  // c * h * w
  int64_t plane = 0;             // h * w
  DeviceBuffer<uint8_t> images;  // (n, c, h, w) row-major
  DeviceBuffer<uint8_t> labels;  // (n)
};

// Copies of `count` elements ordered on `stream`, returning once done. The
// engine's stream does not synchronise with the legacy default stream that
// DeviceBuffer::upload / download use, so engine code copies with these.
template <typename T>
void copy_to_device(T* device, const T* host, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  KD_CUDA_CHECK(cudaMemcpyAsync(device, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
}
template <typename T>
void copy_to_host(T* host, const T* device, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  KD_CUDA_CHECK(cudaMemcpyAsync(host, device, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// An owned non-blocking stream, synchronised before it is destroyed.
class OwnedStream {
 public:
  OwnedStream() { KD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~OwnedStream() {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class EngineContext {
 public:
  EngineContext(int device, StepExecution execution);
  ~EngineContext();
  EngineContext(const EngineContext&) = delete;
  EngineContext& operator=(const EngineContext&) = delete;

  int device() const { return device_; }
  StepExecution execution() const { return execution_; }
  cudaStream_t stream() const { return stream_.get(); }
  DenseContext& dense() { return dense_; }

  // The dense implementation for one layer shape: the forced one, or for Auto
  // the faster one (for `use`) as measured once per shape by dense_autoselect (cached in
  // the shared DenseContext, so the student and the scratch baseline run the
  // same code). Under
  // `deterministic` Auto means cuBLAS: a choice that follows timing noise
  // could differ between two runs of the same seed, and cuBLAS is documented
  // to be bitwise reproducible on one GPU. Never call while capturing a graph.
  DenseImpl dense_impl(DenseImplChoice choice, bool deterministic, int b, int in, int out, bool relu, PlanUse use);

  // Uploads the three splits (once per run).
  void load(const Splits& splits);
  bool loaded() const { return loaded_; }
  int num_classes() const { return num_classes_; }
  const Normalization& normalization() const { return normalization_; }
  // Throws kd::Error before load().
  const DeviceSplit& split(SplitId id) const;
  // (largest split n) = 0, 1, 2, ...: the sample indices of in-order evaluation.
  const int32_t* identity_order() const { return identity_order_.data(); }

  // (train n, classes) teacher logits: allocated for `classes` (kept when the
  // size is unchanged, so graphs that read it stay valid) and returned.
  float* soft_targets_for(int classes);
  // Null until soft_targets_for was called.
  const float* soft_targets() const { return soft_targets_.data(); }
  int soft_target_classes() const { return soft_target_classes_; }

  // The teacher of online soft targets (Engine::use_online_teacher); null until set.
  // Declared, not included: cuda_model.h includes this header.
  void set_online_teacher(CudaModel* teacher) { online_teacher_ = teacher; }
  CudaModel* online_teacher() const { return online_teacher_; }

 private:
  int device_;  // first member: selected before anything below touches the device
  StepExecution execution_;
  OwnedStream stream_;  // declared before everything that enqueues on it, so destroyed after it
  DenseContext dense_;

  bool loaded_ = false;
  int num_classes_ = 0;
  Normalization normalization_;
  DeviceSplit train_, val_, test_;
  DeviceBuffer<int32_t> identity_order_;

  DeviceBuffer<float> soft_targets_;
  int soft_target_classes_ = 0;
  CudaModel* online_teacher_ = nullptr;
};

}  // namespace kd::cuda
