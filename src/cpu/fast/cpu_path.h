// Which SIMD path the fast engine's own kernels take (the Winograd convolution
// and its GEMM, src/cpu/fast/winograd_conv.h): chosen once at run time from the
// CPU's features, or forced with $KD_CPU_PATH so that one machine can run (and
// the tests check) every path it can execute.
#pragma once

namespace kd::fast {

enum class CpuPath { Scalar, Avx2, Avx512 };

// "scalar", "avx2", "avx512".
const char* cpu_path_name(CpuPath path);
// This CPU can execute the path's instructions (scalar: always).
bool cpu_supports(CpuPath path);
// $KD_CPU_PATH (avx512|avx2|scalar) when set, else the widest path this CPU
// has (AVX-512F+BW, else AVX2+FMA, else scalar); read once. A bad value, or a
// path this CPU cannot execute, throws one line naming KD_CPU_PATH and the fix.
// scalar: no own vector kernels; oneDNN does every convolution.
CpuPath cpu_path();

}  // namespace kd::fast
