// ONNX Runtime in this process (see ort_inprocess.h): the library opened with
// dlopen, the C API reached through its function table.
#include "ort_inprocess.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include "kd/error.h"
#include "kd/onnx_export.h"  // kOnnxInputName, kOnnxOutputName

namespace fs = std::filesystem;

namespace kd {
namespace {

// ONNX Runtime's C API is one table of function pointers (struct OrtApi) that
// OrtGetApiBase()->GetApi(version) returns. Its documentation (the comments of
// onnxruntime_c_api.h) marks the first version's entries, 0 to 101, as frozen
// ("End of Version 1 - DO NOT MODIFY ABOVE"); later versions only append. So
// asking for version 1 gives a table whose first 102 entries hold these calls
// at these positions in every release since 1.0, and every call used here is
// among them. Signatures as documented; every Ort* type is opaque, and a call
// returns an OrtStatus* that is null on success.
enum ApiEntry : int {
  kGetErrorMessage = 2,        // const char* (const OrtStatus*)
  kCreateEnv = 3,              // (OrtLoggingLevel, const char* log_id, OrtEnv** out)
  kCreateSession = 7,          // (const OrtEnv*, const char* model_path, const OrtSessionOptions*, OrtSession** out)
  kRun = 9,                    // (OrtSession*, const OrtRunOptions*, const char* const* input_names,
                               //  const OrtValue* const* inputs, size_t, const char* const* output_names, size_t,
                               //  OrtValue** outputs): a non-null output is written in place
  kCreateSessionOptions = 10,  // (OrtSessionOptions** out)
  kSetGraphOptimizationLevel = 23,  // (OrtSessionOptions*, GraphOptimizationLevel)
  kSetIntraOpNumThreads = 24,       // (OrtSessionOptions*, int); 0 = ONNX Runtime's default
  kSetInterOpNumThreads = 25,       // (OrtSessionOptions*, int)
  kCreateTensorWithData = 49,       // (const OrtMemoryInfo*, void* data, size_t bytes, const int64_t* shape,
                                    //  size_t rank, ONNXTensorElementDataType, OrtValue** out): data stays the caller's
  kCreateCpuMemoryInfo = 69,        // (OrtAllocatorType, OrtMemType, OrtMemoryInfo** out)
  kReleaseStatus = 93,              // void (OrtStatus*); ReleaseX for the others below
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseSessionOptions = 100,
};
// The enumerators' documented values.
constexpr int kLoggingLevelError = 3;        // ORT_LOGGING_LEVEL_ERROR
constexpr int kEnableAllOptimizations = 99;  // ORT_ENABLE_ALL
constexpr int kArenaAllocator = 1;           // OrtArenaAllocator
constexpr int kMemTypeDefault = 0;           // OrtMemTypeDefault
constexpr int kTensorFloat = 1;              // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
constexpr uint32_t kApiVersion = 1;

// What OrtGetApiBase() returns (stable since 1.0).
struct ApiBase {
  const void* (*get_api)(uint32_t version);
  const char* (*get_version_string)();
};

using Status = void*;  // OrtStatus*

// One loaded library: its table and the process-wide OrtEnv its sessions share.
struct Library {
  const void* const* table = nullptr;
  std::string version;
  void* env = nullptr;  // OrtEnv*, kept for the life of the process: sessions may live until exit, and
                        // releasing it from a static destructor races with the library's own teardown
  std::string failure;  // non-empty: why this library cannot be used

  template <class Fn>
  Fn entry(ApiEntry e) const {
    return reinterpret_cast<Fn>(const_cast<void*>(table[e]));
  }

  // Throws kd::Error "ONNX Runtime failed: <what>: <ONNX Runtime's message>" for a failed call.
  void check(Status status, const std::string& what) const {
    if (!status) return;
    const std::string message = entry<const char* (*)(Status)>(kGetErrorMessage)(status);
    entry<void (*)(Status)>(kReleaseStatus)(status);
    fail("ONNX Runtime failed: " + what + ": " + message);
  }
};

#if defined(__aarch64__)
constexpr const char* kNodeArch = "arm64";
#else
constexpr const char* kNodeArch = "x64";
#endif

// $KD_ORT_LIB, or the library onnxruntime-node ships under $KD_ORT_DIR (or the
// compiled-in .ort); "" with `looked` saying where it looked when there is none.
std::string library_path(std::string& looked) {
  if (const char* env = std::getenv("KD_ORT_LIB"); env && *env) {
    looked = std::string(env) + " ($KD_ORT_LIB)";
    return fs::is_regular_file(env) ? env : "";
  }
  const char* dir_env = std::getenv("KD_ORT_DIR");
  const fs::path bin =
      fs::path(dir_env && *dir_env ? dir_env : KD_ORT_DIR_DEFAULT) / "node_modules" / "onnxruntime-node" / "bin";
  looked = (bin / "napi-v*" / "linux" / kNodeArch / "libonnxruntime.so.1").string();
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& napi : fs::directory_iterator(bin, ec)) {
    const fs::path lib = napi.path() / "linux" / kNodeArch / "libonnxruntime.so.1";
    if (napi.path().filename().string().rfind("napi-v", 0) == 0 && fs::is_regular_file(lib, ec)) found.push_back(lib);
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  return found.back().string();
}

// The library at the path the environment names now, loaded once per path.
const Library& library() {
  static std::mutex mutex;
  static std::map<std::string, Library> loaded;
  static Library missing;
  std::lock_guard<std::mutex> lock(mutex);
  std::string looked;
  const std::string path = library_path(looked);
  if (path.empty()) {
    missing.failure = "no ONNX Runtime library at " + looked + "; run scripts/onnxruntime.sh or set KD_ORT_LIB";
    return missing;
  }
  auto [it, fresh] = loaded.try_emplace(path);
  Library& lib = it->second;
  if (!fresh) return lib;
  // Never closed: ONNX Runtime's thread pools and env live until the process ends.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    lib.failure = path + " does not load: " + dlerror();
    return lib;
  }
  using GetApiBase = const ApiBase* (*)();
  const auto get_base = reinterpret_cast<GetApiBase>(dlsym(handle, "OrtGetApiBase"));
  const ApiBase* base = get_base ? get_base() : nullptr;
  lib.table = base ? static_cast<const void* const*>(base->get_api(kApiVersion)) : nullptr;
  if (!lib.table) {
    lib.failure = path + " has no usable OrtGetApiBase (not ONNX Runtime?)";
    return lib;
  }
  lib.version = base->get_version_string();
  try {
    lib.check(lib.entry<Status (*)(int, const char*, void**)>(kCreateEnv)(kLoggingLevelError, "kdtrain", &lib.env),
              "CreateEnv");
  } catch (const Error& e) {
    lib.failure = e.what();
  }
  return lib;
}

}  // namespace

std::string ort_inprocess_version(std::string& why_not) {
  const Library& lib = library();
  why_not = lib.failure;
  return lib.failure.empty() ? lib.version : "";
}

struct OrtInProcessModel::Impl {
  const Library* lib = nullptr;
  void* session = nullptr;      // OrtSession*
  void* memory_info = nullptr;  // OrtMemoryInfo*: plain CPU memory
  Shape input;
  int classes = 0;

  ~Impl() {
    if (session) lib->entry<void (*)(void*)>(kReleaseSession)(session);
    if (memory_info) lib->entry<void (*)(void*)>(kReleaseMemoryInfo)(memory_info);
  }
};

OrtInProcessModel::OrtInProcessModel(const std::string& onnx_path, const Shape& input, int classes, int threads)
    : impl_(new Impl) {
  std::unique_ptr<Impl> impl(impl_);
  const Library& lib = library();
  if (!lib.failure.empty()) fail("ONNX Runtime not installed (" + lib.failure + ")");
  impl->lib = &lib;
  impl->input = input;
  impl->classes = classes;
  void* options = nullptr;
  lib.check(lib.entry<Status (*)(void**)>(kCreateSessionOptions)(&options), "CreateSessionOptions");
  struct ReleaseOptions {
    const Library& lib;
    void* options;
    ~ReleaseOptions() { lib.entry<void (*)(void*)>(kReleaseSessionOptions)(options); }
  } release_options{lib, options};
  lib.check(lib.entry<Status (*)(void*, int)>(kSetIntraOpNumThreads)(options, threads), "SetIntraOpNumThreads");
  lib.check(lib.entry<Status (*)(void*, int)>(kSetInterOpNumThreads)(options, 1), "SetInterOpNumThreads");
  lib.check(lib.entry<Status (*)(void*, int)>(kSetGraphOptimizationLevel)(options, kEnableAllOptimizations),
            "SetSessionGraphOptimizationLevel");
  lib.check(lib.entry<Status (*)(void*, const char*, void*, void**)>(kCreateSession)(lib.env, onnx_path.c_str(),
                                                                                     options, &impl->session),
            onnx_path + ": CreateSession");
  lib.check(lib.entry<Status (*)(int, int, void**)>(kCreateCpuMemoryInfo)(kArenaAllocator, kMemTypeDefault,
                                                                          &impl->memory_info),
            "CreateCpuMemoryInfo");
  impl.release();
}

OrtInProcessModel::~OrtInProcessModel() { delete impl_; }

OrtInProcessModel::Call::Call(const OrtInProcessModel& model, float* x, float* logits, int b)
    : model_(&model), values_{nullptr, nullptr} {
  const Impl& m = *model.impl_;
  using CreateTensor = Status (*)(void*, void*, size_t, const int64_t*, size_t, int, void**);
  const auto create = m.lib->entry<CreateTensor>(kCreateTensorWithData);
  const int64_t in_shape[4] = {b, m.input.c, m.input.h, m.input.w};
  const int64_t out_shape[2] = {b, m.classes};
  try {
    m.lib->check(
        create(m.memory_info, x, size_t(b) * m.input.size() * sizeof(float), in_shape, 4, kTensorFloat, &values_[0]),
        "CreateTensorWithDataAsOrtValue (input)");
    m.lib->check(
        create(m.memory_info, logits, size_t(b) * m.classes * sizeof(float), out_shape, 2, kTensorFloat, &values_[1]),
        "CreateTensorWithDataAsOrtValue (output)");
  } catch (...) {
    for (void* v : values_)
      if (v) m.lib->entry<void (*)(void*)>(kReleaseValue)(v);
    throw;
  }
}

OrtInProcessModel::Call::Call(Call&& other) noexcept
    : model_(other.model_), values_{other.values_[0], other.values_[1]} {
  other.values_[0] = other.values_[1] = nullptr;
}

OrtInProcessModel::Call::~Call() {
  for (void* v : values_)
    if (v) model_->impl_->lib->entry<void (*)(void*)>(kReleaseValue)(v);
}

void OrtInProcessModel::Call::run() {
  const Impl& m = *model_->impl_;
  using Run = Status (*)(void*, const void*, const char* const*, const void* const*, size_t, const char* const*, size_t,
                         void**);
  const char* in_name = kOnnxInputName;
  const char* out_name = kOnnxOutputName;
  m.lib->check(m.lib->entry<Run>(kRun)(m.session, nullptr, &in_name, &values_[0], 1, &out_name, 1, &values_[1]), "Run");
}

}  // namespace kd
