#include "omp_waits.h"

#include <strings.h>

#include <cstdlib>

namespace kd::fast {

bool omp_waits_spin() {
  static const bool spin = [] {
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    if (policy && strcasecmp(policy, "passive") == 0) return false;
    const char* count = std::getenv("GOMP_SPINCOUNT");  // "0" (or "0k", ...): no spinning
    const bool zero_spins = count && count[0] == '0' && std::strtoull(count, nullptr, 10) == 0;
    return !zero_spins;
  }();
  return spin;
}

}  // namespace kd::fast
