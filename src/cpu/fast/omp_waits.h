// How this process's OpenMP threads wait between parallel regions, which sets
// how little work a region may have before a second thread pays for itself.
// Spinning (libgomp's default, and what kdtrain's `latency` command asks for,
// src/cli/main.cpp) wakes a waiting thread within microseconds; passive waiting
// (kdtrain's training commands) costs a futex wake, tens of microseconds on the
// 2-core VM, which is the whole of a batch-1 layer (bench/RESULTS.md).
#pragma once

namespace kd::fast {

// False when OMP_WAIT_POLICY is "passive" (any case) or GOMP_SPINCOUNT is 0,
// as libgomp reads them; true otherwise. Read once.
bool omp_waits_spin();

}  // namespace kd::fast
