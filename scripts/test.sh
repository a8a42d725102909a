#!/usr/bin/env bash
# The test job: set up, build, run every test (GPU tests report SKIPPED without
# a GPU). With --fuzz SECONDS, also builds the libFuzzer targets with clang and
# runs each for SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
if [[ "${1:-}" == "--fuzz" ]]; then
  scripts/fuzz.sh "${2:-60}"
fi
