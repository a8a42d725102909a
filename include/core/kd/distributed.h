// kd/distributed.h: the processes one kdtrain job runs as, and the few
// collectives it needs. One process (LocalComm) unless the binary was built
// with Open MPI (KD_WITH_MPI, kd/mpi_comm.h) and launched by mpirun or srun;
// nothing outside src/mpi/ includes mpi.h.
//
// Every wait polls and sleeps between polls instead of spinning, because
// kdtrain's ranks share cores with each other's compute (2 ranks on a
// 2-core machine): a rank blocked in a spinning MPI_Bcast while rank 0
// trains the teacher would take half the machine from it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kd {

// A point-to-point message: who sent it, its tag, its bytes.
struct Message {
  int source = 0;
  int tag = 0;
  std::string bytes;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // This process's index among the job's processes on the same node
  // (MPI_Comm_split_type shared): the GPU a rank uses. 0 for one process.
  virtual int node_rank() const = 0;
  // "Open MPI 4.1.4" or "one process".
  virtual std::string describe() const = 0;

  // Point to point (the sweep's dispatch). send returns once `bytes` may be
  // reused; receive waits for the next message from `source` (kAnySource:
  // anyone).
  static constexpr int kAnySource = -1;
  virtual void send(int dest, int tag, const std::string& bytes) = 0;
  virtual Message receive(int source) = 0;
  // `bytes` of `root` reach every rank (their own `bytes` are replaced).
  virtual void broadcast(std::string& bytes, int root) = 0;
  // x (n per rank) becomes the sum over ranks, added in rank order
  // (((x_0 + x_1) + x_2) + ...) in fp32 on every rank, so that the result is
  // bit-identical on every rank and on every rerun with the same size.
  // (MPI_Allreduce's own order depends on the algorithm Open MPI picks for
  // the message size and process placement, so it is not used.)
  virtual void sum_in_rank_order(float* x, int64_t n) = 0;
  // True once every rank has called it (a barrier), false when some rank
  // has not within timeout_s (< 0: no limit): it may be dead or stuck, and
  // the caller should abort().
  virtual bool all_arrive(double timeout_s) = 0;
  // Prints "kdtrain: <message>" on this process and ends every process of
  // the job with `code` (one process: exits).
  [[noreturn]] void abort(const std::string& message, int code);

 protected:
  // Prints and ends the job; abort() ends this process should it return.
  virtual void abort_impl(const std::string& message, int code) = 0;
};

// One process: rank 0 of 1 (a build without MPI, or a run without mpirun or
// srun). Collectives are identities; there is no one to send to.
Comm& local_comm();

// Bytes of a float vector and back (messages carry parameters and gradients).
std::string float_bytes(const std::vector<float>& v);
std::vector<float> floats_of(const std::string& bytes);

}  // namespace kd
