// The normalisation of a data set: computed from its training split, or
// written as text (kdtrain --normalize, a model file's metadata). See kd/data.h.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "kd/data.h"
#include "kd/error.h"

namespace kd {

Normalization normalization_of(const Dataset& d) {
  if (d.c < 1 || d.c > kMaxChannels)
    fail("normalisation: " + std::to_string(d.c) + " channels, at most " + std::to_string(kMaxChannels));
  Normalization n;
  n.c = d.c;
  const int64_t plane = d.pixels();
  for (int ch = 0; ch < d.c; ++ch) {
    // Sums of integers (u8 and its square) are exact in int64 for any data
    // set that fits in memory; only the final division rounds.
    int64_t sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < d.n; ++i) {
      const uint8_t* p = d.images.data() + i * d.values_per_image() + ch * plane;
      for (int64_t j = 0; j < plane; ++j) sum += p[j], sum_sq += int64_t(p[j]) * p[j];
    }
    const double count = double(d.n) * double(plane);
    const double mean = count > 0 ? double(sum) / count / 255.0 : 0.0;
    const double var = count > 0 ? double(sum_sq) / count / (255.0 * 255.0) - mean * mean : 0.0;
    const double std = var > 0 ? std::sqrt(var) : 0.0;
    n.mean[ch] = float(mean);
    n.std[ch] = std > 0 ? float(std) : 1.0f;
  }
  return n;
}

std::string normalization_text(const Normalization& n) {
  // The fewest significant digits (6 to 9; 9 always suffice) that read back
  // as the same float: 0.1307f prints as "0.1307", not "0.130700007".
  const auto list = [&](const float* v) {
    std::string out;
    for (int ch = 0; ch < n.c; ++ch) {
      char buf[32];
      for (int digits = 6; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, double(v[ch]));
        if (std::strtof(buf, nullptr) == v[ch]) break;
      }
      out += (ch ? "," : "") + std::string(buf);
    }
    return out;
  };
  return list(n.mean) + "/" + list(n.std);
}

Normalization parse_normalization(const std::string& text, const std::string& what) {
  const std::string form = " (MEAN[,MEAN...]/STD[,STD...] of pixel / 255, one per channel, e.g. 0.1307/0.3081)";
  const size_t slash = text.find('/');
  if (slash == std::string::npos || text.find('/', slash + 1) != std::string::npos)
    fail(what + ": '" + text + "' is not" + form);
  const auto values = [&](const std::string& part) {
    std::vector<float> out;
    size_t start = 0;
    for (;;) {
      const size_t comma = part.find(',', start);
      const std::string item = part.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      char* end = nullptr;
      const double v = std::strtod(item.c_str(), &end);
      if (item.empty() || end != item.c_str() + item.size() || !std::isfinite(v))
        fail(what + ": '" + item + "' in '" + text + "' is not a finite number" + form);
      out.push_back(float(v));
      if (comma == std::string::npos) return out;
      start = comma + 1;
    }
  };
  const std::vector<float> mean = values(text.substr(0, slash)), std = values(text.substr(slash + 1));
  if (mean.size() != std.size() || mean.size() > size_t(kMaxChannels))
    fail(what + ": '" + text + "' has " + std::to_string(mean.size()) + " means and " + std::to_string(std.size()) +
         " stds; give one of each per channel (1 or 3)");
  Normalization n;
  n.c = int(mean.size());
  for (int ch = 0; ch < n.c; ++ch) {
    if (!(std[size_t(ch)] > 0))
      fail(what + ": std " + std::to_string(std[size_t(ch)]) + " in '" + text + "' must be > 0");
    n.mean[ch] = mean[size_t(ch)];
    n.std[ch] = std[size_t(ch)];
  }
  return n;
}

void check_normalization(const Splits& s) {
  if (s.normalization.c != s.train.c)
    fail("the normalisation " + normalization_text(s.normalization) + " has " + std::to_string(s.normalization.c) +
         " channel(s), the images have " + std::to_string(s.train.c) + "; give one mean and one std per channel");
}

}  // namespace kd
