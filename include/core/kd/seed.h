// kd/seed.h: one seed derived from another, for every stream a run draws
// (each phase's init and shuffles, each dropout layer's mask, each sweep seed).
#pragma once

#include <cstdint>

namespace kd {

// splitmix64 (Steele, Lea, Flood 2014) of seed + golden-ratio * (salt + 1):
// nearby salts give unrelated seeds.
inline uint64_t mix_seed(uint64_t seed, uint64_t salt) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace kd
