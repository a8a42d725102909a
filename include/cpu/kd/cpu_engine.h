// kd/cpu_engine.h: the Engine of kd/engine.h on the CPU, with the reference
// or the fast ops (kd/cpu_ops.h).
#pragma once

#include <memory>

#include "kd/engine.h"

namespace kd {

// The CPU reference engine (`--device reference`): kd::ref ops, one thread,
// the oracle the GPU tests compare with.
std::unique_ptr<Engine> make_cpu_engine();
// The fast CPU engine (`--device cpu`): oneDNN, fp32, `threads` threads (0 = all hardware threads).
std::unique_ptr<Engine> make_fast_cpu_engine(int threads);

}  // namespace kd
