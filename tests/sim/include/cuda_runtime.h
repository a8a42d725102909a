// Shim for the CUDA simulator: kernel sources and GPU tests compiled for
// tests/sim include this instead of the CUDA toolkit's header.
#pragma once
#include "cuda_sim.h"
