#!/usr/bin/env bash
# The test job: set up, build, run every test (GPU tests report SKIPPED without
# a GPU; their kernels run on the CUDA simulator as the "sim" tests). With
# --fuzz SECONDS, first builds the libFuzzer targets with clang and runs each
# for SECONDS. Then the ASan + UBSan build of the CPU and simulated tests
# (scripts/sanitize.sh), so that CTest's summary stays the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [[ "${1:-}" == "--fuzz" ]]; then
  scripts/fuzz.sh "${2:-60}"
fi
scripts/sanitize.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
