#!/usr/bin/env bash
# The main job: set up, build, run kdtrain with the default pipeline
# (or with the arguments given, e.g. scripts/run.sh --device cpu --train-limit 6000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/kdtrain "$@"
