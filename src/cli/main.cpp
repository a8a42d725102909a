// kdtrain: parse the command line, pick the device, run the command.
// Every user-facing failure arrives here as kd::Error and leaves as one line
// on stderr and a non-zero exit status.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "kd/error.h"
#include "kd/onnx_export.h"
#include "kd/cli.h"
#include "kd/commands.h"
#include "kd/cpu_engine.h"
#include "kd/distributed.h"
#if KD_WITH_MPI
#include "kd/mpi_comm.h"
#endif
#if KD_WITH_CUDA
#include "kd/cuda_engine.h"
#include "kd/cuda_buffer.h"
#endif

namespace {

// The fast CPU engine's threads (OpenMP, shared with oneDNN) meet at a barrier
// after every op. libgomp reads how its waiting threads wait once, when it is
// loaded, so unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT set)
// kdtrain sets it and re-executes itself (same pid, arguments and environment
// otherwise; if that fails it simply carries on):
//  - training and everything else: passive. By default libgomp's waiting
//    threads spin, which on a machine whose cores other programs also use takes
//    the CPU from the very thread they wait for: 150 samples/s at 2 threads
//    against 582 passive (teacher, 2-core VM at load 7), and a spin of 10,000
//    rounds still cut the student's epochs from ~40,000 to ~16,000 samples/s
//    beside 3 busy loops (bench/RESULTS.md);
//  - `latency`: spin 10,000 rounds (tens of microseconds) before sleeping, as
//    ONNX Runtime's own threads spin: a forward's ops follow each other closely,
//    and on the idle VM this took the AVX2 teacher at batch 1 from 0.23-0.35 to
//    0.18-0.19 ms and the student at batch 1,000 from 1.5-1.7 to ~1.45 ms.
void choose_openmp_waits(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;  // the user's choice
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);  // the real path keeps the process name
  if (len <= 0 || size_t(len) >= sizeof self - 1) return;
  self[len] = '\0';
  kd::Command command = kd::Command::Run;
  try {
    command = kd::command_of(argc, argv);
  } catch (const std::exception&) {  // parse_command_line reports what is wrong with argv
  }
  const bool spin = command == kd::Command::Latency;
  if (setenv(spin ? "GOMP_SPINCOUNT" : "OMP_WAIT_POLICY", spin ? "10000" : "passive", 1) != 0) return;
  execv(self, argv);
}

// The engine for --device: cuda (a GPU is required), cpu (the fast CPU
// engine), reference (the CPU reference), or auto (the GPU when one is
// present, else the fast CPU engine with a one-line notice). Under mpirun or
// srun each rank takes the GPU of its node-local rank (one rank per GPU;
// more ranks than GPUs share them round-robin), as llm.c does.
std::unique_ptr<kd::Engine> choose_engine(kd::DeviceChoice device, int threads, const kd::Comm& comm) {
  if (device == kd::DeviceChoice::Reference) return kd::make_cpu_engine();
#if KD_WITH_CUDA
  const int gpus = device != kd::DeviceChoice::Cpu ? kd::cuda::device_count() : 0;
  if (gpus > 0) return kd::make_cuda_engine(comm.node_rank() % gpus);
  if (device == kd::DeviceChoice::Cuda)
    kd::fail("--device cuda: no CUDA device found (driver missing or no GPU); use --device cpu or auto");
  if (device == kd::DeviceChoice::Auto)
    std::fprintf(stderr,
                 "kdtrain: no CUDA device found, running on the fast CPU engine (--device cpu silences this)\n");
#else
  if (device == kd::DeviceChoice::Cuda)
    kd::fail("--device cuda: this kdtrain was built without CUDA (KD_WITH_CUDA=OFF)");
  if (device == kd::DeviceChoice::Auto)
    std::fprintf(stderr, "kdtrain: built without CUDA, running on the fast CPU engine\n");
#endif
  return kd::make_fast_cpu_engine(threads);
}

// This process's job: MPI's ranks when mpirun or srun started it (their
// launchers set PMIX_RANK, PMI_RANK or OMPI_COMM_WORLD_RANK), else one
// process. A plain run skips MPI_Init, whose singleton start would spawn an
// Open MPI daemon for nothing.
kd::Comm& job_comm(int* argc, char*** argv, std::unique_ptr<kd::Comm>& owned) {
#if KD_WITH_MPI
  if (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK") || std::getenv("OMPI_COMM_WORLD_RANK"))
    owned = kd::make_mpi_comm(argc, argv);
#endif
  return owned ? *owned : kd::local_comm();
}

// A failure ends every rank of a job: one rank waiting forever for a dead
// one is the failure mode to rule out. When every rank fails alike (a bad
// flag; a stop request, which data-parallel ranks act on at the same step,
// each writing its checkpoint first) they all arrive here within seconds:
// rank 0 prints the message as a single process would and every rank exits
// with `code`. A rank failing alone prints its message, naming itself, and
// after kAloneAfterS ends the job with MPI_Abort.
int fail_job(kd::Comm& comm, const std::string& message, int code) {
  constexpr double kAloneAfterS = 5;
  if (comm.size() > 1 && !comm.all_arrive(kAloneAfterS))
    comm.abort(
        (comm.rank() ? "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) + ": " : "") +
            message + " (every rank stops)",
        code);
  if (comm.rank() == 0) std::fprintf(stderr, "kdtrain: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  choose_openmp_waits(argc, argv);
  std::unique_ptr<kd::Comm> owned;
  kd::Comm* comm = &kd::local_comm();
  try {
    comm = &job_comm(&argc, &argv, owned);
    kd::Options opt;
    if (!kd::parse_command_line(argc, argv, opt)) return 0;  // --help / --version
    if (opt.command == kd::Command::Export) {                // needs no data and no device
      kd::export_model_file(opt.model_path, opt.onnx_path, opt.quiet);
      return 0;
    }
    std::unique_ptr<kd::Engine> engine = choose_engine(opt.device, opt.threads, *comm);
    return kd::run_command(opt, *engine, *comm);
  } catch (const kd::Error& e) {
    return fail_job(*comm, e.what(), 1);
  } catch (const std::bad_alloc&) {
    return fail_job(*comm, "out of host memory; try a smaller --batch-size or --train-limit", 1);
  } catch (const std::exception& e) {
    return fail_job(*comm, std::string("internal error: ") + e.what(), 3);
  }
}
