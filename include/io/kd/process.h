// kd/process.h: running a helper program through /bin/sh (gnuplot for the
// plots, node for ONNX Runtime) and making its output fit a one-line message.
#pragma once

#include <string>

namespace kd {

// Runs `command` with /bin/sh; returns its exit status (-1 when it could not
// run or did not exit normally) and its stdout and stderr, combined, in `output`.
int run_shell(const std::string& command, std::string& output);

// `s` single-quoted for /bin/sh.
std::string shell_quote(const std::string& s);

// The last non-empty line of `text` (where tools put what went wrong), or "no output".
std::string last_line(const std::string& text);

}  // namespace kd
