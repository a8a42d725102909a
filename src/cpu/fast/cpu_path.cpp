// The fast engine's SIMD path (cpu_path.h).
#include "cpu_path.h"

#include <cstdlib>
#include <string>

#include "kd/error.h"

namespace kd::fast {

const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::Scalar: return "scalar";
    case CpuPath::Avx2: return "avx2";
    case CpuPath::Avx512: return "avx512";
    case CpuPath::Neon: return "neon";
  }
  return "?";
}

const std::vector<CpuPath>& vector_paths() {
#if defined(__x86_64__)
  static const std::vector<CpuPath> paths{CpuPath::Avx512, CpuPath::Avx2};
#elif defined(__aarch64__)
  static const std::vector<CpuPath> paths{CpuPath::Neon};
#else
  static const std::vector<CpuPath> paths;
#endif
  return paths;
}

bool cpu_supports(CpuPath path) {
  switch (path) {
    case CpuPath::Scalar: return true;
#if defined(__x86_64__)
    case CpuPath::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuPath::Avx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case CpuPath::Neon: return false;
#elif defined(__aarch64__)
    case CpuPath::Neon: return true;  // mandatory in ARMv8-A: the baseline target already uses it
    case CpuPath::Avx2:
    case CpuPath::Avx512: return false;
#else
    case CpuPath::Avx2:
    case CpuPath::Avx512:
    case CpuPath::Neon: return false;
#endif
  }
  return false;
}

namespace {
// "avx2, scalar": the paths this CPU runs, widest first, for the error messages.
std::string runnable_paths() {
  std::string names;
  for (CpuPath p : vector_paths())
    if (cpu_supports(p)) names += std::string(cpu_path_name(p)) + ", ";
  return names + cpu_path_name(CpuPath::Scalar);
}

CpuPath choose_path() {
  const char* env = std::getenv("KD_CPU_PATH");
  if (!env || !*env) {
    for (CpuPath p : vector_paths())
      if (cpu_supports(p)) return p;
    return CpuPath::Scalar;
  }
  for (CpuPath p : {CpuPath::Avx512, CpuPath::Avx2, CpuPath::Neon, CpuPath::Scalar}) {
    if (std::string(env) != cpu_path_name(p)) continue;
    if (!cpu_supports(p))
      fail(std::string("KD_CPU_PATH=") + env + ": this CPU cannot run that path; unset KD_CPU_PATH or name one it " +
           "runs (" + runnable_paths() + ")");
    return p;
  }
  fail(std::string("KD_CPU_PATH=") + env + ": not a path; use avx512, avx2, neon or scalar (or unset it for the " +
       "widest)");
}
}  // namespace

CpuPath cpu_path() {
  static const CpuPath path = choose_path();
  return path;
}

}  // namespace kd::fast
