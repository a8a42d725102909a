// kd/error.h: the one exception type kdtrain throws for user-facing failures.
//
// Every message is meant to be printed as a single line to the user, so it
// names what was wrong, where (file, flag, token, call) and, where possible,
// what to do about it. main() catches kd::Error, prints "kdtrain: <what>" and
// exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace kd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws kd::Error(message). Use for every rejected input.
[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace kd
