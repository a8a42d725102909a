// kd/commands.h: the commands of the kdtrain binary (run, train-teacher,
// distill, eval, latency, sweep) on an engine.
#pragma once

#include "kd/config.h"
#include "kd/engine.h"

namespace kd {

// Runs opt.command on `engine`. Returns the process exit code; throws
// kd::Error for user-facing failures. (export needs no engine: kd/onnx_export.h.)
int run_command(const Options& opt, Engine& engine);

}  // namespace kd
