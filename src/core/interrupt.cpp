// The stop request of kd/interrupt.h: one lock-free atomic, written by the
// signal handler and read by the loops that poll it.
#include "kd/interrupt.h"

#include <atomic>
#include <initializer_list>
#include <signal.h>

namespace kd {
namespace {

// 0: no request; -1: request_interrupt(); otherwise the signal number.
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler may only touch a lock-free atomic");

// The first request is the one reported; later signals change nothing.
extern "C" void on_stop_signal(int sig) {
  int none = 0;
  g_stop.compare_exchange_strong(none, sig);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
}

bool interrupted() { return g_stop.load() != 0; }

const char* interrupt_reason() {
  switch (g_stop.load()) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a stop request";
  }
}

void request_interrupt() { g_stop.store(-1); }
void clear_interrupt() { g_stop.store(0); }

}  // namespace kd
