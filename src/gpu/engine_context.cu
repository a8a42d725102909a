// EngineContext: device selection, the engine's stream, the resident splits,
// the soft-target buffer and the per-shape dense implementation choice.
#include "engine_context.h"

#include <algorithm>
#include <string>

namespace kd::cuda {
namespace {

// Makes `device` current for this thread and returns it; throws naming the
// devices that exist.
int select_device(int device) {
  const int count = device_count();
  if (device < 0 || device >= count)
    fail("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
         " device(s) found); use a device index in [0, " + std::to_string(count) + ") or --device cpu");
  KD_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

void upload_split(const Dataset& data, const std::string& name, DeviceSplit& out, cudaStream_t stream) {
  out.n = data.n;
  out.values_per_image = data.values_per_image();
  out.plane = data.pixels();
  out.images.allocate(data.images.size(), name + " images");
  out.labels.allocate(data.labels.size(), name + " labels");
  copy_to_device(out.images.data(), data.images.data(), data.images.size(), stream);
  copy_to_device(out.labels.data(), data.labels.data(), data.labels.size(), stream);
}

}  // namespace

EngineContext::EngineContext(int device, StepExecution execution)
    : device_(select_device(device)), execution_(execution) {}

EngineContext::~EngineContext() {
  cudaStreamSynchronize(stream());  // the buffers are freed next; nothing queued may still read them
}

DenseImpl EngineContext::dense_impl(DenseImplChoice choice, bool deterministic, int b, int in, int out, bool relu,
                                    PlanUse use) {
  switch (choice) {
    case DenseImplChoice::Custom: return DenseImpl::Custom;
    case DenseImplChoice::Cublas: return DenseImpl::Cublas;
    case DenseImplChoice::Auto: break;
  }
  if (deterministic) return DenseImpl::Cublas;
  return dense_autoselect(dense_, b, in, out, relu, stream(), use);
}

void EngineContext::load(const Splits& splits) {
  check_normalization(splits);
  upload_split(splits.train, "training", train_, stream());
  upload_split(splits.val, "validation", val_, stream());
  upload_split(splits.test, "test", test_, stream());
  num_classes_ = splits.num_classes;
  normalization_ = splits.normalization;
  const int64_t largest = std::max({train_.n, val_.n, test_.n});
  identity_order_.allocate(size_t(largest), "evaluation sample indices");
  iota(identity_order_.data(), int(largest), stream());
  KD_CUDA_CHECK(cudaStreamSynchronize(stream()));
  loaded_ = true;
}

const DeviceSplit& EngineContext::split(SplitId id) const {
  if (!loaded_) fail("CudaEngine: the data is not on the device yet; call Engine::load before training or evaluating");
  switch (id) {
    case SplitId::Train: return train_;
    case SplitId::Val: return val_;
    case SplitId::Test: return test_;
  }
  fail("CudaEngine: unknown split id " + std::to_string(int(id)));
}

float* EngineContext::soft_targets_for(int classes) {
  const size_t count = size_t(split(SplitId::Train).n) * size_t(classes);
  if (soft_targets_.size() != count)
    soft_targets_.allocate(count, "soft targets (teacher logits of the training split)");
  soft_target_classes_ = classes;
  return soft_targets_.data();
}

}  // namespace kd::cuda
