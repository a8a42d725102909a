// cuDNN under the CUDA simulator: the legacy convolution API computed on the
// host (see include/cudnn.h for what is modelled and what is not). Every call
// validates its arguments first, as the library does, and answers with the
// documented status and a message for cudnnGetLastErrorString; only the
// arithmetic is queued on the handle's stream (kdsim::enqueue).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cudnn.h"
#include "sim_internal.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

namespace {

// Four dimensions and their strides in elements: (n, c, h, w) of a tensor or
// (k, c, r, s) of a filter.
struct Dims4 {
  std::array<int, 4> d{};
  std::array<int64_t, 4> stride{};
  int64_t at(int a, int b, int c, int e) const { return a * stride[0] + b * stride[1] + c * stride[2] + e * stride[3]; }
  // Elements from the first to one past the last addressed one.
  int64_t extent() const {
    int64_t last = 0;
    for (int i = 0; i < 4; ++i) last += int64_t(d[i] - 1) * stride[i];
    return last + 1;
  }
  bool same_dims(const Dims4& o) const { return d == o.d; }
};

// Strides of a packed layout: NCHW (or KCRS) keeps the last dimension
// contiguous, NHWC (or KRSC) the channel.
Dims4 packed(cudnnTensorFormat_t format, int a, int b, int c, int e) {
  Dims4 t{{a, b, c, e}, {}};
  if (format == CUDNN_TENSOR_NCHW) t.stride = {int64_t(b) * c * e, int64_t(c) * e, e, 1};
  else t.stride = {int64_t(c) * e * b, 1, int64_t(e) * b, b};
  return t;
}

}  // namespace

struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  Dims4 dims;
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  Dims4 dims;  // (k, c, r, s)
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CONVOLUTION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;  // a new descriptor's, as documented
};
struct cudnnActivationStruct {
  bool set = false;
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_RELU;
  cudnnNanPropagation_t nan = CUDNN_NOT_PROPAGATE_NAN;
  double coef = 0;
};

namespace {

thread_local std::string t_last_error;

// Records why `call` failed (for cudnnGetLastErrorString) and returns `status`.
cudnnStatus_t fail(const char* call, cudnnStatus_t status, const std::string& why) {
  t_last_error = std::string(call) + ": " + why;
  return status;
}

bool valid_type(cudnnDataType_t t) { return int(t) >= CUDNN_DATA_FLOAT && int(t) <= CUDNN_DATA_HALF; }

// One validated convolution: x (n, c, h, w), w (k, c, r, s), y (n, k, oh, ow).
struct Conv {
  Dims4 x, w, y;
  int pad_h, pad_w, u, v, dil_h, dil_w;
  bool flip;  // CUDNN_CONVOLUTION: the filter is applied flipped in r and s
  cudnnMathType_t math;
  int64_t macs() const { return int64_t(y.d[0]) * y.d[1] * y.d[2] * y.d[3] * w.d[1] * w.d[2] * w.d[3]; }
  bool unit_stride() const { return u == 1 && v == 1 && dil_h == 1 && dil_w == 1; }
};

// The output size along one dimension, or < 1 when the dilated filter does
// not fit the padded input.
int output_size(int in, int pad, int k, int dil, int stride) {
  const int span = (k - 1) * dil + 1;
  return in + 2 * pad < span ? 0 : 1 + (in + 2 * pad - span) / stride;
}

// The checks every convolution call makes on its descriptors. For the
// backward passes x is dx and y is dy.
cudnnStatus_t check_conv(const char* call, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd,
                         cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, Conv* out) {
  if (!xd || !wd || !cd || !yd) return fail(call, CUDNN_STATUS_BAD_PARAM, "a descriptor is null");
  if (!xd->set || !wd->set || !cd->set || !yd->set)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "a descriptor was created but never set");
  if (xd->type != wd->type || xd->type != yd->type)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "x, w and y have different data types");
  if (xd->type != CUDNN_DATA_FLOAT || cd->compute != CUDNN_DATA_FLOAT)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "the simulation computes CUDNN_DATA_FLOAT only");
  const Dims4 &x = xd->dims, &w = wd->dims, &y = yd->dims;
  if (x.d[1] != w.d[1])
    return fail(call, CUDNN_STATUS_BAD_PARAM,
                "x has " + std::to_string(x.d[1]) + " channels, the filter " + std::to_string(w.d[1]));
  const int oh = output_size(x.d[2], cd->pad_h, w.d[2], cd->dil_h, cd->u);
  const int ow = output_size(x.d[3], cd->pad_w, w.d[3], cd->dil_w, cd->v);
  if (oh < 1 || ow < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "the dilated filter is larger than the padded input");
  if (y.d[0] != x.d[0] || y.d[1] != w.d[0])
    return fail(call, CUDNN_STATUS_BAD_PARAM,
                "y is (" + std::to_string(y.d[0]) + ", " + std::to_string(y.d[1]) + ", ...), expected (" +
                    std::to_string(x.d[0]) + ", " + std::to_string(w.d[0]) + ", ...)");
  if (y.d[2] != oh || y.d[3] != ow)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED,
                "y is " + std::to_string(y.d[2]) + "x" + std::to_string(y.d[3]) + ", the convolution gives " +
                    std::to_string(oh) + "x" + std::to_string(ow));
  *out =
      Conv{x, w, y, cd->pad_h, cd->pad_w, cd->u, cd->v, cd->dil_h, cd->dil_w, cd->mode == CUDNN_CONVOLUTION, cd->math};
  return CUDNN_STATUS_SUCCESS;
}

// Calls f(x_offset, w_offset, y_offset) for every product x * w that is part
// of y, in a fixed order: y element by element (n, k, oh, ow), then (c, r, s).
// Taps in the padding are skipped.
template <typename F>
void for_each_product(const Conv& g, F&& f) {
  const int n = g.y.d[0], k = g.y.d[1], oh = g.y.d[2], ow = g.y.d[3];
  const int c = g.w.d[1], r = g.w.d[2], s = g.w.d[3], h = g.x.d[2], w = g.x.d[3];
  for (int in = 0; in < n; ++in)
    for (int ik = 0; ik < k; ++ik)
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) {
          const int64_t y_at = g.y.at(in, ik, oy, ox);
          for (int ic = 0; ic < c; ++ic)
            for (int ir = 0; ir < r; ++ir) {
              const int iy = oy * g.u - g.pad_h + ir * g.dil_h;
              if (iy < 0 || iy >= h) continue;
              for (int is = 0; is < s; ++is) {
                const int ix = ox * g.v - g.pad_w + is * g.dil_w;
                if (ix < 0 || ix >= w) continue;
                const int64_t w_at = g.flip ? g.w.at(ik, ic, r - 1 - ir, s - 1 - is) : g.w.at(ik, ic, ir, is);
                f(g.x.at(in, ic, iy, ix), w_at, y_at);
              }
            }
        }
}

// out = alpha * acc + beta * out over every element of `d` (acc indexed like
// out), in double, rounded once; out is not read when beta == 0.
void blend(const Dims4& d, const std::vector<double>& acc, float alpha, float beta, float* out) {
  for (int a = 0; a < d.d[0]; ++a)
    for (int b = 0; b < d.d[1]; ++b)
      for (int c = 0; c < d.d[2]; ++c)
        for (int e = 0; e < d.d[3]; ++e) {
          const int64_t i = d.at(a, b, c, e);
          const double v = double(alpha) * acc[size_t(i)];
          out[i] = float(beta == 0.0f ? v : v + double(beta) * out[i]);
        }
}

// ------------------------------------------------------------------ algorithms
// A simulated algorithm: which shapes it takes, its workspace, its documented
// determinism, and its cost per multiply-add for the modelled time of Find.
struct Algo {
  int id;
  bool deterministic;
  double cost;
  bool (*supports)(const Conv&);
  size_t (*workspace)(const Conv&);
};
struct AlgoTable {
  const Algo* algos;  // in heuristic (cudnnGet*_v7) order
  int count;
  const Algo* find(int id) const {
    for (int i = 0; i < count; ++i)
      if (algos[i].id == id) return &algos[i];
    return nullptr;
  }
};

bool any_shape(const Conv&) { return true; }
bool no_shape(const Conv&) { return false; }
bool fft_shape(const Conv& g) {
  return g.unit_stride() && g.x.d[2] + 2 * g.pad_h <= 256 && g.x.d[3] + 2 * g.pad_w <= 256;
}
bool fft_tiling_shape(const Conv& g) { return g.unit_stride() && g.w.d[2] <= 32 && g.w.d[3] <= 32; }
bool winograd_shape(const Conv& g) { return g.unit_stride() && g.w.d[2] == 3 && g.w.d[3] == 3; }
bool winograd_nonfused_shape(const Conv& g) {
  return g.unit_stride() && g.w.d[2] == g.w.d[3] && (g.w.d[2] == 3 || g.w.d[2] == 5);
}

size_t no_workspace(const Conv&) { return 0; }
size_t filter_bytes(const Conv& g) { return size_t(g.w.d[0]) * g.w.d[1] * g.w.d[2] * g.w.d[3] * sizeof(float); }
// Precomputed input offsets, one per (c, r, s) tap.
size_t index_bytes(const Conv& g) { return size_t(g.w.d[1]) * g.w.d[2] * g.w.d[3] * sizeof(int); }
// One image's im2col matrix: (c r s) x (oh ow).
size_t im2col_bytes(const Conv& g) { return index_bytes(g) * g.y.d[2] * g.y.d[3]; }
// Complex spectra of x, w and y over the padded plane.
size_t fft_bytes(const Conv& g) {
  const size_t planes = size_t(g.x.d[0]) * g.x.d[1] + size_t(g.w.d[0]) * g.w.d[1] + size_t(g.y.d[0]) * g.y.d[1];
  return planes * (g.x.d[2] + 2 * g.pad_h) * ((g.x.d[3] + 2 * g.pad_w) / 2 + 1) * 2 * sizeof(float);
}
// The same over 32x32 tiles.
size_t fft_tiling_bytes(const Conv& g) {
  const size_t planes = size_t(g.x.d[0]) * g.x.d[1] + size_t(g.w.d[0]) * g.w.d[1] + size_t(g.y.d[0]) * g.y.d[1];
  return planes * 32 * 17 * 2 * sizeof(float);
}
// Transformed filters as 4x4 tiles (F(2x2, 3x3)).
size_t winograd_bytes(const Conv& g) { return size_t(g.w.d[0]) * g.w.d[1] * 16 * sizeof(float); }
// Transformed input, filter and output tiles held between separate kernels.
size_t winograd_nonfused_bytes(const Conv& g) {
  const size_t tiles = size_t((g.y.d[2] + 3) / 4) * ((g.y.d[3] + 3) / 4);
  return (size_t(g.x.d[0]) * g.x.d[1] * tiles + size_t(g.w.d[0]) * g.w.d[1] + size_t(g.y.d[0]) * g.y.d[1] * tiles) *
         36 * sizeof(float);
}
// Partial filter gradients of four image groups, summed at the end.
size_t split_filter_bytes(const Conv& g) { return 4 * filter_bytes(g); }

// DIRECT is documented as not implemented for the forward pass, WINOGRAD for the backward filter pass.
constexpr Algo kFwdAlgos[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, 0.8, any_shape, index_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, true, 0.6, winograd_shape, winograd_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, 1.0, any_shape, no_workspace},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, 0.9, any_shape, im2col_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, 0.65, winograd_nonfused_shape, winograd_nonfused_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, true, 0.75, fft_tiling_shape, fft_tiling_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, 0.7, fft_shape, fft_bytes},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, true, 1.0, no_shape, no_workspace},
};
constexpr Algo kBwdDataAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, 0.8, any_shape, filter_bytes},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false, 1.0, any_shape, no_workspace},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, true, 0.6, winograd_shape, winograd_bytes},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, 0.65, winograd_nonfused_shape, winograd_nonfused_bytes},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true, 0.75, fft_tiling_shape, fft_tiling_bytes},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, true, 0.7, fft_shape, fft_bytes},
};
constexpr Algo kBwdFilterAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 0.8, any_shape, im2col_bytes},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, 1.0, any_shape, no_workspace},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false, 0.6, any_shape, split_filter_bytes},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true, 0.65, winograd_nonfused_shape, winograd_nonfused_bytes},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, true, 0.75, fft_tiling_shape, fft_tiling_bytes},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 0.7, fft_shape, fft_bytes},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, true, 1.0, no_shape, no_workspace},
};
static_assert(std::size(kFwdAlgos) == CUDNN_CONVOLUTION_FWD_ALGO_COUNT, "every forward algorithm is listed");
static_assert(std::size(kBwdDataAlgos) == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, "every backward data algorithm");
static_assert(std::size(kBwdFilterAlgos) == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, "every backward filter algorithm");
constexpr AlgoTable kFwd{kFwdAlgos, CUDNN_CONVOLUTION_FWD_ALGO_COUNT};
constexpr AlgoTable kBwdData{kBwdDataAlgos, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT};
constexpr AlgoTable kBwdFilter{kBwdFilterAlgos, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};

// Find (timed: supported algorithms by modelled time) or _v7 (heuristic
// order) for one direction; unsupported algorithms come last either way.
template <typename Perf>
cudnnStatus_t rank_algorithms(const char* call, cudnnHandle_t handle, const Conv& g, cudnnStatus_t checked,
                              const AlgoTable& table, bool timed, int requested, int* returned, Perf* results) {
  if (!handle) return fail(call, CUDNN_STATUS_BAD_PARAM, "the handle is null");
  if (checked != CUDNN_STATUS_SUCCESS) return checked;
  if (!returned || !results) return fail(call, CUDNN_STATUS_BAD_PARAM, "returnedAlgoCount or perfResults is null");
  if (requested < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "requestedAlgoCount must be at least 1");
  std::vector<Perf> all;
  for (int i = 0; i < table.count; ++i) {
    const Algo& a = table.algos[i];
    Perf p{};
    p.algo = decltype(p.algo)(a.id);
    const bool ok = a.supports(g);
    p.status = ok ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    p.time = ok && timed ? float(a.cost * double(g.macs()) * 1e-9) : -1.0f;  // ms: 1 ps per multiply-add at cost 1
    p.memory = ok ? a.workspace(g) : 0;
    p.determinism = a.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    p.mathType = g.math;
    all.push_back(p);
  }
  std::stable_sort(all.begin(), all.end(), [&](const Perf& a, const Perf& b) {
    if ((a.status == CUDNN_STATUS_SUCCESS) != (b.status == CUDNN_STATUS_SUCCESS))
      return a.status == CUDNN_STATUS_SUCCESS;
    return timed && a.status == CUDNN_STATUS_SUCCESS && a.time < b.time;
  });
  *returned = std::min(requested, table.count);
  std::copy(all.begin(), all.begin() + *returned, results);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t workspace_size(const char* call, cudnnHandle_t handle, const Conv& g, cudnnStatus_t checked,
                             const AlgoTable& table, int id, size_t* bytes) {
  if (!handle || !bytes) return fail(call, CUDNN_STATUS_BAD_PARAM, "the handle or sizeInBytes is null");
  if (checked != CUDNN_STATUS_SUCCESS) return checked;
  const Algo* a = table.find(id);
  if (!a) return fail(call, CUDNN_STATUS_BAD_PARAM, "algorithm " + std::to_string(id) + " does not exist");
  if (!a->supports(g))
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "algorithm " + std::to_string(id) + " does not support this shape");
  *bytes = a->workspace(g);
  return CUDNN_STATUS_SUCCESS;
}

// A device range the call reads or writes; a bad one is reported by the
// simulator and fails the call as the illegal access would.
bool range_ok(const char* call, const char* name, const void* p, int64_t elements,
              size_t element_bytes = sizeof(float)) {
  std::string why;
  if (kdsim::device_range_ok(p, size_t(elements) * element_bytes, &why)) return true;
  kdsim::report(std::string(call) + ": " + name + ": " + why);
  fail(call, CUDNN_STATUS_EXECUTION_FAILED, std::string(name) + ": " + why);
  return false;
}

// What every execution call checks before its own arguments: the handle, the
// scaling factors, the descriptors (check_conv's status) and the algorithm
// with its workspace. Returns the workspace the algorithm needs in *needed.
cudnnStatus_t check_execution(const char* call, cudnnHandle_t handle, const void* alpha, const void* beta,
                              cudnnStatus_t checked, const Conv& g, const AlgoTable& table, int id,
                              const void* workspace, size_t workspace_bytes, size_t* needed) {
  if (!handle) return fail(call, CUDNN_STATUS_BAD_PARAM, "the handle is null");
  if (!alpha || !beta) return fail(call, CUDNN_STATUS_BAD_PARAM, "alpha or beta is null");
  if (checked != CUDNN_STATUS_SUCCESS) return checked;
  if (cudnnStatus_t s = workspace_size(call, handle, g, checked, table, id, needed)) return s;
  if (workspace_bytes < *needed || (*needed > 0 && !workspace))
    return fail(call, CUDNN_STATUS_BAD_PARAM,
                "algorithm " + std::to_string(id) + " needs " + std::to_string(*needed) + " bytes of workspace, got " +
                    std::to_string(workspace ? workspace_bytes : 0));
  if (*needed > 0 && !range_ok(call, "workspace", workspace, int64_t(*needed), 1)) return CUDNN_STATUS_EXECUTION_FAILED;
  return CUDNN_STATUS_SUCCESS;
}

// Queues `work` on the handle's stream after the algorithm scribbles over the
// workspace it claimed (so sharing that workspace with other live work shows).
template <typename Work>
cudnnStatus_t run(const char* call, cudnnHandle_t handle, void* workspace, size_t needed, Work work) {
  const cudaError_t queued = kdsim::enqueue(handle->stream, call, [=] {
    if (needed > 0) std::memset(workspace, 0xA5, needed);
    work();
  });
  if (queued != cudaSuccess)
    return fail(call, CUDNN_STATUS_EXECUTION_FAILED_CUDART, std::string("the stream: ") + cudaGetErrorString(queued));
  return CUDNN_STATUS_SUCCESS;
}

float activate(const cudnnActivationStruct& act, double v) {
  if (act.mode == CUDNN_ACTIVATION_IDENTITY) return float(v);
  if (std::isnan(v)) return act.nan == CUDNN_PROPAGATE_NAN ? float(v) : 0.0f;
  return v > 0 ? float(v) : 0.0f;
}

bool is_channel_vector(const cudnnTensorStruct* d, int channels) {
  return d && d->set && d->dims.d == std::array<int, 4>{1, channels, 1, 1};
}

}  // namespace

// ------------------------------------------------------------------ library, handle, errors
size_t cudnnGetVersion() { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
#define KDSIM_NAME(s) \
  case s: return #s;
    KDSIM_NAME(CUDNN_STATUS_SUCCESS)
    KDSIM_NAME(CUDNN_STATUS_NOT_INITIALIZED)
    KDSIM_NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    KDSIM_NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    KDSIM_NAME(CUDNN_STATUS_BAD_PARAM)
    KDSIM_NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    KDSIM_NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    KDSIM_NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    KDSIM_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
    KDSIM_NAME(CUDNN_STATUS_INTERNAL_ERROR)
    KDSIM_NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    KDSIM_NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    KDSIM_NAME(CUDNN_STATUS_EXECUTION_FAILED)
    KDSIM_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    KDSIM_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
#undef KDSIM_NAME
  }
  return "CUDNN_UNKNOWN_STATUS";
}

void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (!message || max_size == 0) return;
  const size_t n = std::min(t_last_error.size(), max_size - 1);
  std::memcpy(message, t_last_error.data(), n);
  message[n] = '\0';
  t_last_error.clear();
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return fail("cudnnCreate", CUDNN_STATUS_BAD_PARAM, "handle is null");
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (!handle) return fail("cudnnDestroy", CUDNN_STATUS_BAD_PARAM, "handle is null");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return fail("cudnnSetStream", CUDNN_STATUS_BAD_PARAM, "handle is null");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!handle || !stream) return fail("cudnnGetStream", CUDNN_STATUS_BAD_PARAM, "handle or stream is null");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ descriptors
// Create: null out-pointer is BAD_PARAM; Destroy: null is a no-op, as documented.
#define KDSIM_DESCRIPTOR(Kind, Struct)                                                                \
  cudnnStatus_t cudnnCreate##Kind##Descriptor(Struct** desc) {                                        \
    if (!desc) return fail("cudnnCreate" #Kind "Descriptor", CUDNN_STATUS_BAD_PARAM, "desc is null"); \
    *desc = new Struct;                                                                               \
    return CUDNN_STATUS_SUCCESS;                                                                      \
  }                                                                                                   \
  cudnnStatus_t cudnnDestroy##Kind##Descriptor(Struct* desc) {                                        \
    delete desc;                                                                                      \
    return CUDNN_STATUS_SUCCESS;                                                                      \
  }
KDSIM_DESCRIPTOR(Tensor, cudnnTensorStruct)
KDSIM_DESCRIPTOR(Filter, cudnnFilterStruct)
KDSIM_DESCRIPTOR(Convolution, cudnnConvolutionStruct)
KDSIM_DESCRIPTOR(Activation, cudnnActivationStruct)
#undef KDSIM_DESCRIPTOR

namespace {
// The checks shared by the 4-d tensor and filter setters.
cudnnStatus_t check_4d(const char* call, const void* desc, cudnnDataType_t type, int a, int b, int c, int e) {
  if (!desc) return fail(call, CUDNN_STATUS_BAD_PARAM, "desc is null");
  if (!valid_type(type)) return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown data type " + std::to_string(int(type)));
  if (a < 1 || b < 1 || c < 1 || e < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "every dimension must be positive");
  if (int64_t(a) * b * c * e > INT32_MAX) return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "more than 2 Giga-elements");
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t check_format(const char* call, cudnnTensorFormat_t format) {
  if (format == CUDNN_TENSOR_NCHW || format == CUDNN_TENSOR_NHWC) return CUDNN_STATUS_SUCCESS;
  if (format == CUDNN_TENSOR_NCHW_VECT_C)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "CUDNN_TENSOR_NCHW_VECT_C is not simulated");
  return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown tensor format " + std::to_string(int(format)));
}
}  // namespace

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format, cudnnDataType_t type,
                                         int n, int c, int h, int w) {
  const char* call = "cudnnSetTensor4dDescriptor";
  if (cudnnStatus_t s = check_4d(call, desc, type, n, c, h, w)) return s;
  if (cudnnStatus_t s = check_format(call, format)) return s;
  *desc = cudnnTensorStruct{true, type, packed(format, n, c, h, w)};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t desc, cudnnDataType_t type, int n, int c, int h,
                                           int w, int n_stride, int c_stride, int h_stride, int w_stride) {
  const char* call = "cudnnSetTensor4dDescriptorEx";
  if (cudnnStatus_t s = check_4d(call, desc, type, n, c, h, w)) return s;
  if (n_stride < 1 || c_stride < 1 || h_stride < 1 || w_stride < 1)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "every stride must be positive");
  *desc = cudnnTensorStruct{true, type, Dims4{{n, c, h, w}, {n_stride, c_stride, h_stride, w_stride}}};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  const char* call = "cudnnSetFilter4dDescriptor";
  if (cudnnStatus_t s = check_4d(call, desc, type, k, c, h, w)) return s;
  if (cudnnStatus_t s = check_format(call, format)) return s;
  *desc = cudnnFilterStruct{true, type, packed(format, k, c, h, w)};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute_type) {
  const char* call = "cudnnSetConvolution2dDescriptor";
  if (!desc) return fail(call, CUDNN_STATUS_BAD_PARAM, "desc is null");
  if (pad_h < 0 || pad_w < 0) return fail(call, CUDNN_STATUS_BAD_PARAM, "padding must be >= 0");
  if (u < 1 || v < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "strides must be >= 1");
  if (dilation_h < 1 || dilation_w < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "dilations must be >= 1");
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown convolution mode " + std::to_string(int(mode)));
  if (!valid_type(compute_type)) return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown compute type");
  desc->set = true;
  desc->pad_h = pad_h, desc->pad_w = pad_w, desc->u = u, desc->v = v, desc->dil_h = dilation_h,
  desc->dil_w = dilation_w;
  desc->mode = mode;
  desc->compute = compute_type;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math_type) {
  const char* call = "cudnnSetConvolutionMathType";
  if (!desc) return fail(call, CUDNN_STATUS_BAD_PARAM, "desc is null");
  if (int(math_type) < CUDNN_DEFAULT_MATH || int(math_type) > CUDNN_FMA_MATH)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown math type " + std::to_string(int(math_type)));
  desc->math = math_type;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t conv,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int* n, int* c, int* h, int* wo) {
  const char* call = "cudnnGetConvolution2dForwardOutputDim";
  if (!conv || !x || !w || !n || !c || !h || !wo) return fail(call, CUDNN_STATUS_BAD_PARAM, "an argument is null");
  if (!conv->set || !x->set || !w->set) return fail(call, CUDNN_STATUS_BAD_PARAM, "a descriptor was never set");
  if (x->dims.d[1] != w->dims.d[1])
    return fail(call, CUDNN_STATUS_BAD_PARAM, "x and the filter have different channel counts");
  const int oh = output_size(x->dims.d[2], conv->pad_h, w->dims.d[2], conv->dil_h, conv->u);
  const int ow = output_size(x->dims.d[3], conv->pad_w, w->dims.d[3], conv->dil_w, conv->v);
  if (oh < 1 || ow < 1) return fail(call, CUDNN_STATUS_BAD_PARAM, "the dilated filter is larger than the padded input");
  *n = x->dims.d[0], *c = w->dims.d[0], *h = oh, *wo = ow;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t desc, cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t nan_option, double coef) {
  const char* call = "cudnnSetActivationDescriptor";
  if (!desc) return fail(call, CUDNN_STATUS_BAD_PARAM, "desc is null");
  if (int(mode) < CUDNN_ACTIVATION_SIGMOID || int(mode) > CUDNN_ACTIVATION_SWISH)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown activation mode " + std::to_string(int(mode)));
  if (nan_option != CUDNN_NOT_PROPAGATE_NAN && nan_option != CUDNN_PROPAGATE_NAN)
    return fail(call, CUDNN_STATUS_BAD_PARAM, "unknown NaN propagation option");
  *desc = cudnnActivationStruct{true, mode, nan_option, coef};
  return CUDNN_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ algorithm queries
namespace {
cudnnStatus_t max_count(const char* call, cudnnHandle_t handle, int* count, int value) {
  if (!handle || !count) return fail(call, CUDNN_STATUS_BAD_PARAM, "handle or count is null");
  *count = value;
  return CUDNN_STATUS_SUCCESS;
}
}  // namespace

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionForwardAlgorithmMaxCount", handle, count, kFwd.count);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionBackwardDataAlgorithmMaxCount", handle, count, kBwdData.count);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", handle, count, kBwdFilter.count);
}

// Each query: the descriptors in the forward roles (x, w, y), then the ranking.
#define KDSIM_RANK(Function, Perf, table, timed, X, W, Y, ...)                                                   \
  cudnnStatus_t Function(cudnnHandle_t handle, __VA_ARGS__, const int requested, int* returned, Perf* results) { \
    Conv g{};                                                                                                    \
    const cudnnStatus_t checked = check_conv(#Function, X, W, conv, Y, &g);                                      \
    return rank_algorithms(#Function, handle, g, checked, table, timed, requested, returned, results);           \
  }
KDSIM_RANK(cudnnFindConvolutionForwardAlgorithm, cudnnConvolutionFwdAlgoPerf_t, kFwd, true, x, w, y,
           const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w, const cudnnConvolutionDescriptor_t conv,
           const cudnnTensorDescriptor_t y)
KDSIM_RANK(cudnnGetConvolutionForwardAlgorithm_v7, cudnnConvolutionFwdAlgoPerf_t, kFwd, false, x, w, y,
           const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w, const cudnnConvolutionDescriptor_t conv,
           const cudnnTensorDescriptor_t y)
KDSIM_RANK(cudnnFindConvolutionBackwardDataAlgorithm, cudnnConvolutionBwdDataAlgoPerf_t, kBwdData, true, dx, w, dy,
           const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy, const cudnnConvolutionDescriptor_t conv,
           const cudnnTensorDescriptor_t dx)
KDSIM_RANK(cudnnGetConvolutionBackwardDataAlgorithm_v7, cudnnConvolutionBwdDataAlgoPerf_t, kBwdData, false, dx, w, dy,
           const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy, const cudnnConvolutionDescriptor_t conv,
           const cudnnTensorDescriptor_t dx)
KDSIM_RANK(cudnnFindConvolutionBackwardFilterAlgorithm, cudnnConvolutionBwdFilterAlgoPerf_t, kBwdFilter, true, x, dw,
           dy, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
           const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw)
KDSIM_RANK(cudnnGetConvolutionBackwardFilterAlgorithm_v7, cudnnConvolutionBwdFilterAlgoPerf_t, kBwdFilter, false, x, dw,
           dy, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
           const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw)
#undef KDSIM_RANK

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t conv,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  const char* call = "cudnnGetConvolutionForwardWorkspaceSize";
  Conv g{};
  const cudnnStatus_t checked = check_conv(call, x, w, conv, y, &g);
  return workspace_size(call, handle, g, checked, kFwd, algo, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t w,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t conv,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  const char* call = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  Conv g{};
  const cudnnStatus_t checked = check_conv(call, dx, w, conv, dy, &g);
  return workspace_size(call, handle, g, checked, kBwdData, algo, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t x,
                                                             const cudnnTensorDescriptor_t dy,
                                                             const cudnnConvolutionDescriptor_t conv,
                                                             const cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  const char* call = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  Conv g{};
  const cudnnStatus_t checked = check_conv(call, x, dw, conv, dy, &g);
  return workspace_size(call, handle, g, checked, kBwdFilter, algo, bytes);
}

// ------------------------------------------------------------------ execution
// x: (n, c, h, w), w: (k, c, r, s), y: (n, k, oh, ow), each as its descriptor lays it out.
cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t x_desc,
                                      const void* x, const cudnnFilterDescriptor_t w_desc, const void* w,
                                      const cudnnConvolutionDescriptor_t conv, cudnnConvolutionFwdAlgo_t algo,
                                      void* workspace, size_t workspace_bytes, const void* beta,
                                      const cudnnTensorDescriptor_t y_desc, void* y) {
  const char* call = "cudnnConvolutionForward";
  Conv g{};
  size_t needed = 0;
  const cudnnStatus_t checked = check_conv(call, x_desc, w_desc, conv, y_desc, &g);
  if (cudnnStatus_t s =
          check_execution(call, handle, alpha, beta, checked, g, kFwd, algo, workspace, workspace_bytes, &needed))
    return s;
  if (!x || !w || !y) return fail(call, CUDNN_STATUS_BAD_PARAM, "x, w or y is null");
  if (!range_ok(call, "x", x, g.x.extent()) || !range_ok(call, "w", w, g.w.extent()) ||
      !range_ok(call, "y", y, g.y.extent()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const float *xs = static_cast<const float*>(x), *ws = static_cast<const float*>(w);
  float* ys = static_cast<float*>(y);
  return run(call, handle, workspace, needed, [=] {
    std::vector<double> acc(size_t(g.y.extent()), 0.0);
    for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { acc[size_t(yi)] += double(xs[xi]) * ws[wi]; });
    blend(g.y, acc, a, b, ys);
  });
}

// y = act(alpha1 conv(x) + alpha2 z + bias); z: like y, bias: (1, k, 1, 1).
cudnnStatus_t cudnnConvolutionBiasActivationForward(
    cudnnHandle_t handle, const void* alpha1, const cudnnTensorDescriptor_t x_desc, const void* x,
    const cudnnFilterDescriptor_t w_desc, const void* w, const cudnnConvolutionDescriptor_t conv,
    cudnnConvolutionFwdAlgo_t algo, void* workspace, size_t workspace_bytes, const void* alpha2,
    const cudnnTensorDescriptor_t z_desc, const void* z, const cudnnTensorDescriptor_t bias_desc, const void* bias,
    const cudnnActivationDescriptor_t activation, const cudnnTensorDescriptor_t y_desc, void* y) {
  const char* call = "cudnnConvolutionBiasActivationForward";
  Conv g{};
  size_t needed = 0;
  const cudnnStatus_t checked = check_conv(call, x_desc, w_desc, conv, y_desc, &g);
  if (cudnnStatus_t s =
          check_execution(call, handle, alpha1, alpha2, checked, g, kFwd, algo, workspace, workspace_bytes, &needed))
    return s;
  if (!x || !w || !y || !z || !bias) return fail(call, CUDNN_STATUS_BAD_PARAM, "x, w, z, bias or y is null");
  if (!activation || !activation->set) return fail(call, CUDNN_STATUS_BAD_PARAM, "the activation descriptor is unset");
  if (!z_desc || !z_desc->set || !z_desc->dims.same_dims(g.y))
    return fail(call, CUDNN_STATUS_BAD_PARAM, "z must have y's dimensions");
  if (!is_channel_vector(bias_desc, g.y.d[1]))
    return fail(call, CUDNN_STATUS_BAD_PARAM, "bias must be (1, " + std::to_string(g.y.d[1]) + ", 1, 1)");
  if (activation->mode != CUDNN_ACTIVATION_RELU && activation->mode != CUDNN_ACTIVATION_IDENTITY)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "only RELU and IDENTITY activations are supported");
  if (activation->mode == CUDNN_ACTIVATION_IDENTITY && algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "IDENTITY needs CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM");
  const float a2 = *static_cast<const float*>(alpha2);
  if (!range_ok(call, "x", x, g.x.extent()) || !range_ok(call, "w", w, g.w.extent()) ||
      !range_ok(call, "y", y, g.y.extent()) || !range_ok(call, "bias", bias, bias_desc->dims.extent()) ||
      (a2 != 0.0f && !range_ok(call, "z", z, z_desc->dims.extent())))
    return CUDNN_STATUS_EXECUTION_FAILED;
  const float a1 = *static_cast<const float*>(alpha1);
  const float *xs = static_cast<const float*>(x), *ws = static_cast<const float*>(w);
  const float *zs = static_cast<const float*>(z), *bs = static_cast<const float*>(bias);
  float* ys = static_cast<float*>(y);
  const Dims4 zd = z_desc->dims, bd = bias_desc->dims;
  const cudnnActivationStruct act = *activation;
  return run(call, handle, workspace, needed, [=] {
    std::vector<double> acc(size_t(g.y.extent()), 0.0);
    for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { acc[size_t(yi)] += double(xs[xi]) * ws[wi]; });
    for (int n = 0; n < g.y.d[0]; ++n)
      for (int k = 0; k < g.y.d[1]; ++k)
        for (int i = 0; i < g.y.d[2]; ++i)
          for (int j = 0; j < g.y.d[3]; ++j) {
            const int64_t yi = g.y.at(n, k, i, j);
            double v = double(a1) * acc[size_t(yi)] + bs[bd.at(0, k, 0, 0)];
            if (a2 != 0.0f) v += double(a2) * zs[zd.at(n, k, i, j)];
            ys[yi] = activate(act, v);
          }
  });
}

// dx: (n, c, h, w) = alpha * (dy: (n, k, oh, ow) convolved back through w) + beta * dx.
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t w_desc, const void* w,
                                           const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           const cudnnConvolutionDescriptor_t conv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void* workspace, size_t workspace_bytes, const void* beta,
                                           const cudnnTensorDescriptor_t dx_desc, void* dx) {
  const char* call = "cudnnConvolutionBackwardData";
  Conv g{};
  size_t needed = 0;
  const cudnnStatus_t checked = check_conv(call, dx_desc, w_desc, conv, dy_desc, &g);
  if (cudnnStatus_t s =
          check_execution(call, handle, alpha, beta, checked, g, kBwdData, algo, workspace, workspace_bytes, &needed))
    return s;
  if (!w || !dy || !dx) return fail(call, CUDNN_STATUS_BAD_PARAM, "w, dy or dx is null");
  if (!range_ok(call, "w", w, g.w.extent()) || !range_ok(call, "dy", dy, g.y.extent()) ||
      !range_ok(call, "dx", dx, g.x.extent()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const float *ws = static_cast<const float*>(w), *dys = static_cast<const float*>(dy);
  float* dxs = static_cast<float*>(dx);
  return run(call, handle, workspace, needed, [=] {
    std::vector<double> acc(size_t(g.x.extent()), 0.0);
    for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { acc[size_t(xi)] += double(dys[yi]) * ws[wi]; });
    blend(g.x, acc, a, b, dxs);
  });
}

// dw: (k, c, r, s) = alpha * (x: (n, c, h, w) correlated with dy: (n, k, oh, ow)) + beta * dw.
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t x_desc, const void* x,
                                             const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                             const cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workspace,
                                             size_t workspace_bytes, const void* beta,
                                             const cudnnFilterDescriptor_t dw_desc, void* dw) {
  const char* call = "cudnnConvolutionBackwardFilter";
  Conv g{};
  size_t needed = 0;
  const cudnnStatus_t checked = check_conv(call, x_desc, dw_desc, conv, dy_desc, &g);
  if (cudnnStatus_t s =
          check_execution(call, handle, alpha, beta, checked, g, kBwdFilter, algo, workspace, workspace_bytes, &needed))
    return s;
  if (!x || !dy || !dw) return fail(call, CUDNN_STATUS_BAD_PARAM, "x, dy or dw is null");
  if (!range_ok(call, "x", x, g.x.extent()) || !range_ok(call, "dy", dy, g.y.extent()) ||
      !range_ok(call, "dw", dw, g.w.extent()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const float *xs = static_cast<const float*>(x), *dys = static_cast<const float*>(dy);
  float* dws = static_cast<float*>(dw);
  return run(call, handle, workspace, needed, [=] {
    std::vector<double> acc(size_t(g.w.extent()), 0.0);
    for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { acc[size_t(wi)] += double(xs[xi]) * dys[yi]; });
    blend(g.w, acc, a, b, dws);
  });
}

// db: (1, k, 1, 1) = alpha * (sum of dy: (n, k, oh, ow) over n, oh, ow) + beta * db.
cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void* alpha,
                                           const cudnnTensorDescriptor_t dy_desc, const void* dy, const void* beta,
                                           const cudnnTensorDescriptor_t db_desc, void* db) {
  const char* call = "cudnnConvolutionBackwardBias";
  if (!handle) return fail(call, CUDNN_STATUS_BAD_PARAM, "the handle is null");
  if (!alpha || !beta || !dy || !db) return fail(call, CUDNN_STATUS_BAD_PARAM, "alpha, beta, dy or db is null");
  if (!dy_desc || !dy_desc->set) return fail(call, CUDNN_STATUS_BAD_PARAM, "dyDesc is null or unset");
  if (!is_channel_vector(db_desc, dy_desc->dims.d[1]))
    return fail(call, CUDNN_STATUS_BAD_PARAM, "db must be (1, " + std::to_string(dy_desc->dims.d[1]) + ", 1, 1)");
  if (dy_desc->type != CUDNN_DATA_FLOAT || db_desc->type != CUDNN_DATA_FLOAT)
    return fail(call, CUDNN_STATUS_NOT_SUPPORTED, "the simulation computes CUDNN_DATA_FLOAT only");
  const Dims4 d = dy_desc->dims, bd = db_desc->dims;
  if (!range_ok(call, "dy", dy, d.extent()) || !range_ok(call, "db", db, bd.extent()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const float* dys = static_cast<const float*>(dy);
  float* dbs = static_cast<float*>(db);
  return run(call, handle, nullptr, 0, [=] {
    std::vector<double> acc(size_t(bd.extent()), 0.0);
    for (int n = 0; n < d.d[0]; ++n)
      for (int k = 0; k < d.d[1]; ++k)
        for (int i = 0; i < d.d[2]; ++i)
          for (int j = 0; j < d.d[3]; ++j) acc[size_t(bd.at(0, k, 0, 0))] += dys[d.at(n, k, i, j)];
    blend(bd, acc, a, b, dbs);
  });
}
