// Shared helpers for the tests that run whole commands and read what they
// wrote (metrics.csv, summary.json).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace kd::test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// metrics.csv without its two timing columns (seconds, samples_per_s), which differ run to run.
inline std::string metrics_without_timings(const std::string& csv) {
  std::istringstream in(csv);
  std::string line, out;
  while (std::getline(in, line)) {
    size_t cut = line.size();
    for (int commas = 0; commas < 2 && cut != std::string::npos; ++commas) cut = line.rfind(',', cut - 1);
    out += line.substr(0, cut) + "\n";
  }
  return out;
}

}  // namespace kd::test
