// kd/hint.h: the hint loss (--hint, issue #21): the distance between the
// teacher's penultimate representation and the student's last hidden layer,
// through a learned linear map, added to the student's distillation loss.
//
//   features: the input of a model's last layer, which must be dense: for the
//             default teacher fc1's 128 outputs after ReLU (its dropout is the
//             identity in inference), for the default student fc2's 128
//             outputs after ReLU. The teacher is frozen and runs in inference.
//   map:      m = s . W^T + bias, W: (teacher width, student width), bias:
//             (teacher width), as nn.Linear, always present (even at equal
//             widths: the teacher's units come in an arbitrary order and
//             scale that the student's need not copy unit for unit), trained
//             with the student's optimiser and schedule, kept in checkpoints,
//             never in exported models.
//   distance: cosine, 1 - cos(m, t) per sample, or mse, the mean over the
//             batch and features of (m - t)^2 (ref::hint_loss).
//   loss:     L = distillation loss + weight * distance; gradients reach the
//             student through the map, and the map.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/arch.h"

namespace kd {

enum class HintKind { Off, Cosine, Mse };

// What a model trained with a hint needs at creation (TrainSettings::hint).
struct HintSettings {
  HintKind kind = HintKind::Off;
  float weight = 0.0f;    // multiplies the distance in the loss
  int teacher_width = 0;  // hint_feature_width of the online teacher: the map's outputs
  bool on() const { return kind != HintKind::Off; }
};

// The width of `arch`'s features (the input of its last layer). Throws naming
// `role` ("student", "teacher"), the arch and the fix when the last layer is
// not dense or no layer with parameters comes before it (the features would
// be the input images: no hidden layer to hint).
int hint_feature_width(const Arch& arch, const std::string& role);

// The map's trainable state, packed as weight (teacher width, student width)
// then bias (teacher width); m and v as OptimState's (v empty for SGD).
struct HintMapState {
  std::vector<float> params, m, v;
};
inline int64_t hint_map_param_count(int student_width, int teacher_width) {
  return int64_t(teacher_width) * student_width + teacher_width;
}
// nn.Linear's default init of the map, U(-1/sqrt(student width), +), from
// mix_seed(run_seed, kHintSalt); every engine starts from these values.
constexpr uint64_t kHintSalt = 3;
std::vector<float> init_hint_map(int student_width, int teacher_width, uint64_t run_seed);

}  // namespace kd
