// Shared helpers for tests of rejected input: the kd::Error message a call
// throws, and a check that it names what it must on one line.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "kd/error.h"

namespace kd::test {

// The message of the kd::Error that f throws, or "" (and a test failure) when it does not throw.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected kd::Error";
  return "";
}

// Every word appears in the message, and the message is one line.
inline void expect_mentions(const std::string& message, std::initializer_list<std::string> words) {
  for (const std::string& w : words)
    EXPECT_NE(message.find(w), std::string::npos) << "'" << w << "' not in: " << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

}  // namespace kd::test
