// kd/json_text.h: the small pieces every report file is written with
// (summary.json, the report table, sweep.json, the sweep table).
#pragma once

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace kd {

// Ordered: the files read top-down in the order a person asks the questions.
using json = nlohmann::ordered_json;

// One number through a printf format: format("%.2f %%", 98.5) -> "98.50 %".
inline std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// JSON has no NaN or Inf: a non-finite measurement becomes null, not invalid JSON.
inline json json_number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace kd
