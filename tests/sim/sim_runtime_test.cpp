// The CUDA simulator's runtime (include/cuda_sim.h): deferred stream work,
// ordering between streams, poisoned asynchronous copies, graph capture and
// replay, the calls a capture forbids, memory queries. Each test names the
// simulator bug it catches; together they keep the simulator able to catch
// host-side bugs (a missing synchronisation, a missing stream wait, a
// capture-unsafe call) in the code that runs on it.
//
// Device memory is host memory under the simulator, so a test may read a
// device pointer directly (peek) to see what has run so far.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../../src/gpu/cuda_graph.h"
#include "kd/launch.h"
#include "kd/cuda_buffer.h"

namespace {

constexpr int kN = 100;  // elements per buffer: four blocks of 32, the last one partial

// y[i] = a * x[i] + b for i < n, one thread per element; x may be y.
__global__ void affine(const float* x, float* y, float a, float b, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = a * x[i] + b;
}

void launch_affine(const float* x, float* y, float a, float b, cudaStream_t stream) {
  kd::cuda::launch(affine, dim3((kN + 31) / 32), dim3(32), 0, stream, x, y, a, b, kN);
}

// A device buffer of kN floats, all `value` (a blocking copy: it has landed on return).
kd::cuda::DeviceBuffer<float> filled(float value) {
  kd::cuda::DeviceBuffer<float> buffer(kN, "test buffer");
  buffer.upload(std::vector<float>(kN, value));
  return buffer;
}

// Element i of a device buffer as it is now, without synchronising.
float peek(const kd::cuda::DeviceBuffer<float>& buffer, int i) { return buffer.data()[i]; }

cudaStream_t make_stream(unsigned flags) {
  cudaStream_t stream = nullptr;
  KD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, flags));
  return stream;
}

// Catches: work that runs at the call (the simulator before deferred streams),
// and kernel arguments read when the kernel runs instead of copied at launch.
TEST(SimRuntime, StreamWorkRunsAtSynchronisation) {
  auto x = filled(1.f);
  auto y = filled(0.f);
  const cudaStream_t stream = make_stream(cudaStreamDefault);
  float a = 2.f;
  launch_affine(x.data(), y.data(), a, 0.f, stream);
  a = 100.f;                                   // too late: the launch copied its arguments
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the launch was accepted ...
  EXPECT_EQ(peek(y, 0), 0.f);                  // ... and has not run
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(peek(y, 0), 2.f);
  EXPECT_EQ(peek(y, kN - 1), 2.f);
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Catches: cudaStreamWaitEvent ignored (the consumer would read the producer's
// old output), and streams that synchronise each other without a wait (the
// second half would then not see stale data, hiding a missing wait).
TEST(SimRuntime, StreamWaitEventOrdersTwoStreams) {
  auto a = filled(1.f);
  auto b = filled(0.f);
  auto c = filled(0.f);
  const cudaStream_t producer = make_stream(cudaStreamNonBlocking);
  const cudaStream_t consumer = make_stream(cudaStreamNonBlocking);
  cudaEvent_t produced = nullptr;
  KD_CUDA_CHECK(cudaEventCreate(&produced));

  launch_affine(a.data(), b.data(), 3.f, 0.f, producer);  // b = 3
  KD_CUDA_CHECK(cudaEventRecord(produced, producer));
  KD_CUDA_CHECK(cudaStreamWaitEvent(consumer, produced, 0));
  launch_affine(b.data(), c.data(), 1.f, 1.f, consumer);  // c = b + 1
  KD_CUDA_CHECK(cudaStreamSynchronize(consumer));         // only the consumer: the wait pulls the producer's work in
  EXPECT_EQ(peek(b, 0), 3.f);
  EXPECT_EQ(peek(c, 0), 4.f);

  // The same without the wait: the consumer runs on the old b.
  launch_affine(a.data(), b.data(), 5.f, 0.f, producer);  // b = 5, still queued
  launch_affine(b.data(), c.data(), 1.f, 1.f, consumer);
  KD_CUDA_CHECK(cudaStreamSynchronize(consumer));
  EXPECT_EQ(peek(c, 0), 4.f) << "the consumer should have read b = 3: nothing ordered it after the producer";
  EXPECT_EQ(peek(b, 0), 3.f);
  KD_CUDA_CHECK(cudaEventSynchronize(produced));  // the first record only: b = 5 is after it
  EXPECT_EQ(peek(b, 0), 3.f);
  KD_CUDA_CHECK(cudaStreamSynchronize(producer));
  EXPECT_EQ(peek(b, 0), 5.f);

  KD_CUDA_CHECK(cudaEventDestroy(produced));
  KD_CUDA_CHECK(cudaStreamDestroy(producer));
  KD_CUDA_CHECK(cudaStreamDestroy(consumer));
}

// cudaDeviceSynchronize runs streams that do not wait for each other in the
// schedule's order (KDSIM_SCHEDULE; CTest runs this test in-order and
// reversed), so a missing cudaStreamWaitEvent shows as stale data under the
// reverse schedule even behind a device-wide synchronisation. Catches: a
// device synchronisation that always runs work in queue order.
TEST(SimRuntime, DeviceSynchronizeRunsStreamsInScheduleOrder) {
  const char* env = std::getenv("KDSIM_SCHEDULE");
  const std::string schedule = env ? env : "in-order";
  if (schedule != "in-order" && schedule != "reverse") GTEST_SKIP() << "the order is random under " << schedule;
  auto a = filled(1.f);
  auto b = filled(0.f);
  auto c = filled(0.f);
  const cudaStream_t producer = make_stream(cudaStreamNonBlocking);  // created first: last under reverse
  const cudaStream_t consumer = make_stream(cudaStreamNonBlocking);
  launch_affine(a.data(), b.data(), 3.f, 0.f, producer);  // b = 3
  launch_affine(b.data(), c.data(), 1.f, 1.f, consumer);  // c = b + 1, with no wait: the bug
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(peek(b, 0), 3.f);
  EXPECT_EQ(peek(c, 0), schedule == "reverse" ? 1.f : 4.f);
  KD_CUDA_CHECK(cudaStreamDestroy(producer));
  KD_CUDA_CHECK(cudaStreamDestroy(consumer));
}

// The legacy default stream waits for blocking streams, not for streams
// created with cudaStreamNonBlocking. Catches: a blocking cudaMemcpy that
// synchronises the whole device (it would hide a missing synchronisation of a
// non-blocking stream, as the engine's own stream is).
TEST(SimRuntime, LegacyStreamWaitsForBlockingStreamsOnly) {
  auto a = filled(1.f);
  auto b = filled(0.f);
  auto c = filled(0.f);
  const cudaStream_t blocking = make_stream(cudaStreamDefault);
  const cudaStream_t non_blocking = make_stream(cudaStreamNonBlocking);
  launch_affine(a.data(), b.data(), 2.f, 0.f, blocking);
  launch_affine(a.data(), c.data(), 7.f, 0.f, non_blocking);
  EXPECT_EQ(b.download()[0], 2.f);  // cudaMemcpy on the legacy stream waited for `blocking`
  EXPECT_EQ(c.download()[0], 0.f);  // but not for `non_blocking`
  KD_CUDA_CHECK(cudaStreamSynchronize(non_blocking));
  EXPECT_EQ(c.download()[0], 7.f);
  KD_CUDA_CHECK(cudaStreamDestroy(blocking));
  KD_CUDA_CHECK(cudaStreamDestroy(non_blocking));
}

// Catches: a device-to-host cudaMemcpyAsync whose destination holds plausible
// (old) values before the synchronisation, so that a missing
// cudaStreamSynchronize goes unnoticed.
TEST(SimRuntime, AsyncDownloadIsPoisonedUntilSynchronised) {
  auto x = filled(1.f);
  auto y = filled(0.f);
  const cudaStream_t stream = make_stream(cudaStreamNonBlocking);
  launch_affine(x.data(), y.data(), 4.f, 0.f, stream);
  std::vector<float> host(kN, 0.f);
  KD_CUDA_CHECK(cudaMemcpyAsync(host.data(), y.data(), kN * sizeof(float), cudaMemcpyDeviceToHost, stream));
  EXPECT_TRUE(std::isnan(host[0]) && std::isnan(host[kN - 1])) << "read before the synchronisation: " << host[0];
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(host[0], 4.f);
  EXPECT_EQ(host[kN - 1], 4.f);
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// A graph replays what was captured: the kernel's pointer and scalar as they
// were at capture (not the variables' later values), once per launch, and a
// captured download poisons its destination again at each launch. Catches:
// capture that runs the work, replay that re-reads the host variables, a
// graph that runs only once.
TEST(SimRuntime, CaptureReplaysCapturedPointersAndScalars) {
  auto out = filled(1.f);
  auto other = filled(0.f);
  const cudaStream_t stream = make_stream(cudaStreamNonBlocking);
  std::vector<float> host(kN, 0.f);
  float* target = out.data();
  float scale = 2.f;

  KD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  KD_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  launch_affine(target, target, scale, 1.f, stream);  // out = 2 out + 1
  KD_CUDA_CHECK(cudaMemcpyAsync(host.data(), target, kN * sizeof(float), cudaMemcpyDeviceToHost, stream));
  cudaGraph_t graph = nullptr;
  KD_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  ASSERT_NE(graph, nullptr);
  EXPECT_EQ(peek(out, 0), 1.f) << "capturing must not run the work";
  EXPECT_EQ(host[0], 0.f);

  target = other.data();  // what a reallocation does to the variables; the graph keeps the old ones
  scale = 10.f;
  cudaGraphExec_t exec = nullptr;
  KD_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  KD_CUDA_CHECK(cudaGraphDestroy(graph));  // the instance does not need the graph
  KD_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(peek(out, 0), 3.f);
  EXPECT_EQ(host[0], 3.f);
  KD_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  EXPECT_TRUE(std::isnan(host[0])) << "the replayed download must poison its destination until synchronised";
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(peek(out, kN - 1), 7.f);
  EXPECT_EQ(host[kN - 1], 7.f);
  EXPECT_EQ(peek(other, 0), 0.f) << "the replay wrote through the variable's new value, not the captured pointer";
  KD_CUDA_CHECK(cudaGraphExecDestroy(exec));
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// The engine's own capture helper (src/gpu/cuda_graph.h) on the simulator:
// a capture that succeeds replays; a capture broken by a forbidden call
// (its test hook synchronises the capturing stream) reports why and leaves
// the stream usable. Catches: a capture status or error the helper cannot
// read the way it reads the real runtime's.
TEST(SimRuntime, EngineGraphHelperCapturesAndFallsBack) {
  auto out = filled(1.f);
  const cudaStream_t stream = make_stream(cudaStreamNonBlocking);
  std::string why;
  auto graph = kd::cuda::CudaGraph::try_capture(
      stream, [&] { launch_affine(out.data(), out.data(), 1.f, 1.f, stream); }, why);
  ASSERT_TRUE(graph.has_value()) << why;
  graph->launch(stream);
  graph->launch(stream);
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(peek(out, 0), 3.f);

  kd::cuda::graph_capture_failure_forced = true;
  const auto failed = kd::cuda::CudaGraph::try_capture(
      stream, [&] { launch_affine(out.data(), out.data(), 1.f, 1.f, stream); }, why);
  kd::cuda::graph_capture_failure_forced = false;
  EXPECT_FALSE(failed.has_value());
  EXPECT_NE(why.find("invalidated"), std::string::npos) << why;
  EXPECT_NE(why.find("cudaErrorStreamCaptureInvalidated"), std::string::npos) << why;
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(peek(out, 0), 3.f) << "a failed capture must not run what it captured";
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Each call the runtime forbids during a (thread-local) capture returns its
// documented error and invalidates the capture: further work on the stream is
// refused, cudaStreamEndCapture returns cudaErrorStreamCaptureInvalidated and
// no graph, and the stream is usable afterwards. Catches: a forbidden call
// that succeeds (or runs captured work), a capture that survives it.
TEST(SimRuntime, ForbiddenCallsDuringCaptureInvalidateIt) {
  auto x = filled(1.f);
  float* spare = nullptr;
  KD_CUDA_CHECK(cudaMalloc(&spare, 256));
  cudaEvent_t outside = nullptr, inside = nullptr;
  KD_CUDA_CHECK(cudaEventCreate(&outside));
  KD_CUDA_CHECK(cudaEventCreate(&inside));
  KD_CUDA_CHECK(cudaEventRecord(outside, nullptr));
  std::vector<float> host(kN);
  void* allocated = nullptr;
  const cudaStream_t stream = make_stream(cudaStreamDefault);  // blocking: the legacy stream depends on it
  struct Case {
    const char* call;
    cudaError_t expected;
    std::function<cudaError_t()> run;
  };
  const Case cases[] = {
      {"cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamSynchronize(stream); }},
      {"cudaStreamQuery", cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamQuery(stream); }},
      {"cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported, [&] { return cudaDeviceSynchronize(); }},
      {"cudaMalloc", cudaErrorStreamCaptureUnsupported, [&] { return cudaMalloc(&allocated, 256); }},
      {"cudaFree", cudaErrorStreamCaptureUnsupported, [&] { return cudaFree(spare); }},
      {"cudaMemcpy", cudaErrorStreamCaptureUnsupported,
       [&] { return cudaMemcpy(host.data(), x.data(), x.bytes(), cudaMemcpyDeviceToHost); }},
      {"cudaMemsetAsync on the legacy stream", cudaErrorStreamCaptureImplicit,
       [&] { return cudaMemsetAsync(x.data(), 0, x.bytes(), nullptr); }},
      {"cudaStreamWaitEvent on an event recorded outside", cudaErrorStreamCaptureIsolation,
       [&] { return cudaStreamWaitEvent(stream, outside, 0); }},
      {"cudaEventSynchronize of a captured event", cudaErrorCapturedEvent,
       [&] {
         KD_CUDA_CHECK(cudaEventRecord(inside, stream));
         return cudaEventSynchronize(inside);
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.call);
    KD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    launch_affine(x.data(), x.data(), 2.f, 0.f, stream);
    EXPECT_EQ(c.run(), c.expected);
    EXPECT_EQ(cudaGetLastError(), c.expected);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    KD_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    EXPECT_EQ(status, cudaStreamCaptureStatusInvalidated);
    EXPECT_EQ(cudaMemsetAsync(x.data(), 0, x.bytes(), stream), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    cudaGetLastError();
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(peek(x, 0), 1.f) << "nothing captured may run";
  }
  EXPECT_EQ(allocated, nullptr);
  KD_CUDA_CHECK(cudaFree(spare));
  KD_CUDA_CHECK(cudaEventDestroy(outside));
  KD_CUDA_CHECK(cudaEventDestroy(inside));
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Relaxed mode permits the potentially unsafe calls (cudaMalloc here), not the
// ones that conflict with capture (synchronising the capturing stream).
// Catches: the capture mode ignored.
TEST(SimRuntime, RelaxedCaptureAllowsAllocationNotSynchronisation) {
  const cudaStream_t stream = make_stream(cudaStreamNonBlocking);
  KD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  void* allocated = nullptr;
  EXPECT_EQ(cudaMalloc(&allocated, 256), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  KD_CUDA_CHECK(cudaFree(allocated));
  KD_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Catches: cudaMemGetInfo answering the total whatever is allocated (the
// engine's memory preflight could then never refuse a run), and cudaMalloc
// succeeding beyond the simulated device's memory.
TEST(SimRuntime, MemGetInfoCountsLiveAllocations) {
  size_t free_before = 0, total = 0;
  KD_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  EXPECT_EQ(total, size_t(80) << 30);  // device_properties(): the simulated 80 GiB
  constexpr size_t kBytes = size_t(64) << 20;
  void* p = nullptr;
  KD_CUDA_CHECK(cudaMalloc(&p, kBytes));
  size_t free_after = 0;
  KD_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before - kBytes);
  void* too_big = nullptr;
  EXPECT_EQ(cudaMalloc(&too_big, free_after + 1), cudaErrorMemoryAllocation);
  EXPECT_EQ(too_big, nullptr);
  cudaGetLastError();
  KD_CUDA_CHECK(cudaFree(p));
  KD_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
}

// Catches: an invalid launch configuration reported only when the work runs
// (the real runtime refuses it at the launch, so cudaGetLastError sees it).
TEST(SimRuntime, InvalidLaunchFailsAtTheCall) {
  auto x = filled(1.f);
  kd::cuda::launch(affine, dim3(1), dim3(2048), 0, nullptr, x.data(), x.data(), 2.f, 0.f, kN);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  KD_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(peek(x, 0), 1.f);
}

}  // namespace
