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
  }
  return "?";
}

bool cpu_supports(CpuPath path) {
#if defined(__x86_64__)
  switch (path) {
    case CpuPath::Scalar: return true;
    case CpuPath::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuPath::Avx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }
  return false;
#else
  return path == CpuPath::Scalar;
#endif
}

namespace {
CpuPath choose_path() {
  const char* env = std::getenv("KD_CPU_PATH");
  if (!env || !*env) {
    for (CpuPath p : {CpuPath::Avx512, CpuPath::Avx2})
      if (cpu_supports(p)) return p;
    return CpuPath::Scalar;
  }
  for (CpuPath p : {CpuPath::Avx512, CpuPath::Avx2, CpuPath::Scalar}) {
    if (std::string(env) != cpu_path_name(p)) continue;
    if (!cpu_supports(p))
      fail(std::string("KD_CPU_PATH=") + env + ": this CPU cannot run that path; unset KD_CPU_PATH or name a " +
           "narrower one (avx2, scalar)");
    return p;
  }
  fail(std::string("KD_CPU_PATH=") + env + ": not a path; use avx512, avx2 or scalar (or unset it for the widest)");
}
}  // namespace

CpuPath cpu_path() {
  static const CpuPath path = choose_path();
  return path;
}

}  // namespace kd::fast
