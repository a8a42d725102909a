// The hint's features and its map's init (kd/hint.h).
#include <algorithm>
#include <cmath>
#include <random>

#include "kd/error.h"
#include "kd/hint.h"
#include "kd/seed.h"

namespace kd {

int hint_feature_width(const Arch& arch, const std::string& role) {
  const Layer& last = arch.layers.back();
  const bool hidden_before =
      std::any_of(arch.layers.begin(), arch.layers.end() - 1, [](const Layer& l) { return l.param_count() > 0; });
  if (last.kind != LayerKind::Dense || !hidden_before)
    fail("--hint: the " + role + " '" + arch.text + "' has no hidden layer feeding a last dense layer, so it has " +
         "no features to match; use a " + role + " with one (e.g. 'flatten,dense:128,relu,dense:10') or --hint off");
  return last.in.c;
}

std::vector<float> init_hint_map(int student_width, int teacher_width, uint64_t run_seed) {
  std::vector<float> params(size_t(hint_map_param_count(student_width, teacher_width)));
  std::mt19937_64 rng(mix_seed(run_seed, kHintSalt));
  // nn.Linear(student_width, teacher_width): weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  const float bound = float(1.0 / std::sqrt(double(student_width)));
  std::uniform_real_distribution<float> dist(-bound, bound);
  for (float& p : params) p = dist(rng);
  return params;
}

}  // namespace kd
