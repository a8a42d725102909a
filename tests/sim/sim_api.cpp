// The CUDA runtime API of the simulator: memory on the host, streams that
// queue their work until a synchronising call runs it, events, graph capture
// and replay, the simulated device's description. The model and its limits
// are described in include/cuda_sim.h.
#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>
#include <string>

#include "sim_internal.h"

namespace {

// The work of one stream up to and including the item numbered `seq` (items
// are numbered in the order they were queued, across all streams).
struct After {
  CUstream_st* stream;
  uint64_t seq;
};

// One queued item: a kernel launch, a copy, a fill, library arithmetic, an
// event record, a wait or a synchronisation marker.
struct Work {
  std::function<void()> run;
  void* poison = nullptr;  // host bytes a device-to-host copy writes: poisoned when the copy is queued
  size_t poison_bytes = 0;
};

struct Queued {
  uint64_t seq;
  Work work;
  std::vector<After> after;  // other streams' work that must run first (waits, legacy-stream ordering)
};

// The graph a stream is capturing into.
struct Capture {
  uint64_t id;  // tells capture sequences apart (events recorded in one)
  cudaStreamCaptureMode mode;
  bool invalidated = false;
  std::vector<Work> nodes;  // in capture order: the graph is the chain of them
};

// Where an event was last recorded: the work before it, or a capture sequence.
struct EventRecord {
  After at{nullptr, 0};
  uint64_t capture_id = 0;  // non-zero: recorded while its stream captured (no work to wait for)
  CUstream_st* capturing = nullptr;
  std::chrono::steady_clock::time_point time;  // set when the record runs
};

}  // namespace

struct CUstream_st {
  unsigned flags = cudaStreamDefault;
  std::deque<Queued> queue;  // queued, not yet run, in order
  uint64_t last_seq = 0;     // the latest item queued (0: none yet)
  std::optional<Capture> capture;
};
struct CUevent_st {
  std::shared_ptr<EventRecord> last;  // shared with the queued record, which may outlive the event
};
struct CUgraph_st {
  std::vector<Work> nodes;
};
struct CUgraphExec_st {
  std::vector<Work> nodes;  // a copy: the graph may be destroyed while its instance lives
};

namespace {

cudaError_t fail(cudaError_t status) { return kdsim::record_error(status); }

// A call the runtime refuses: one line naming it and why, then the error (not
// a report: the program may well handle the error, as a real one would).
cudaError_t refuse(const char* call, cudaError_t status, const std::string& why) {
  std::fprintf(stderr, "[kdsim] %s: %s (%s)\n", call, why.c_str(), cudaGetErrorName(status));
  return fail(status);
}

uint64_t g_next_seq = 1;
uint64_t g_next_capture_id = 1;
// The legacy default stream, nullptr in the API; it never captures.
CUstream_st* legacy() {
  static CUstream_st stream;
  return &stream;
}

// The created streams in creation order: synchronising the device runs their work in a fixed order.
std::vector<CUstream_st*>& streams() {
  static std::vector<CUstream_st*> live;
  return live;
}
bool is_live(const CUstream_st* s) {
  return s == legacy() || std::find(streams().begin(), streams().end(), s) != streams().end();
}
bool valid_stream(cudaStream_t stream) { return stream == nullptr || is_live(stream); }
CUstream_st* resolve(cudaStream_t stream) { return stream ? stream : legacy(); }
bool blocking(const CUstream_st* s) { return !(s->flags & cudaStreamNonBlocking); }
bool capturing(const CUstream_st* s) { return s->capture && !s->capture->invalidated; }
// The stream whose capture recorded the event, while that capture goes on; null otherwise.
CUstream_st* capture_in_progress(const EventRecord& record) {
  CUstream_st* s = record.capturing;
  return record.capture_id && is_live(s) && capturing(s) && s->capture->id == record.capture_id ? s : nullptr;
}

// ------------------------------------------------------------------ running queued work
// Runs `a.stream`'s work up to `a.seq`, each item after the other streams' work it
// waits for. Those waits always name earlier items, so this ends; a stream that
// was destroyed has run all its work already.
void run_until(After a) {
  if (!is_live(a.stream)) return;
  std::deque<Queued>& queue = a.stream->queue;
  while (!queue.empty() && queue.front().seq <= a.seq) {
    Queued item = std::move(queue.front());
    queue.pop_front();
    for (const After& first : item.after) run_until(first);
    item.work.run();
  }
}
bool finished(After a) { return !is_live(a.stream) || a.stream->queue.empty() || a.stream->queue.front().seq > a.seq; }

// Everything queued, one item at a time. Streams are ordered only where they
// wait for each other, so which stream goes next is the schedule's choice
// (KDSIM_SCHEDULE): the order the work was queued in for in-order, the latest
// created stream first for reverse, a seeded-random one for random; a missing
// cudaStreamWaitEvent then shows as stale data under some schedule even when a
// cudaDeviceSynchronize follows.
void run_all() {
  std::vector<CUstream_st*> pending;
  while (true) {
    pending.clear();
    if (!legacy()->queue.empty()) pending.push_back(legacy());
    for (CUstream_st* s : streams())
      if (!s->queue.empty()) pending.push_back(s);
    if (pending.empty()) return;
    const auto earlier = [](const CUstream_st* a, const CUstream_st* b) {
      return a->queue.front().seq < b->queue.front().seq;
    };
    if (kdsim::scheduler().schedule == kdsim::Schedule::InOrder) std::sort(pending.begin(), pending.end(), earlier);
    else kdsim::scheduler().order(pending);
    CUstream_st* next = pending.front();
    run_until(After{next, next->queue.front().seq});
  }
}

// ------------------------------------------------------------------ capture rules
// Invalidates the capture of `s`, which `call` breaks; returns the error the call gets.
cudaError_t invalidate(CUstream_st* s, const char* call, cudaError_t status, const std::string& why) {
  s->capture->invalidated = true;
  s->capture->nodes.clear();
  return refuse(call, status, why + "; the capture is invalidated");
}

// A call that is not permitted while a capture is active in global or
// thread-local mode (every host call here comes from the capturing thread):
// cudaMalloc, cudaFree, a synchronous cudaMemcpy. `any_mode`: also in relaxed
// mode (cudaDeviceSynchronize, which would wait for the captured work).
cudaError_t refuse_while_capturing(const char* call, bool any_mode) {
  for (CUstream_st* s : streams())
    if (capturing(s) && (any_mode || s->capture->mode != cudaStreamCaptureModeRelaxed))
      return invalidate(s, call, cudaErrorStreamCaptureUnsupported, "not permitted while a stream captures");
  return cudaSuccess;
}

// Work on the legacy stream would wait for every blocking stream, and so for
// work a blocking stream is capturing: the runtime refuses it.
cudaError_t refuse_legacy_while_capturing(const char* call) {
  for (CUstream_st* s : streams())
    if (capturing(s) && blocking(s))
      return invalidate(s, call, cudaErrorStreamCaptureImplicit,
                        "the legacy stream would wait for a blocking stream that captures");
  return cudaSuccess;
}

// ------------------------------------------------------------------ queueing
// Queues `work` on `stream`, after `wait` if given, or records it into the
// graph while the stream captures. The legacy stream's work waits for every
// blocking stream's earlier work and a blocking stream's work for the legacy
// stream's; streams created with cudaStreamNonBlocking wait for neither.
cudaError_t submit(const char* call, cudaStream_t stream, Work work, std::optional<After> wait = std::nullopt) {
  if (!valid_stream(stream)) return refuse(call, cudaErrorInvalidResourceHandle, "the stream does not exist");
  CUstream_st* s = resolve(stream);
  if (s == legacy())
    if (cudaError_t status = refuse_legacy_while_capturing(call)) return status;
  if (s->capture) {
    if (s->capture->invalidated)
      return refuse(call, cudaErrorStreamCaptureInvalidated, "the stream's capture was invalidated earlier");
    s->capture->nodes.push_back(std::move(work));
    return cudaSuccess;
  }
  if (work.poison) std::memset(work.poison, 0xFF, work.poison_bytes);  // 0xFFFFFFFF is a NaN as a float
  Queued item{g_next_seq++, std::move(work), {}};
  if (wait) item.after.push_back(*wait);
  if (s == legacy()) {
    for (CUstream_st* other : streams())
      if (blocking(other) && other->last_seq) item.after.push_back(After{other, other->last_seq});
  } else if (blocking(s) && legacy()->last_seq) {
    item.after.push_back(After{legacy(), legacy()->last_seq});
  }
  s->last_seq = item.seq;
  s->queue.push_back(std::move(item));
  return cudaSuccess;
}

// Runs `stream`'s work, including what it waits for (through a marker, so the
// legacy stream also waits for the blocking streams' latest work).
cudaError_t synchronize(const char* call, cudaStream_t stream) {
  if (cudaError_t status = submit(call, stream, Work{[] {}})) return status;
  CUstream_st* s = resolve(stream);
  run_until(After{s, s->last_seq});
  return kdsim::take_last_error(false);
}

// Copies and fills check their device ranges as a real driver would refuse them.
cudaError_t check_range(const char* call, const void* p, size_t bytes) {
  std::string why;
  if (kdsim::device_range_ok(p, bytes, &why)) return cudaSuccess;
  kdsim::report(std::string(call) + ": " + why);
  return fail(cudaErrorInvalidValue);
}

// The copy as queued work. Checked again when it runs: a graph replays it
// with the pointers it captured, which may have been freed since.
Work copy_work(const char* call, void* dst, const void* src, size_t bytes) {
  return Work{[call, dst, src, bytes] {
    if (check_range(call, dst, bytes) || check_range(call, src, bytes)) return;
    std::memmove(dst, src, bytes);
  }};
}
Work fill_work(const char* call, void* dst, int value, size_t bytes) {
  return Work{[call, dst, value, bytes] {
    if (!check_range(call, dst, bytes)) std::memset(dst, value, bytes);
  }};
}

}  // namespace

cudaError_t kdsim::enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  return submit(what, stream, Work{std::move(work)});
}

cudaError_t kdsim::launch(cudaStream_t stream, const Launch& l, std::shared_ptr<void> args) {
  if (cudaError_t status = check_launch(l)) return status;
  return submit("kernel launch", stream, Work{[l, args] { record_error(run_launch(l)); }});
}

// cudaMalloc does not synchronise; cudaFree synchronises the device first.
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  if (cudaError_t status = refuse_while_capturing("cudaMalloc", false)) return status;
  const size_t total = kdsim::device_properties().totalGlobalMem;
  if (bytes > total - kdsim::device_bytes_in_use()) return fail(cudaErrorMemoryAllocation);
  *ptr = kdsim::device_malloc(bytes);
  return *ptr ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* ptr) {
  if (cudaError_t status = refuse_while_capturing("cudaFree", false)) return status;
  run_all();
  if (!ptr) return cudaSuccess;
  return kdsim::device_free(ptr) ? cudaSuccess : fail(cudaErrorInvalidValue);
}
// On the legacy stream; returns once the copy is done, except device to
// device, which the runtime documents as not synchronising with the host.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t status = refuse_while_capturing("cudaMemcpy", false)) return status;
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t s = check_range("cudaMemcpy destination", dst, bytes)) return s;
  if (cudaError_t s = check_range("cudaMemcpy source", src, bytes)) return s;
  if (cudaError_t status = submit("cudaMemcpy", nullptr, copy_work("cudaMemcpy", dst, src, bytes))) return status;
  if (kind != cudaMemcpyDeviceToDevice) run_until(After{legacy(), legacy()->last_seq});
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes == 0) return valid_stream(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
  if (cudaError_t s = check_range("cudaMemcpyAsync destination", dst, bytes)) return s;
  if (cudaError_t s = check_range("cudaMemcpyAsync source", src, bytes)) return s;
  Work work = copy_work("cudaMemcpyAsync", dst, src, bytes);
  if (kind == cudaMemcpyDeviceToHost) work.poison = dst, work.poison_bytes = bytes;  // host memory is treated as pinned
  return submit("cudaMemcpyAsync", stream, std::move(work));
}
// Asynchronous with respect to the host for device memory, as documented: queued on the legacy stream.
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t s = check_range("cudaMemset", dst, bytes)) return s;
  return submit("cudaMemset", nullptr, fill_work("cudaMemset", dst, value, bytes));
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return valid_stream(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
  if (cudaError_t s = check_range("cudaMemsetAsync", dst, bytes)) return s;
  return submit("cudaMemsetAsync", stream, fill_work("cudaMemsetAsync", dst, value, bytes));
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = kdsim::device_properties().totalGlobalMem;
  *free_bytes = *total_bytes - kdsim::device_bytes_in_use();
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t status = refuse_while_capturing("cudaDeviceSynchronize", true)) return status;
  run_all();
  return kdsim::take_last_error(false);
}
cudaError_t cudaGetLastError() { return kdsim::take_last_error(true); }
cudaError_t cudaPeekAtLastError() { return kdsim::take_last_error(false); }

const char* cudaGetErrorName(cudaError_t status) {
  switch (status) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t status) {
  switch (status) {
    case cudaSuccess: return "no error";
    case cudaErrorLaunchFailure: return "the CUDA simulator reported a problem in the kernel (see the [kdsim] lines)";
    case cudaErrorInvalidConfiguration: return "invalid launch configuration for the simulated device";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation: return "a dependency would cross the capture sequence boundary";
    case cudaErrorStreamCaptureImplicit: return "the legacy stream would depend on a capturing blocking stream";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorIllegalState: return "operation not permitted in the stream's present capture state";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorMemoryAllocation: return "out of simulated device memory";
    case cudaErrorInvalidValue: return "invalid argument";
    default: return cudaGetErrorName(status);
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  *prop = kdsim::device_properties();
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  const cudaDeviceProp& p = kdsim::device_properties();
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrClusterLaunch: *value = p.major >= 9; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 12000;  // the simulator models the CUDA 12 programming model
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 12000;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = new CUstream_st;
  (*stream)->flags = flags;
  streams().push_back(*stream);
  return cudaSuccess;
}
// The stream's queued work runs first (the runtime lets it finish after the call returns).
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream || !is_live(stream)) return refuse("cudaStreamDestroy", cudaErrorInvalidResourceHandle, "no such stream");
  run_until(After{stream, stream->last_seq});
  streams().erase(std::find(streams().begin(), streams().end(), stream));
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (valid_stream(stream) && capturing(resolve(stream)))
    return invalidate(resolve(stream), "cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported,
                      "the stream is capturing: its work does not run");
  return synchronize("cudaStreamSynchronize", stream);
}
// Has the stream's work finished? The simulator finishes it here (hardware
// may have), so that a loop polling for completion ends.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  if (valid_stream(stream) && capturing(resolve(stream)))
    return invalidate(resolve(stream), "cudaStreamQuery", cudaErrorStreamCaptureUnsupported,
                      "the stream is capturing: its work does not run");
  return synchronize("cudaStreamQuery", stream);
}
// Work queued on `stream` after this waits for the work before the event's
// latest record. Inside a capture only waits on events recorded in the same
// capture are simulated (they order nothing in the captured chain); the
// runtime's fork and join of other streams into a capture is not.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!event || !valid_stream(stream))
    return refuse("cudaStreamWaitEvent", cudaErrorInvalidResourceHandle, "no such stream or event");
  if (!event->last) return cudaSuccess;  // never recorded: nothing to wait for
  CUstream_st* s = resolve(stream);
  const EventRecord& record = *event->last;
  const bool same_capture = s->capture && s->capture->id == record.capture_id;
  if (record.capture_id && !same_capture) {
    const char* why = "the event was recorded in a capture: forking a capture into another stream is not simulated";
    if (CUstream_st* source = capture_in_progress(record))
      return invalidate(source, "cudaStreamWaitEvent", cudaErrorStreamCaptureUnsupported, why);
    return refuse("cudaStreamWaitEvent", cudaErrorStreamCaptureUnsupported, why);
  }
  if (same_capture) return s->capture->invalidated ? fail(cudaErrorStreamCaptureInvalidated) : cudaSuccess;
  if (capturing(s))
    return invalidate(s, "cudaStreamWaitEvent", cudaErrorStreamCaptureIsolation,
                      "a capturing stream may not wait for an event recorded outside the capture");
  return submit("cudaStreamWaitEvent", stream, Work{[] {}}, record.at);
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!valid_stream(stream)) return refuse("cudaStreamIsCapturing", cudaErrorInvalidResourceHandle, "no such stream");
  if (!stream)
    for (CUstream_st* s : streams())
      if (capturing(s) && blocking(s))  // the answer for the legacy stream is unspecified; the capture goes on
        return fail(cudaErrorStreamCaptureImplicit);
  const CUstream_st* s = resolve(stream);
  *status = !s->capture               ? cudaStreamCaptureStatusNone
            : s->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream)
    return refuse("cudaStreamBeginCapture", cudaErrorStreamCaptureUnsupported, "the legacy stream cannot capture");
  if (!is_live(stream)) return refuse("cudaStreamBeginCapture", cudaErrorInvalidResourceHandle, "no such stream");
  if (stream->capture)
    return refuse("cudaStreamBeginCapture", cudaErrorIllegalState, "the stream is capturing already");
  stream->capture = Capture{g_next_capture_id++, mode, false, {}};
  return cudaSuccess;
}
// Ends the capture either way; the graph only when it was not invalidated.
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  if (!stream || !is_live(stream))
    return refuse("cudaStreamEndCapture", cudaErrorInvalidResourceHandle, "no such stream");
  if (!stream->capture) return refuse("cudaStreamEndCapture", cudaErrorIllegalState, "the stream is not capturing");
  Capture capture = std::move(*stream->capture);
  stream->capture.reset();
  if (capture.invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(capture.nodes)};
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = nullptr;
  if (!graph) return refuse("cudaGraphInstantiate", cudaErrorInvalidValue, "no graph");
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}
// Queues the graph's nodes in order, with the pointers and values they captured.
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return refuse("cudaGraphLaunch", cudaErrorInvalidValue, "no graph instance");
  if (!valid_stream(stream)) return refuse("cudaGraphLaunch", cudaErrorInvalidResourceHandle, "no such stream");
  for (const Work& node : exec->nodes)
    if (cudaError_t status = submit("cudaGraphLaunch", stream, node)) return status;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
// Marks the stream's work so far, or, while the stream captures, a point of the capture.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event || !valid_stream(stream))
    return refuse("cudaEventRecord", cudaErrorInvalidResourceHandle, "no such stream or event");
  CUstream_st* s = resolve(stream);
  auto record = std::make_shared<EventRecord>();
  if (s->capture) {
    if (s->capture->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    record->capture_id = s->capture->id;
    record->capturing = s;
  } else {
    const auto run = [record] { record->time = std::chrono::steady_clock::now(); };
    if (cudaError_t status = submit("cudaEventRecord", stream, Work{run})) return status;
    record->at = After{s, s->last_seq};
  }
  event->last = std::move(record);
  return cudaSuccess;
}
// The work before the event's latest record runs; an event recorded in a capture has no such work.
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return refuse("cudaEventSynchronize", cudaErrorInvalidResourceHandle, "no such event");
  if (!event->last) return cudaSuccess;
  const EventRecord& record = *event->last;
  if (record.capture_id) {
    const char* why = "the event was last recorded in a capture: there is no work to wait for";
    if (CUstream_st* source = capture_in_progress(record))
      return invalidate(source, "cudaEventSynchronize", cudaErrorCapturedEvent, why);
    return refuse("cudaEventSynchronize", cudaErrorCapturedEvent, why);
  }
  run_until(record.at);
  return kdsim::take_last_error(false);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  if (!start || !stop || !start->last || !stop->last)
    return refuse("cudaEventElapsedTime", cudaErrorInvalidResourceHandle, "an event was never recorded");
  if (start->last->capture_id || stop->last->capture_id)
    return refuse("cudaEventElapsedTime", cudaErrorCapturedEvent, "an event was last recorded in a capture");
  if (!finished(start->last->at) || !finished(stop->last->at)) return fail(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(stop->last->time - start->last->time).count();
  return cudaSuccess;
}
