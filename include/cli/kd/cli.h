// kd/cli.h: the command line -> kd::Options (kd/config.h), with CLI11.
#pragma once

#include "kd/config.h"

namespace kd {

// Parses argv into Options. Throws kd::Error with a one-line message naming the
// flag for any bad value. Returns false when --help/--version was printed (exit 0).
bool parse_command_line(int argc, const char* const* argv, Options& out);

// The command argv names (Run when none), found as parse_command_line finds it,
// without checking or applying anything else; for choices made before parsing.
Command command_of(int argc, const char* const* argv);

}  // namespace kd
