// bench/bench_util.h: what every bench/*_bench.cu shares.
//
// - bench_main() / KD_BENCH_MAIN(): a main() that always lists (--benchmark_list_tests),
//   exits 77 with a message when asked to run without a GPU (CI builds the benchmarks
//   but cannot run them) and turns kd::Error into exit 1.
// - time_launches(): device time per launch from CUDA events, after a warm-up,
//   reported to Google Benchmark as manual time. Each sample times a batch of
//   back-to-back launches (so launch gaps of microsecond kernels are amortised the
//   way a stream or a CUDA graph amortises them) and the batch is sized once to
//   span kSampleSeconds; the median over the samples is returned for counters.
// - RotatingPool: several copies of one benchmark's inputs and outputs, together
//   larger than 2x the L2 cache, so that launch i uses set i % sets() and finds
//   its data in device memory, as a training step does after the other layers ran.
// - copy_bandwidth_gbps(): measured device-to-device copy bandwidth (bytes read +
//   bytes written per second), the practical ceiling for memory-bound kernels.
// - fill_uniform(): random inputs generated on the device (never zeros: zeros
//   hide unwritten outputs and can run faster than real data).
//
// Register benchmarks with ->Apply(kd::bench::manual_time) so they use manual
// time and a fixed number of samples: every benchmark finishes in well under a
// second of device time whatever --benchmark_min_time says.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "kd/error.h"
#include "kd/cuda_buffer.h"
#include "kd/cuda_timer.h"

namespace kd::bench {

using kd::cuda::EventTimer;

inline constexpr int kSamples = 25;             // timed samples (benchmark iterations) per benchmark
inline constexpr double kSampleSeconds = 2e-3;  // device time one sample should span
inline constexpr int kMaxLaunchesPerSample = 4096;
inline constexpr int kWarmupLaunches = 3;

// Device 0's properties, read once.
inline const cudaDeviceProp& device_properties() {
  static const cudaDeviceProp props = [] {
    cudaDeviceProp p{};
    KD_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    return p;
  }();
  return props;
}
inline size_t l2_bytes() { return static_cast<size_t>(device_properties().l2CacheSize); }

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : 0.5 * (v[mid - 1] + v[mid]);
}

struct Timing {
  double median_s = 0;          // median device seconds per launch over the samples
  int launches_per_sample = 0;  // back-to-back launches timed together in one sample
};

// Runs the benchmark loop: `launch(i)` enqueues launch number i (i = 0, 1, 2, ...;
// use it to pick the rotation set) on `stream` and checks its launch. Sets the
// manual time of each iteration to the per-launch device time of one sample,
// and the counter "median_us". Returns the median for throughput counters.
template <typename Launch>
Timing time_launches(benchmark::State& state, cudaStream_t stream, Launch&& launch) {
  EventTimer timer;
  int64_t next = 0;
  // Warm-up: module load, first touch of the buffers, library handles and
  // heuristics stay out of the numbers.
  for (int i = 0; i < kWarmupLaunches; ++i) launch(next++);
  KD_CUDA_CHECK(cudaStreamSynchronize(stream));
  const double one = 1e-3 * timer.milliseconds(stream, [&] { launch(next++); });
  Timing timing;
  timing.launches_per_sample =
      static_cast<int>(std::clamp(std::ceil(kSampleSeconds / std::max(one, 1e-7)), 1.0, double(kMaxLaunchesPerSample)));
  std::vector<double> per_launch;
  per_launch.reserve(kSamples);
  for (auto _ : state) {
    const double s = 1e-3 * timer.milliseconds(stream, [&] {
      for (int i = 0; i < timing.launches_per_sample; ++i) launch(next++);
    });
    per_launch.push_back(s / timing.launches_per_sample);
    state.SetIterationTime(per_launch.back());
  }
  KD_CUDA_CHECK(cudaGetLastError());
  timing.median_s = median(per_launch);
  state.counters["median_us"] = timing.median_s * 1e6;
  return timing;
}

// Benchmark option set for ->Apply(): manual (CUDA event) time, kSamples samples, microseconds.
inline void manual_time(benchmark::internal::Benchmark* b) {
  b->UseManualTime()->Iterations(kSamples)->Unit(benchmark::kMicrosecond);
}

// Byte offsets of the arrays of one rotation set, each 256-byte aligned
// (cudaMalloc alignment, so float4 loads stay legal in every set).
class SetLayout {
 public:
  template <typename T>
  size_t add(size_t count) {
    const size_t offset = bytes_;
    bytes_ += (count * sizeof(T) + 255) / 256 * 256;
    return offset;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

// ceil(2 * L2 / set_bytes) copies of a set of `set_bytes` in one allocation (at
// least one copy: a set larger than that is its own rotation).
class RotatingPool {
 public:
  RotatingPool(size_t set_bytes, const std::string& what)
      : stride_(std::max<size_t>((set_bytes + 255) / 256 * 256, 256)),
        sets_(static_cast<int>(std::max<size_t>(1, (2 * l2_bytes() + stride_ - 1) / stride_))),
        arena_(stride_ * sets_, what) {}

  int sets() const { return sets_; }
  size_t total_bytes() const { return arena_.bytes(); }
  // The array at `offset` (from SetLayout) of set i % sets().
  template <typename T>
  T* get(int64_t i, size_t offset) {
    return reinterpret_cast<T*>(arena_.data() + stride_ * static_cast<size_t>(i % sets_) + offset);
  }

 private:
  size_t stride_;
  int sets_;
  kd::cuda::DeviceBuffer<unsigned char> arena_;
};

// Device-to-device copy bandwidth in GB/s counting bytes read plus bytes
// written, over a buffer far larger than L2; measured once per process.
inline double copy_bandwidth_gbps() {
  static const double gbps = [] {
    const size_t bytes = std::max<size_t>(size_t(512) << 20, 8 * l2_bytes());
    kd::cuda::DeviceBuffer<unsigned char> src(bytes, "copy bandwidth source"), dst(bytes, "copy bandwidth target");
    KD_CUDA_CHECK(cudaMemset(src.data(), 0x5A, bytes));
    KD_CUDA_CHECK(cudaMemset(dst.data(), 0xA5, bytes));
    EventTimer timer;
    const auto copy = [&] {
      KD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, nullptr));
    };
    for (int i = 0; i < 2; ++i) timer.milliseconds(nullptr, copy);
    std::vector<double> times;
    for (int i = 0; i < 10; ++i) times.push_back(1e-3 * timer.milliseconds(nullptr, copy));
    return 2.0 * bytes / median(times) / 1e9;
  }();
  return gbps;
}

// Counters of a memory-bound kernel that must move `bytes` per launch:
// "GB/s" and "of_copy" (the fraction of the measured copy bandwidth).
inline void set_bandwidth_counters(benchmark::State& state, double bytes, const Timing& timing) {
  const double gbps = bytes / timing.median_s / 1e9;
  state.counters["GB/s"] = gbps;
  state.counters["of_copy"] = gbps / copy_bandwidth_gbps();
}

namespace detail {
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// Floats uniform in [lo, hi); integers uniform in [lo, hi) (hi > lo).
template <typename T>
__global__ void fill_uniform_kernel(T* p, size_t n, T lo, T hi, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t r = splitmix64(seed ^ (i * 0xD1B54A32D192ED03ull));
    if constexpr (std::is_floating_point_v<T>) {
      p[i] = lo + (hi - lo) * static_cast<T>(static_cast<double>(r >> 40) * (1.0 / double(1ull << 24)));
    } else {
      p[i] = lo + static_cast<T>(r % static_cast<uint64_t>(hi - lo));
    }
  }
}
}  // namespace detail

// p: (n) device, uniform in [lo, hi) for floats or {lo, ..., hi-1} for integers.
template <typename T>
void fill_uniform(T* p, size_t n, T lo, T hi, uint64_t seed, cudaStream_t stream = nullptr) {
  if (n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<size_t>((n + threads - 1) / threads, 65536));
  detail::fill_uniform_kernel<T><<<blocks, threads, 0, stream>>>(p, n, lo, hi, seed);
  KD_CUDA_CHECK_LAUNCH(fill_uniform_kernel);
}

// Exit status of a bench binary asked to run benchmarks where no CUDA device
// exists: not a failure of the code, but not a run either (77, the "skipped"
// status of automake and CTest's SKIP_RETURN_CODE convention).
inline constexpr int kNoDeviceExitStatus = 77;

// The body of every bench binary's main(). `register_benchmarks` (optional) adds
// benchmarks built from shape tables at run time; it must not touch the device,
// so that --benchmark_list_tests lists every benchmark on a machine without a GPU.
// Only running them needs one.
inline int bench_main(int argc, char** argv, void (*register_benchmarks)() = nullptr) {
  try {
    bool listing = false;  // read before Initialize(), which removes the flags it knows from argv
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      listing = listing || arg == "--benchmark_list_tests" || arg == "--benchmark_list_tests=true" ||
                arg == "--benchmark_list_tests=1";
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    if (register_benchmarks) register_benchmarks();
    if (!listing && kd::cuda::device_count() == 0) {
      std::printf("%s: no CUDA device found; nothing benchmarked (--benchmark_list_tests lists what would run)\n",
                  argv[0]);
      return kNoDeviceExitStatus;
    }
    if (!listing) std::printf("device: %s\n", kd::cuda::device_description().c_str());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  } catch (const kd::Error& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}

}  // namespace kd::bench

// Replaces BENCHMARK_MAIN() for binaries that register with BENCHMARK(); binaries
// that register from shape tables write main() as bench_main(argc, argv, register_fn).
#define KD_BENCH_MAIN() \
  int main(int argc, char** argv) { return ::kd::bench::bench_main(argc, argv); }
