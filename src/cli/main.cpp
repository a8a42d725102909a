// kdtrain: parse the command line, pick the device, run the command.
// Every user-facing failure arrives here as kd::Error and leaves as one line
// on stderr and a non-zero exit status.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>

#include "kd/error.h"
#include "kd/onnx_export.h"
#include "kd/cli.h"
#include "kd/commands.h"
#include "kd/cpu_engine.h"
#if KD_WITH_CUDA
#include "kd/cuda_engine.h"
#include "kd/cuda_buffer.h"
#endif

namespace {

// The fast CPU engine's threads (OpenMP, shared with oneDNN) meet at a barrier
// after every op. By default libgomp's waiting threads spin, which on a machine
// whose cores other programs also use takes the CPU from the very thread they
// wait for: 150 samples/s at 2 threads against 582 with passive waiting
// (teacher, 2-core VM at load 7, bench/RESULTS.md). libgomp reads
// OMP_WAIT_POLICY once, when it is loaded, so unless the user chose a policy
// kdtrain sets it and re-executes itself (same pid, arguments and
// environment otherwise); if that fails it simply carries on. Setting
// GOMP_SPINCOUNT or OMP_WAIT_POLICY yourself turns this off.
void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;  // the user's choice
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);  // the real path keeps the process name
  if (len <= 0 || size_t(len) >= sizeof self - 1) return;
  self[len] = '\0';
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv(self, argv);
}

// The engine for --device: cuda (a GPU is required), cpu (the fast CPU
// engine), reference (the CPU reference), or auto (the GPU when one is
// present, else the fast CPU engine with a one-line notice).
std::unique_ptr<kd::Engine> choose_engine(kd::DeviceChoice device, int threads) {
  if (device == kd::DeviceChoice::Reference) return kd::make_cpu_engine();
#if KD_WITH_CUDA
  const bool have_gpu = device != kd::DeviceChoice::Cpu && kd::cuda::device_count() > 0;
  if (have_gpu) return kd::make_cuda_engine();
  if (device == kd::DeviceChoice::Cuda)
    kd::fail("--device cuda: no CUDA device found (driver missing or no GPU); use --device cpu or auto");
  if (device == kd::DeviceChoice::Auto)
    std::fprintf(stderr, "kdtrain: no CUDA device found, running on the fast CPU engine (--device cpu silences this)\n");
#else
  if (device == kd::DeviceChoice::Cuda) kd::fail("--device cuda: this kdtrain was built without CUDA (KD_WITH_CUDA=OFF)");
  if (device == kd::DeviceChoice::Auto)
    std::fprintf(stderr, "kdtrain: built without CUDA, running on the fast CPU engine\n");
#endif
  return kd::make_fast_cpu_engine(threads);
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_openmp_waits(argv);
  try {
    kd::Options opt;
    if (!kd::parse_command_line(argc, argv, opt)) return 0;  // --help / --version
    if (opt.command == kd::Command::Export) {  // needs no data and no device
      kd::export_model_file(opt.model_path, opt.onnx_path, opt.quiet);
      return 0;
    }
    std::unique_ptr<kd::Engine> engine = choose_engine(opt.device, opt.threads);
    return kd::run_command(opt, *engine);
  } catch (const kd::Error& e) {
    std::fprintf(stderr, "kdtrain: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kdtrain: out of host memory; try a smaller --batch-size or --train-limit\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kdtrain: internal error: %s\n", e.what());
    return 3;
  }
}
