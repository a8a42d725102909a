// kd/commands.h: the commands of the kdtrain binary (run, train-teacher,
// distill, eval, latency, sweep) on an engine.
#pragma once

#include <string>
#include <vector>

#include "kd/config.h"
#include "kd/distributed.h"
#include "kd/engine.h"

namespace kd {

// Runs opt.command on `engine`, as this process's part of `comm`'s job
// (docs/mpi.md: a sweep spreads its runs over the ranks). Returns the
// process exit code; throws kd::Error for user-facing failures. (export
// needs no engine: kd/onnx_export.h.)
int run_command(const Options& opt, Engine& engine, Comm& comm = local_comm());

// The files run, train-teacher and distill write to --out, as their closing
// "wrote ..." line lists them; `plots_drawn`: gnuplot drew the pictures.
std::vector<std::string> run_output_files(const Options& opt, bool plots_drawn);

}  // namespace kd
