// The single-process Comm of kd/distributed.h, and the byte packing every
// Comm's messages use.
#include "kd/distributed.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kd/error.h"

namespace kd {
namespace {

class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int node_rank() const override { return 0; }
  std::string describe() const override { return "one process"; }
  // A single process has no peer: reaching these is a bug in the caller,
  // which must check size() first.
  void send(int dest, int, const std::string&) override {
    fail("internal: a one-process job sent a message to rank " + std::to_string(dest));
  }
  Message receive(int) override { fail("internal: a one-process job waited for a message"); }
  void broadcast(std::string&, int) override {}
  void sum_in_rank_order(float*, int64_t) override {}
  bool all_arrive(double) override { return true; }
  void abort_impl(const std::string& message, int code) override {
    std::fprintf(stderr, "kdtrain: %s\n", message.c_str());
    std::exit(code);
  }
};

}  // namespace

void Comm::abort(const std::string& message, int code) {
  abort_impl(message, code);
  std::_Exit(code);
}

Comm& local_comm() {
  static LocalComm comm;
  return comm;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::vector<float> floats_of(const std::string& bytes) {
  if (bytes.size() % sizeof(float) != 0)
    fail("internal: a message of " + std::to_string(bytes.size()) + " bytes is not a float vector");
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

}  // namespace kd
