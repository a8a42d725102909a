// The Comm of kd/distributed.h over MPI: the only file that includes mpi.h.
#include "kd/mpi_comm.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "kd/error.h"

namespace kd {
namespace {

// Waits for `request` by polling: a few hundred immediate tests (a
// data-parallel step's sum usually completes within them), then sleeps of
// 200 us, so that a rank waiting minutes (for the teacher, for a sweep run)
// costs its node no CPU. `what` names the call in errors. False when
// timeout_s passed first (the request is then left pending).
bool wait_for(MPI_Request& request, const char* what, double timeout_s = -1) {
  const auto start = std::chrono::steady_clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) fail(std::string(what) + " failed (MPI error " + std::to_string(rc) + ")");
    if (done) return true;
    if (timeout_s >= 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s)
      return false;
    if (polls < 300) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail(std::string(what) + " failed: " + std::string(text, size_t(len)));
  }
}

int count_of(size_t bytes, const char* what) {
  if (bytes > size_t(INT_MAX))
    fail(std::string(what) + ": " + std::to_string(bytes) + " bytes is more than one MPI message carries (2 GiB)");
  return int(bytes);
}

class MpiComm final : public Comm {
 public:
  MpiComm(int* argc, char*** argv) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    // Errors come back as codes and leave as kd::Error (main() then aborts
    // the job with the message), instead of MPI's default abort without one.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (provided < MPI_THREAD_SERIALIZED)
      fail("MPI: this MPI library gives thread level " + std::to_string(provided) +
           ", kdtrain needs MPI_THREAD_SERIALIZED; use Open MPI (libopenmpi-dev)");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
          "MPI_Comm_split_type");
    MPI_Comm_rank(node, &node_rank_);
    MPI_Comm_free(&node);
    check(MPI_Comm_dup(MPI_COMM_WORLD, &arrivals_), "MPI_Comm_dup");
  }
  ~MpiComm() override {
    MPI_Comm_free(&arrivals_);
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int node_rank() const override { return node_rank_; }
  std::string describe() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string text(version, size_t(len));
    text = text.substr(0, text.find(','));  // "Open MPI v4.1.4"
    return std::to_string(size_) + (size_ == 1 ? " rank" : " ranks") + " of " + text;
  }

  void send(int dest, int tag, const std::string& bytes) override {
    MPI_Request request;
    check(MPI_Isend(bytes.data(), count_of(bytes.size(), "MPI_Isend"), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &request),
          "MPI_Isend");
    wait_for(request, "MPI_Isend");
  }

  Message receive(int source) override {
    const int from = source == kAnySource ? MPI_ANY_SOURCE : source;
    MPI_Status status;
    for (int polls = 0;; ++polls) {
      int ready = 0;
      check(MPI_Iprobe(from, MPI_ANY_TAG, MPI_COMM_WORLD, &ready, &status), "MPI_Iprobe");
      if (ready) break;
      if (polls < 300) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Message m;
    m.source = status.MPI_SOURCE;
    m.tag = status.MPI_TAG;
    m.bytes.resize(size_t(count));
    check(MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, m.tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    return m;
  }

  void broadcast(std::string& bytes, int root) override {
    unsigned long long size = bytes.size();
    MPI_Request request;
    check(MPI_Ibcast(&size, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD, &request), "MPI_Ibcast");
    wait_for(request, "MPI_Ibcast");
    bytes.resize(size_t(size));
    check(MPI_Ibcast(bytes.data(), count_of(bytes.size(), "MPI_Ibcast"), MPI_BYTE, root, MPI_COMM_WORLD, &request),
          "MPI_Ibcast");
    wait_for(request, "MPI_Ibcast");
    // The root's part of a non-blocking broadcast may complete before the
    // data has left it, and only its own later MPI calls move it on; a rank
    // that goes on to compute would leave the others waiting. Measured:
    // without this barrier a sweep's rank 1 got the teacher only after rank 0
    // had trained every run itself.
    check(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
    wait_for(request, "MPI_Ibarrier");
  }

  // Every rank gathers every rank's x, then adds them in rank order: the
  // same additions in the same order everywhere. Costs size() copies of x
  // per rank, which the CPU engines' models (at most a few million
  // parameters) afford.
  void sum_in_rank_order(float* x, int64_t n) override {
    const int count = count_of(size_t(n) * sizeof(float), "MPI_Iallgather") / int(sizeof(float));
    gathered_.resize(size_t(n) * size_t(size_));
    MPI_Request request;
    check(MPI_Iallgather(x, count, MPI_FLOAT, gathered_.data(), count, MPI_FLOAT, MPI_COMM_WORLD, &request),
          "MPI_Iallgather");
    wait_for(request, "MPI_Iallgather");
    for (int64_t i = 0; i < n; ++i) {
      float sum = gathered_[size_t(i)];
      for (int r = 1; r < size_; ++r) sum += gathered_[size_t(r) * size_t(n) + size_t(i)];
      x[i] = sum;
    }
  }

  bool all_arrive(double timeout_s) override {
    MPI_Request request;
    check(MPI_Ibarrier(arrivals_, &request), "MPI_Ibarrier");
    return wait_for(request, "MPI_Ibarrier", timeout_s);
  }

  void abort_impl(const std::string& message, int code) override {
    std::fprintf(stderr, "kdtrain: %s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
  }

 private:
  int rank_ = 0, size_ = 1, node_rank_ = 0;
  // all_arrive's own communicator: a failing rank's barrier must never pair
  // with a collective that the other ranks are still waiting in.
  MPI_Comm arrivals_ = MPI_COMM_NULL;
  std::vector<float> gathered_;  // sum_in_rank_order's (size, n) buffer, kept between steps
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(int* argc, char*** argv) { return std::make_unique<MpiComm>(argc, argv); }

}  // namespace kd
