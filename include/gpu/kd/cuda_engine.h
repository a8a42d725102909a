// kd/cuda_engine.h: the Engine of kd/train.h on a CUDA device (kd_cuda).
//
// The training splits live on the device as u8, batches are gathered and
// normalised there, and a training step (gather, forward, loss, backward,
// optimiser) is one CUDA graph per batch size, run eagerly on first use,
// captured on the second and replayed from then on; within an epoch the host
// only enqueues work, it never waits for it.
#pragma once

#include <memory>

#include "kd/engine.h"

namespace kd {

// How a CudaEngine runs a training step: by replaying a captured CUDA graph
// (what kdtrain does), or by enqueuing the same kernels one by one (the
// reference the graph path is tested against; same results bit for bit).
enum class StepExecution { Graph, Eager };

// An Engine on CUDA device `device`. Throws kd::Error when that device does
// not exist.
std::unique_ptr<Engine> make_cuda_engine(int device = 0, StepExecution execution = StepExecution::Graph);

// Test hook: while `on`, every CUDA-graph capture of a training step fails (it
// ends with a call that is illegal while capturing), so tests can check the
// fallback: one warning per batch size, then eager steps with the same results.
void force_graph_capture_failure_for_testing(bool on);

}  // namespace kd
