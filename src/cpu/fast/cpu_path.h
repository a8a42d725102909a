// Which SIMD path the fast engine's own kernels take (the Winograd convolution
// and its GEMM, src/cpu/fast/winograd_conv.h; the dense layers' forward,
// dense_gemm.h): chosen once at run time from the CPU's features, or forced with
// $KD_CPU_PATH so that one machine can run (and the tests check) every path it
// can execute. x86-64 builds have avx512 and avx2, ARM64 builds neon.
#pragma once

#include <vector>

namespace kd::fast {

enum class CpuPath { Scalar, Avx2, Avx512, Neon };

// "scalar", "avx2", "avx512", "neon".
const char* cpu_path_name(CpuPath path);
// The vector paths this build compiled, widest first: avx512, avx2 on x86-64;
// neon on ARM64; none elsewhere.
const std::vector<CpuPath>& vector_paths();
// This CPU can execute the path's instructions and this build has its kernels
// (scalar: always; neon: on every ARM64, where NEON is part of ARMv8-A).
bool cpu_supports(CpuPath path);
// $KD_CPU_PATH (avx512|avx2|neon|scalar) when set, else the widest path this
// CPU has (x86-64: AVX-512F+BW, else AVX2+FMA; ARM64: NEON; else scalar); read
// once. A bad value, or a path this CPU cannot execute, throws one line naming
// KD_CPU_PATH and the fix. scalar: no own vector kernels; oneDNN does every
// convolution.
CpuPath cpu_path();

}  // namespace kd::fast
