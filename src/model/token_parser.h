// One token of an architecture string being parsed (src/model/): it knows
// its flag, index and text, so every failure names them. Private to the
// parser (arch.cpp) and the layer table (layers.cpp).
#pragma once

#include <string>
#include <vector>

#include "kd/arch.h"

namespace kd {

// "32x26x26", or "128 features" for a flat shape.
std::string shape_text(const Shape& s);
// Shortest decimal text that reads back as the same float, so normalised
// strings keep "0.25" rather than "0.25000000".
std::string float_text(float v);

class TokenParser {
 public:
  TokenParser(const std::string& flag, int index, std::string token);

  [[noreturn]] void reject(const std::string& why) const;

  const std::string& token() const { return token_; }
  const std::string& name() const { return fields_[0]; }
  int arg_count() const { return int(fields_.size()) - 1; }

  // Rejects the token unless it has min_args..max_args arguments; `usage` shows the grammar.
  void expect_args(int min_args, int max_args, const char* usage) const;
  // Argument `i` (1-based) as a decimal integer >= min_value, or `fallback` when absent.
  int integer_arg(int i, const char* what, int min_value, int fallback) const;
  // Argument `i` as a drop probability in [0, 1).
  float probability_arg(int i) const;

 private:
  const std::string& flag_;
  int index_;
  std::string token_;
  std::vector<std::string> fields_;
};

}  // namespace kd
