// kd/philox.h: Philox4x32-10 counter-based RNG (Salmon et al., SC'11), usable
// on host and device so the CPU reference and the CUDA dropout kernel draw the
// same mask bit for bit from (seed, step, element).
#pragma once

#include <cstdint>

#include "kd/host_device.h"

namespace kd {

struct Philox4 {
  uint32_t v[4];
};

KD_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = uint64_t(a) * uint64_t(b);
  hi = uint32_t(product >> 32);
  lo = uint32_t(product);
}

// One Philox4x32 block: 10 rounds over counter `ctr` with key (k0, k1).
KD_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kMul1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return ctr;
}

// The Philox block that holds elements 4*block .. 4*block+3 of the draw
// identified by (seed, step): counter = (block lo, block hi, step lo, step hi),
// key = seed. Lane j of the result belongs to element 4*block + j, so a CUDA
// thread that owns 4 consecutive elements draws them with one block.
KD_HOST_DEVICE Philox4 philox_draw_block(uint64_t seed, uint64_t step, uint64_t block) {
  return philox4x32_10(Philox4{{uint32_t(block), uint32_t(block >> 32), uint32_t(step), uint32_t(step >> 32)}},
                       uint32_t(seed), uint32_t(seed >> 32));
}

// One lane's 24 high bits -> uniform float in [0, 1), exactly.
KD_HOST_DEVICE float philox_lane_uniform(uint32_t lane) { return float(lane >> 8) * (1.0f / 16777216.0f); }

// Uniform in [0, 1) for element `index` of the draw identified by (seed, step):
// lane index % 4 of block index / 4.
KD_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t step, uint64_t index) {
  return philox_lane_uniform(philox_draw_block(seed, step, index >> 2).v[index & 3]);
}

// Dropout keeps element `index` when its uniform draw is >= p.
KD_HOST_DEVICE bool dropout_keep(uint64_t seed, uint64_t step, uint64_t index, float p) {
  return philox_uniform(seed, step, index) >= p;
}

}  // namespace kd
