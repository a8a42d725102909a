// kd/model_io.h: model files (teacher.safetensors, student.safetensors) and
// training checkpoints, on top of kd/checkpoint.h.
//
// A model file holds one tensor per PyTorch state_dict entry ("conv1.weight"
// [32, 1, 3, 3], "fc1.weight" [128, 9216], ...) so that
// model.load_state_dict(safetensors.torch.load_file(path)) works, plus
// __metadata__: arch, input shape, classes, normalisation, training facts.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kd/arch.h"
#include "kd/data.h"
#include "kd/engine.h"
#include "kd/phase.h"

namespace kd {

struct ModelFile {
  Arch arch;
  std::vector<float> params;                    // flat, arch.param_count
  std::map<std::string, std::string> metadata;  // everything in __metadata__
};

// Writes a model file atomically. `facts` are added to the metadata
// (role, test accuracy, seed, epochs, ...).
void save_model_file(const std::string& path, const Arch& arch, const std::vector<float>& params,
                     const std::map<std::string, std::string>& facts);
// The metadata key of a model's input normalisation, in --normalize syntax.
constexpr const char* kNormalizeKey = "normalize";
// The normalisation a model was trained with, from its metadata: the
// kNormalizeKey entry; MNIST's constants for a kdtrain file without it
// (written before normalisation was saved, when it was the only one); none
// for a file from elsewhere (PyTorch). Errors name `path`.
std::optional<Normalization> saved_normalization(const std::map<std::string, std::string>& metadata,
                                                 const std::string& path);
// The metadata entries that record `n`: kNormalizeKey, and "normalisation"
// spelling it out for a reader of the file.
std::map<std::string, std::string> normalization_metadata(const Normalization& n);

// Loads and validates a model file: metadata present, arch parses, every
// tensor present with the arch's shape, no extra tensors. Errors name the path
// and the first tensor that does not fit. A file without kdtrain metadata (a
// PyTorch state_dict saved by safetensors.torch.save_file) is read as
// fallback() when one is given (distill --teacher F --teacher-arch A); it is
// called only for such a file.
ModelFile load_model_file(const std::string& path, const std::function<Arch()>& fallback = nullptr);

// A training checkpoint: the model in training, its optimiser state and where
// the run stands. The per-epoch shuffles and dropout counters derive from
// (seed, phase, epoch, step), so these numbers are the whole RNG state.
struct TrainingCheckpoint {
  Phase phase = Phase::Teacher;
  int epochs_done = 0;  // completed epochs of `phase`
  uint64_t seed = 0;
  Arch arch;
  std::vector<float> params;
  OptimState optim;
  std::string history_csv;  // metrics.csv rows of every epoch finished so far (all phases)
  // Training-loss sums over the steps done so far of the unfinished epoch
  // (zero at an epoch boundary), so that a resumed epoch still reports the
  // mean loss of all its steps.
  double epoch_loss_sum = 0, epoch_kl_sum = 0;
  int64_t epoch_steps = 0;
  // --select best: the best epoch so far of `phase` (0: none yet) and its parameters.
  int best_epoch = 0;
  std::vector<float> best_params;  // (arch.param_count) when best_epoch > 0, else empty
  // The hint map in training (--hint; kd/hint.h), empty without one, and the
  // unfinished epoch's sum of hint distances (as epoch_loss_sum).
  HintMapState hint_map;
  double epoch_hint_sum = 0;
  std::string options_fingerprint;  // settings that must match on --resume
};
void save_training_checkpoint(const std::string& path, const TrainingCheckpoint& ck);
TrainingCheckpoint load_training_checkpoint(const std::string& path);

}  // namespace kd
