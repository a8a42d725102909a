// Whether this architecture has the fast engine's own SIMD kernels (simd_paths.inc:
// x86-64 and ARM64), and the intrinsics they use. Include before simd_paths.inc,
// outside any namespace.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#define KD_HAS_SIMD_PATHS 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define KD_HAS_SIMD_PATHS 1
#else
#define KD_HAS_SIMD_PATHS 0
#endif
