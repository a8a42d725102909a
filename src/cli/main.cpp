// kdtrain: parse the command line, pick the device, run the command.
// Every user-facing failure arrives here as kd::Error and leaves as one line
// on stderr and a non-zero exit status.
#include <cstdio>
#include <exception>
#include <memory>

#include "kd/error.h"
#include "kd/options.h"
#include "kd/train.h"
#if KD_WITH_CUDA
#include "kd/cuda_engine.h"
#include "kd/tensor.h"
#endif

namespace {

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
  try {
    kd::Options opt;
    if (!kd::parse_command_line(argc, argv, opt)) return 0;  // --help / --version
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
