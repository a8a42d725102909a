// CudaEngine: the Engine of kd/train.h on a CUDA device. It owns the
// EngineContext (stream, cuBLAS context, resident splits, soft targets) that
// its CudaModels share; the models do the work.
#include <cublas_v2.h>
#include <cudnn.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cuda_model.h"
#include "engine_context.h"
#include "kd/cuda_engine.h"

namespace kd {
namespace {

// 13000 -> "13.0" (CUDA's major * 1000 + minor * 10 encoding).
std::string cuda_version_string(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

class CudaEngine final : public Engine {
 public:
  CudaEngine(int device, StepExecution execution) : context_(device, execution) {}

  std::string device_description() const override {
    if (context_.device() == 0) return cuda::device_description();
    cudaDeviceProp prop{};
    KD_CUDA_CHECK(cudaGetDeviceProperties(&prop, context_.device()));
    return "CUDA device " + std::to_string(context_.device()) + ": " + prop.name + " (sm_" +
           std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  }

  std::string versions() const override {
    int runtime = 0, driver = 0;
    KD_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    KD_CUDA_CHECK(cudaDriverGetVersion(&driver));
    const size_t cudnn = cudnnGetVersion();  // cuDNN 9: major * 10000 + minor * 100 + patch
    int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
    cublasGetProperty(MAJOR_VERSION, &cublas_major);
    cublasGetProperty(MINOR_VERSION, &cublas_minor);
    cublasGetProperty(PATCH_LEVEL, &cublas_patch);
    char buf[192];
    std::snprintf(buf, sizeof buf, "CUDA runtime %s, driver %s, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d",
                  cuda_version_string(runtime).c_str(), cuda_version_string(driver).c_str(), cudnn / 10000,
                  (cudnn % 10000) / 100, cudnn % 100, cublas_major, cublas_minor, cublas_patch);
    return buf;
  }

  void load(const Splits& splits) override { context_.load(splits); }

  MemoryNeed memory_need(const Arch& arch, const TrainSettings& settings, bool online_teacher) override {
    return cuda::CudaModel::memory_need(context_, arch, settings, online_teacher);
  }

  int64_t available_memory() override {
    size_t free_bytes = 0, total_bytes = 0;
    KD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return int64_t(free_bytes);
  }

  std::unique_ptr<ModelEngine> create_model(const Arch& arch, const std::vector<float>& params,
                                            const TrainSettings& settings) override {
    return std::make_unique<cuda::CudaModel>(context_, arch, params, settings);
  }

  void compute_soft_targets(ModelEngine& teacher) override {
    auto* model = dynamic_cast<cuda::CudaModel*>(&teacher);
    // Another engine's model would read that engine's training split on that
    // engine's stream, which the synchronisation below does not wait for.
    if (model == nullptr || &model->context() != &context_)
      fail(
          "compute_soft_targets: the teacher was not created by this CUDA engine; create it with this engine's "
          "create_model");
    model->infer_split(SplitId::Train, context_.soft_targets_for(int(model->arch().output.size())));
    KD_CUDA_CHECK(cudaStreamSynchronize(context_.stream()));  // the phase's wall time includes the work
  }

  void use_online_teacher(ModelEngine& teacher) override {
    auto* model = dynamic_cast<cuda::CudaModel*>(&teacher);
    if (model == nullptr || &model->context() != &context_)
      fail(
          "use_online_teacher: the teacher was not created by this CUDA engine; create it with this engine's "
          "create_model");
    context_.set_online_teacher(model);
  }

 private:
  cuda::EngineContext context_;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(int device, StepExecution execution) {
  return std::make_unique<CudaEngine>(device, execution);
}

void force_graph_capture_failure_for_testing(bool on) { cuda::graph_capture_failure_forced = on; }

}  // namespace kd
