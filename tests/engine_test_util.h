// Shared helpers of the tests that drive engines through kd/engine.h
// (conformance_test, pipeline_gpu_test): random data sets.
#pragma once

#include <cstdint>
#include <random>

#include "kd/data.h"

namespace kd::test {

// n side x side images of `channels` planes of random pixels with random
// labels in [0, classes): inputs every engine must treat as the reference
// does, not data to learn from.
inline Dataset random_dataset(int64_t n, int side, int classes, std::mt19937_64& rng, int channels = 1) {
  Dataset d;
  d.n = n;
  d.c = channels;
  d.h = d.w = side;
  d.num_classes = classes;
  d.images.resize(size_t(n) * channels * side * side);
  d.labels.resize(size_t(n));
  for (uint8_t& p : d.images) p = uint8_t(rng() % 256);
  for (uint8_t& l : d.labels) l = uint8_t(rng() % uint64_t(classes));
  return d;
}

}  // namespace kd::test
