// cuDNN convolutions for one shape (NCHW fp32, cross-correlation, FMA math):
// descriptors built once, algorithms chosen once, one workspace allocated once,
// so the per-step calls only enqueue work and can be captured in a CUDA graph.
//
// Algorithm choice: timed (cudnnFind*) by default, the fastest usable result;
// under `deterministic`, cuDNN's heuristic ranking (cudnnGet*_v7), whose answer
// does not depend on timing noise, restricted to deterministic algorithms, so a
// resumed run picks the same kernels as the run it continues.
// Math is CUDNN_FMA_MATH: CUDNN_DEFAULT_MATH lets cuDNN use TF32 tensor cores on
// Ampere and later (10-bit mantissa products), which neither the fp32 CPU
// reference nor PyTorch with TF32 off would match.
//
// Oracle: kd::ref::conv2d_forward / conv2d_backward_data / conv2d_backward_filter.
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "kd/cuda_common.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

#define KD_CUDNN_CHECK(call)                                                                                         \
  do {                                                                                                               \
    const cudnnStatus_t kd_cudnn_status_ = (call);                                                                   \
    if (kd_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                                                    \
      ::kd::cuda::throw_library_error("cuDNN", int(kd_cudnn_status_), cudnn_reason(kd_cudnn_status_).c_str(), #call, \
                                      __FILE__, __LINE__);                                                           \
  } while (0)

namespace kd::cuda {
namespace {

// "CUDNN_STATUS_NOT_SUPPORTED_SHAPE: <cudnnGetLastErrorString>": the status
// name and cuDNN's own explanation of the last failure on this thread.
std::string cudnn_reason(cudnnStatus_t status) {
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof detail);
  std::string reason = cudnnGetErrorString(status);
  if (detail[0] != '\0') reason += std::string(": ") + detail;
  return reason;
}

// The largest workspace an algorithm may ask for: keeps a plan for a
// 10,000-image latency batch from claiming gigabytes for a few percent of speed.
constexpr size_t kMaxWorkspaceBytes = size_t(512) << 20;
// An inference plan whose probe tensors (x and y) would exceed this is chosen
// without running anything: cuDNN's heuristic ranking and a workspace-size
// query, and the unfused forward. At batch 10,000 the teacher's probes would
// take 2.3 GB and a timed search would allocate as much again inside cuDNN,
// for a plan that runs eagerly (inference is never captured), where a
// failing algorithm reports itself at its first call.
constexpr size_t kMaxInferenceProbeBytes = size_t(256) << 20;
// About this many elements of one channel of dy go to one block of the
// bias-gradient reduction (whole images, at least one).
constexpr int kBiasChunk = 4096;

std::string shape_string(const ref::ConvShape& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "x(%d,%d,%d,%d) w(%d,%d,%d,%d) stride %d pad %d", s.n, s.in_c, s.h, s.w, s.out_c,
                s.in_c, s.k, s.k, s.stride, s.pad);
  return buf;
}

// One cuDNN handle for every live plan (a handle costs milliseconds and device
// memory to create); destroyed with the last plan. Each call sets its stream.
std::shared_ptr<cudnnContext> shared_cudnn_handle() {
  static std::weak_ptr<cudnnContext> cached;
  if (std::shared_ptr<cudnnContext> live = cached.lock()) return live;
  cudnnHandle_t raw = nullptr;
  KD_CUDNN_CHECK(cudnnCreate(&raw));
  std::shared_ptr<cudnnContext> handle(raw, [](cudnnHandle_t h) { cudnnDestroy(h); });
  cached = handle;
  return handle;
}

const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  static const char* const names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
                                      "WINOGRAD",      "WINOGRAD_NONFUSED"};
  return int(a) >= 0 && int(a) < CUDNN_CONVOLUTION_FWD_ALGO_COUNT ? names[a] : "UNKNOWN";
}
const char* algo_name(cudnnConvolutionBwdDataAlgo_t a) {
  static const char* const names[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  return int(a) >= 0 && int(a) < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT ? names[a] : "UNKNOWN";
}
const char* algo_name(cudnnConvolutionBwdFilterAlgo_t a) {
  static const char* const names[] = {"ALGO_0",    "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED",
                                      "FFT_TILING"};
  return int(a) >= 0 && int(a) < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT ? names[a] : "UNKNOWN";
}

// The algorithms cuDNN documents as non-deterministic (they accumulate with
// atomics), excluded under `deterministic` even if a result claims otherwise.
bool documented_nondeterministic(cudnnConvolutionFwdAlgo_t) { return false; }
bool documented_nondeterministic(cudnnConvolutionBwdDataAlgo_t a) { return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0; }
bool documented_nondeterministic(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

// results: best first (Find: fastest first; _v7: cuDNN's expected ranking).
// Keeps, in that order, the algorithms that ran (Find) or are supported (_v7),
// fit the workspace cap, use no tensor-core math and, when asked, are deterministic.
template <typename Perf>
auto usable_algorithms(const std::vector<Perf>& results, bool deterministic) {
  std::vector<decltype(Perf::algo)> usable;
  for (const Perf& perf : results) {
    const bool tensor_core_math =
        perf.mathType == CUDNN_TENSOR_OP_MATH || perf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    const bool reproducible = perf.determinism == CUDNN_DETERMINISTIC && !documented_nondeterministic(perf.algo);
    if (perf.status == CUDNN_STATUS_SUCCESS && perf.memory <= kMaxWorkspaceBytes && !tensor_core_math &&
        (!deterministic || reproducible)) {
      usable.push_back(perf.algo);
    }
  }
  return usable;
}

// Returns whether `call` succeeded; false when cuDNN answered that this
// algorithm (or the fused call) cannot do it, so another can be tried; throws
// for a broken environment or a failed execution, where no other algorithm
// would fare better. `why` collects "<call> <algo>: <status>" per refusal.
bool succeeded_or_cannot(cudnnStatus_t status, const char* call, const char* algo, std::string& why) {
  switch (classify_cudnn_status(int(status))) {
    case CudnnVerdict::Success: return true;
    case CudnnVerdict::CannotDo:
      why +=
          std::string(why.empty() ? "" : "; ") + algo + ": " + std::to_string(int(status)) + " " + cudnn_reason(status);
      return false;
    case CudnnVerdict::Environment:
      fail(std::string("cuDNN cannot run here: ") + call + " returned " + std::to_string(int(status)) + " " +
           cudnn_reason(status) +
           ". The cuDNN libraries, the CUDA runtime and the driver do not fit together: check that every "
           "libcudnn*.so.9 sub-library comes from one cuDNN 9 installation on LD_LIBRARY_PATH (ldd shows which) "
           "and that the driver supports this CUDA runtime");
    case CudnnVerdict::Fatal: break;
  }
  throw_library_error("cuDNN", int(status), cudnn_reason(status).c_str(), call, __FILE__, __LINE__);
}

template <typename Algo>
struct Chosen {
  Algo algo;
  size_t workspace_bytes;
};

// Runs the candidates in order on scratch buffers and returns the first that
// cuDNN executes, with its workspace size: a ranking is only a promise, and an
// algorithm that fails here would otherwise fail inside a captured training
// step. workspace_bytes(algo, &bytes) queries the size and run(algo, workspace,
// bytes) makes the call, both returning cuDNN's status; a "cannot" answer
// from either (classify_cudnn_status) moves on to the next candidate. `run`
// is skipped when !execute: then the first candidate whose size query
// succeeds is taken (inference plans too large to probe). `scratch` grows to the largest
// workspace tried. `offered` is how many algorithms cuDNN listed before the
// fp32 / workspace / determinism filter, for the message.
template <typename Algo, typename WorkspaceBytes, typename Run>
Chosen<Algo> first_runnable(const std::vector<Algo>& candidates, size_t offered, WorkspaceBytes workspace_bytes,
                            Run run, bool execute, DeviceBuffer<unsigned char>& scratch, bool deterministic,
                            const char* direction, const ref::ConvShape& shape) {
  std::string why;
  for (const Algo algo : candidates) {
    size_t bytes = 0;
    if (!succeeded_or_cannot(workspace_bytes(algo, &bytes), direction, algo_name(algo), why)) continue;
    if (bytes > kMaxWorkspaceBytes) {
      why += std::string(why.empty() ? "" : "; ") + algo_name(algo) + ": needs " + std::to_string(bytes >> 20) +
             " MiB of workspace";
      continue;
    }
    if (!execute) return {algo, bytes};
    if (bytes > scratch.bytes()) scratch.allocate(bytes, "convolution workspace for " + shape_string(shape));
    if (succeeded_or_cannot(run(algo, scratch.data(), bytes), direction, algo_name(algo), why)) return {algo, bytes};
  }
  fail(std::string("ConvPlan: no usable ") + direction + " algorithm for " + shape_string(shape) + ": cuDNN listed " +
       std::to_string(offered) + ", " + std::to_string(candidates.size()) + " passed the filter (fp32, FMA math" +
       (deterministic ? ", deterministic" : "") + ", workspace <= 512 MiB)" + (why.empty() ? "" : "; refused: " + why) +
       (deterministic && candidates.empty() ? "; try without --deterministic" : ""));
}

// Adds bias[channel] and, when kRelu, applies ReLU as the reference does
// (v > 0 ? v : 0, so NaN becomes 0, like cuDNN's CUDNN_NOT_PROPAGATE_NAN).
// y: (n, channels, hw) in place, bias: (channels) or null.
template <bool kRelu>
__global__ void bias_activation_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t total,
                                       int channels, int hw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    float value = y[i];
    if (bias != nullptr) value += bias[(i / hw) % channels];
    y[i] = kRelu ? (value > 0.0f ? value : 0.0f) : value;
  }
}

// Pass 1 of db: block (split, channel) sums the channel's planes of dy for
// images [split * images_per_split, (split + 1) * images_per_split) in double,
// each thread over fixed positions, then a fixed-shape tree: the result does
// not depend on scheduling. dy: (n, channels, hw) -> partial: (channels, splits).
__global__ void bias_grad_partial_kernel(const float* __restrict__ dy, double* __restrict__ partial, int n,
                                         int channels, int hw, int images_per_split) {
  __shared__ double thread_sums[kBlockThreads];
  const int split = blockIdx.x, channel = blockIdx.y;
  const int image_begin = split * images_per_split;
  const int image_end = image_begin + images_per_split < n ? image_begin + images_per_split : n;
  double sum = 0.0;
  for (int image = image_begin; image < image_end; ++image) {
    const float* plane = dy + (int64_t(image) * channels + channel) * hw;
    for (int position = threadIdx.x; position < hw; position += blockDim.x) sum += plane[position];
  }
  thread_sums[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) thread_sums[threadIdx.x] += thread_sums[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[int64_t(channel) * gridDim.x + split] = thread_sums[0];
}

// Pass 2 of db: db[channel] = sum of its `splits` partials in index order.
__global__ void bias_grad_finish_kernel(const double* __restrict__ partial, float* __restrict__ db, int channels,
                                        int splits) {
  const int channel = blockIdx.x * blockDim.x + threadIdx.x;
  if (channel >= channels) return;
  double sum = 0.0;
  for (int s = 0; s < splits; ++s) sum += partial[int64_t(channel) * splits + s];
  db[channel] = float(sum);
}

// Sets *found = 1 when some element of y: (n) is not exactly `expected` (NaN included).
__global__ void find_mismatch_kernel(const float* __restrict__ y, int64_t n, float expected, int* __restrict__ found) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!(y[i] == expected)) *found = 1;
  }
}

int blocks_for(int64_t items) { return grid_blocks(items, kBlockThreads, int64_t(1) << 20); }

}  // namespace

struct ConvPlan::State {
  ref::ConvShape shape;
  bool deterministic = false;
  bool training = true;  // false: forward only (PlanUse::Inference)
  std::shared_ptr<cudnnContext> handle;
  cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr, bias_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  cudnnActivationDescriptor_t relu_desc = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
  // Whether cudnnConvolutionBiasActivationForward runs fwd_algo for this shape
  // (cuDNN supports the fused ReLU for only some algorithms); otherwise the
  // forward is cudnnConvolutionForward plus bias_activation_kernel.
  bool fused_bias_relu = false;
  bool unfused_forced = false;  // force_unfused_forward()
  DeviceBuffer<unsigned char> workspace;
  int bias_images_per_split = 0, bias_splits = 0;
  DeviceBuffer<double> bias_partial;  // (out_c, bias_splits)

  ~State() {
    if (relu_desc) cudnnDestroyActivationDescriptor(relu_desc);
    if (conv_desc) cudnnDestroyConvolutionDescriptor(conv_desc);
    if (w_desc) cudnnDestroyFilterDescriptor(w_desc);
    if (bias_desc) cudnnDestroyTensorDescriptor(bias_desc);
    if (y_desc) cudnnDestroyTensorDescriptor(y_desc);
    if (x_desc) cudnnDestroyTensorDescriptor(x_desc);
  }

  cudnnHandle_t cudnn() const { return handle.get(); }
  int64_t x_count() const { return int64_t(shape.n) * shape.in_c * shape.h * shape.w; }
  int64_t y_count() const { return int64_t(shape.n) * shape.out_c * shape.out_h() * shape.out_w(); }
  int64_t w_count() const { return int64_t(shape.out_c) * shape.in_c * shape.k * shape.k; }

  void describe_tensors() {
    const ref::ConvShape& s = shape;
    KD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_desc));
    KD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_desc));
    KD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias_desc));
    KD_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_desc));
    KD_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_desc));
    KD_CUDNN_CHECK(cudnnCreateActivationDescriptor(&relu_desc));
    KD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.in_c, s.h, s.w));
    KD_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.out_c, s.out_h(), s.out_w()));
    KD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.out_c, 1, 1));
    KD_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.out_c, s.in_c, s.k, s.k));
    KD_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_desc, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KD_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_desc, CUDNN_FMA_MATH));
    KD_CUDNN_CHECK(cudnnSetActivationDescriptor(relu_desc, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    int n = 0, c = 0, h = 0, w = 0;
    KD_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_desc, x_desc, w_desc, &n, &c, &h, &w));
    if (n != s.n || c != s.out_c || h != s.out_h() || w != s.out_w()) {
      fail("ConvPlan: cuDNN computes output (" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(h) +
           "," + std::to_string(w) + ") for " + shape_string(s) + ", kd::ref::ConvShape (" + std::to_string(s.n) + "," +
           std::to_string(s.out_c) + "," + std::to_string(s.out_h()) + "," + std::to_string(s.out_w()) + ")");
    }
  }

  // Chooses the algorithms (forward only for an inference plan), sizes the
  // workspace, decides the fused forward and runs every call once, all on
  // scratch buffers (x, w zero; y NaN) and before any stream capture can be
  // active, so first-use work (kernel loading, plan building) stays out of
  // captured training steps. Work still queued on other streams (the engine's
  // is non-blocking, so the default stream does not wait for it) is drained
  // first: it would share the GPU with the timed search and skew its choice.
  // The fused forward is used only if cuDNN accepts fwd_algo with the ReLU and,
  // with bias 1, writes y = relu(0 + 1) = 1 everywhere: that shows the bias is
  // added and that z = y (NaN) is not read when alpha2 = 0 (0 * NaN would give a
  // NaN pre-activation, which the non-propagating ReLU turns into 0, not 1), so
  // stale output memory cannot leak into results. Any "cannot" answer from the
  // fused call leaves the unfused path, which is always available.
  // An inference plan too large to probe (kMaxInferenceProbeBytes) takes
  // cuDNN's heuristic ranking and a size query instead, unfused.
  void choose_algorithms() {
    KD_CUDA_CHECK(cudaDeviceSynchronize());
    const bool probe = training || size_t(x_count() + y_count()) * sizeof(float) <= kMaxInferenceProbeBytes;
    const bool heuristic = deterministic || !probe;
    DeviceBuffer<float> x(probe ? size_t(x_count()) : 0, "convolution probe input");
    DeviceBuffer<float> w(probe ? size_t(w_count()) : 0, "convolution probe filter");
    DeviceBuffer<float> y(probe ? size_t(y_count()) : 0, "convolution probe output");
    DeviceBuffer<unsigned char> scratch_workspace;
    if (probe) {
      KD_CUDA_CHECK(cudaMemset(x.data(), 0, x.bytes()));
      KD_CUDA_CHECK(cudaMemset(w.data(), 0, w.bytes()));
      KD_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.bytes()));
    }
    const float one = 1.0f, zero = 0.0f;
    int max_count = 0, returned = 0;

    KD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(cudnn(), &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(max_count);
    if (heuristic) {
      KD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn(), x_desc, w_desc, conv_desc, y_desc, max_count,
                                                            &returned, fwd.data()));
    } else {
      KD_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(cudnn(), x_desc, w_desc, conv_desc, y_desc, max_count,
                                                          &returned, fwd.data()));
    }
    fwd.resize(returned);
    const auto fwd_choice = first_runnable(
        usable_algorithms(fwd, deterministic), fwd.size(),
        [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionForwardWorkspaceSize(cudnn(), x_desc, w_desc, conv_desc, y_desc, algo, bytes);
        },
        [&](cudnnConvolutionFwdAlgo_t algo, void* ws, size_t bytes) {
          return cudnnConvolutionForward(cudnn(), &one, x_desc, x.data(), w_desc, w.data(), conv_desc, algo, ws, bytes,
                                         &zero, y_desc, y.data());
        },
        probe, scratch_workspace, deterministic, "cudnnConvolutionForward", shape);
    fwd_algo = fwd_choice.algo;
    size_t workspace_bytes = fwd_choice.workspace_bytes;

    if (training) {
      KD_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnn(), &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data(max_count);
      if (heuristic) {
        KD_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn(), w_desc, y_desc, conv_desc, x_desc,
                                                                   max_count, &returned, bwd_data.data()));
      } else {
        KD_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(cudnn(), w_desc, y_desc, conv_desc, x_desc, max_count,
                                                                 &returned, bwd_data.data()));
      }
      bwd_data.resize(returned);
      const auto bwd_data_choice = first_runnable(
          usable_algorithms(bwd_data, deterministic), bwd_data.size(),
          [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn(), w_desc, y_desc, conv_desc, x_desc, algo,
                                                                bytes);
          },
          [&](cudnnConvolutionBwdDataAlgo_t algo, void* ws, size_t bytes) {
            return cudnnConvolutionBackwardData(cudnn(), &one, w_desc, w.data(), y_desc, y.data(), conv_desc, algo, ws,
                                                bytes, &zero, x_desc, x.data());
          },
          probe, scratch_workspace, deterministic, "cudnnConvolutionBackwardData", shape);
      bwd_data_algo = bwd_data_choice.algo;

      KD_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnn(), &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter(max_count);
      if (heuristic) {
        KD_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnn(), x_desc, y_desc, conv_desc, w_desc,
                                                                     max_count, &returned, bwd_filter.data()));
      } else {
        KD_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(cudnn(), x_desc, y_desc, conv_desc, w_desc,
                                                                   max_count, &returned, bwd_filter.data()));
      }
      bwd_filter.resize(returned);
      const auto bwd_filter_choice = first_runnable(
          usable_algorithms(bwd_filter, deterministic), bwd_filter.size(),
          [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnn(), x_desc, y_desc, conv_desc, w_desc, algo,
                                                                  bytes);
          },
          [&](cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t bytes) {
            return cudnnConvolutionBackwardFilter(cudnn(), &one, x_desc, x.data(), y_desc, y.data(), conv_desc, algo,
                                                  ws, bytes, &zero, w_desc, w.data());
          },
          probe, scratch_workspace, deterministic, "cudnnConvolutionBackwardFilter", shape);
      bwd_filter_algo = bwd_filter_choice.algo;
      workspace_bytes = std::max({workspace_bytes, bwd_data_choice.workspace_bytes, bwd_filter_choice.workspace_bytes});
      bias_images_per_split = std::max(1, kBiasChunk / (shape.out_h() * shape.out_w()));
      bias_splits = (shape.n + bias_images_per_split - 1) / bias_images_per_split;
      bias_partial.allocate(size_t(shape.out_c) * bias_splits, "convolution bias-gradient partial sums");
    }

    scratch_workspace.release();
    workspace.allocate(workspace_bytes, "convolution workspace for " + shape_string(shape));
    fused_bias_relu = probe && fused_forward_works(x, w, y);
    KD_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // The fused-forward probe of choose_algorithms on its scratch x, w, y.
  bool fused_forward_works(DeviceBuffer<float>& x, DeviceBuffer<float>& w, DeviceBuffer<float>& y) {
    DeviceBuffer<float> bias(size_t(shape.out_c), "convolution probe bias");
    DeviceBuffer<int> found(1, "convolution probe flag");
    const float one = 1.0f, zero = 0.0f;
    KD_CUDA_CHECK(cudaMemset(x.data(), 0, x.bytes()));
    KD_CUDA_CHECK(cudaMemset(w.data(), 0, w.bytes()));
    KD_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.bytes()));
    KD_CUDA_CHECK(cudaMemset(found.data(), 0, found.bytes()));
    bias.upload(std::vector<float>(size_t(shape.out_c), 1.0f));
    std::string refused;  // a refusal only means: use the unfused path
    if (!succeeded_or_cannot(
            cudnnConvolutionBiasActivationForward(cudnn(), &one, x_desc, x.data(), w_desc, w.data(), conv_desc,
                                                  fwd_algo, workspace.data(), workspace.bytes(), &zero, y_desc,
                                                  y.data(), bias_desc, bias.data(), relu_desc, y_desc, y.data()),
            "cudnnConvolutionBiasActivationForward", algo_name(fwd_algo), refused)) {
      return false;
    }
    launch(find_mismatch_kernel, blocks_for(y_count()), kBlockThreads, 0, cudaStream_t{}, y.data(), y_count(), 1.0f,
           found.data());
    KD_CUDA_CHECK_LAUNCH(find_mismatch_kernel);
    return found.download()[0] == 0;
  }
};

CudnnVerdict classify_cudnn_status(int status) {
  if (status == CUDNN_STATUS_SUCCESS) return CudnnVerdict::Success;
  // 3005-3009: incompatible driver or runtime, wrong architecture, missing
  // prerequisite or sub-library; 1xxx: not initialised, sub-library version
  // mismatch or loading failure. No algorithm can run in such an environment.
  if ((status >= CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER &&
       status <= CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE) ||
      CUDNN_STATUS_CATEGORY(status) == 1000)
    return CudnnVerdict::Environment;
  // Bad parameter, not supported, internal error (which cuDNN 9 also reports
  // for an engine it cannot build or fit): this algorithm cannot, another may.
  const int category = CUDNN_STATUS_CATEGORY(status);
  if (category == CUDNN_STATUS_BAD_PARAM || category == CUDNN_STATUS_NOT_SUPPORTED ||
      category == CUDNN_STATUS_INTERNAL_ERROR)
    return CudnnVerdict::CannotDo;
  return CudnnVerdict::Fatal;  // execution failed, unknown codes
}

ConvPlan::ConvPlan(const ref::ConvShape& shape, bool deterministic, PlanUse use) : state_(std::make_unique<State>()) {
  const ref::ConvShape& s = shape;
  if (s.n < 1 || s.in_c < 1 || s.h < 1 || s.w < 1 || s.out_c < 1 || s.k < 1 || s.stride < 1 || s.pad < 0 ||
      s.out_h() < 1 || s.out_w() < 1) {
    fail("ConvPlan: invalid convolution " + shape_string(s) +
         " (sizes must be positive and the kernel must fit the padded input)");
  }
  State& st = *state_;
  st.shape = shape;
  st.deterministic = deterministic;
  st.training = use == PlanUse::Training;
  st.handle = shared_cudnn_handle();
  // The shared handle may still name the stream of an earlier plan's last call,
  // which may be gone; the search and the warm-up run on the default stream.
  KD_CUDNN_CHECK(cudnnSetStream(st.cudnn(), nullptr));
  st.describe_tensors();
  st.choose_algorithms();
}

ConvPlan::~ConvPlan() = default;

void ConvPlan::forward(const float* x, const float* w, const float* bias, float* y, bool relu, cudaStream_t stream) {
  State& st = *state_;
  KD_CUDNN_CHECK(cudnnSetStream(st.cudnn(), stream));
  const float one = 1.0f, zero = 0.0f;
  if (relu && bias != nullptr && st.fused_bias_relu && !st.unfused_forced) {
    KD_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(st.cudnn(), &one, st.x_desc, x, st.w_desc, w, st.conv_desc,
                                                         st.fwd_algo, st.workspace.data(), st.workspace.bytes(), &zero,
                                                         st.y_desc, y, st.bias_desc, bias, st.relu_desc, st.y_desc, y));
    return;
  }
  KD_CUDNN_CHECK(cudnnConvolutionForward(st.cudnn(), &one, st.x_desc, x, st.w_desc, w, st.conv_desc, st.fwd_algo,
                                         st.workspace.data(), st.workspace.bytes(), &zero, st.y_desc, y));
  if (bias == nullptr && !relu) return;
  const int hw = st.shape.out_h() * st.shape.out_w();
  if (relu) {
    launch(bias_activation_kernel<true>, blocks_for(st.y_count()), kBlockThreads, 0, stream, y, bias, st.y_count(),
           st.shape.out_c, hw);
  } else {
    launch(bias_activation_kernel<false>, blocks_for(st.y_count()), kBlockThreads, 0, stream, y, bias, st.y_count(),
           st.shape.out_c, hw);
  }
  KD_CUDA_CHECK_LAUNCH(bias_activation_kernel);
}

void ConvPlan::require_training(const char* call) const {
  if (!state_->training)
    fail(std::string("ConvPlan::") + call + ": this plan for " + shape_string(state_->shape) +
         " was made for inference (forward only); make it with PlanUse::Training");
}

bool ConvPlan::fused_forward() const { return state_->fused_bias_relu && !state_->unfused_forced; }
void ConvPlan::force_unfused_forward() { state_->unfused_forced = true; }

void ConvPlan::backward_data(const float* dy, const float* w, float* dx, cudaStream_t stream) {
  require_training("backward_data");
  State& st = *state_;
  KD_CUDNN_CHECK(cudnnSetStream(st.cudnn(), stream));
  const float one = 1.0f, zero = 0.0f;
  KD_CUDNN_CHECK(cudnnConvolutionBackwardData(st.cudnn(), &one, st.w_desc, w, st.y_desc, dy, st.conv_desc,
                                              st.bwd_data_algo, st.workspace.data(), st.workspace.bytes(), &zero,
                                              st.x_desc, dx));
}

void ConvPlan::backward_filter(const float* x, const float* dy, float* dw, float* db, cudaStream_t stream) {
  require_training("backward_filter");
  State& st = *state_;
  KD_CUDNN_CHECK(cudnnSetStream(st.cudnn(), stream));
  const float one = 1.0f, zero = 0.0f;
  KD_CUDNN_CHECK(cudnnConvolutionBackwardFilter(st.cudnn(), &one, st.x_desc, x, st.y_desc, dy, st.conv_desc,
                                                st.bwd_filter_algo, st.workspace.data(), st.workspace.bytes(), &zero,
                                                st.w_desc, dw));
  if (db == nullptr) return;
  // db as a fixed-order two-pass reduction rather than
  // cudnnConvolutionBackwardBias, whose summation order is not documented.
  const ref::ConvShape& s = st.shape;
  const dim3 partial_grid(unsigned(st.bias_splits), unsigned(s.out_c));
  launch(bias_grad_partial_kernel, partial_grid, kBlockThreads, 0, stream, dy, st.bias_partial.data(), s.n, s.out_c,
         s.out_h() * s.out_w(), st.bias_images_per_split);
  KD_CUDA_CHECK_LAUNCH(bias_grad_partial_kernel);
  launch(bias_grad_finish_kernel, (s.out_c + kBlockThreads - 1) / kBlockThreads, kBlockThreads, 0, stream,
         st.bias_partial.data(), db, s.out_c, st.bias_splits);
  KD_CUDA_CHECK_LAUNCH(bias_grad_finish_kernel);
}

std::string ConvPlan::describe() const {
  const State& st = *state_;
  char buf[256];
  if (!st.training) {
    std::snprintf(buf, sizeof buf, "fwd=%s%s (inference only) workspace=%.1f MiB", algo_name(st.fwd_algo),
                  st.fused_bias_relu ? "+bias_relu" : "", st.workspace.bytes() / double(1 << 20));
    return buf;
  }
  std::snprintf(buf, sizeof buf, "fwd=%s%s bwd_data=%s bwd_filter=%s workspace=%.1f MiB (%s)", algo_name(st.fwd_algo),
                st.fused_bias_relu ? "+bias_relu" : "", algo_name(st.bwd_data_algo), algo_name(st.bwd_filter_algo),
                st.workspace.bytes() / double(1 << 20), st.deterministic ? "heuristic, deterministic" : "timed");
  return buf;
}

}  // namespace kd::cuda
