// kd/phase_runner.h: one training phase on a ModelEngine: the epoch loop
// (shuffle, steps, validation), its loss sums, progress lines, the per-epoch
// checkpoint and the best-epoch rule of --select.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/engine.h"
#include "kd/phase.h"
#include "kd/run_state.h"

namespace kd {

struct PhaseSettings {
  int batch_size = 64;      // the training batch in use (capped at the split)
  int64_t train_n = 0;      // images in the training split
  bool select_best = true;  // --select best with a validation split to select on
  bool quiet = false;       // no lines on stdout
  bool tty = false;         // stdout is a terminal: a live progress line per 50 batches
};

// What a phase trained: its curve (a resumed phase's includes the epochs
// before the interruption), wall time, and the epoch kept by --select.
struct PhaseResult {
  std::vector<EpochRecord> curve;
  double train_seconds = 0;
  std::string selection;  // "best" or "last"
  int selected_epoch = 0;
};

// Trains `model` for `epochs` epochs of `phase`, continuing state.resume()
// when it is a checkpoint of this phase. Shuffles come from (seed, phase,
// epoch): --seed, or a sweep run's seed. Stops (SIGINT, non-finite loss)
// leave through `state` with a one-line error.
PhaseResult train_phase(RunState& state, const PhaseSettings& settings, Phase phase, ModelEngine& model,
                        const LossConfig& loss, int epochs, uint64_t seed);

}  // namespace kd
