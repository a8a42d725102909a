#!/usr/bin/env bash
# Installs ONNX Runtime's CPU build for node (npm package onnxruntime-node, a
# pinned version) into .ort/ (git-ignored), where scripts/ort_run.js finds it.
# kdtrain uses it to time exported models under ONNX Runtime, and the
# onnx_export test uses it to check exported models against kdtrain's engine.
# Idempotent: an installed copy of the pinned version that loads is left alone.
#
# The package ships its CPU binaries for linux/darwin/win32 in the tarball; its
# postinstall script only downloads optional GPU providers, so it is skipped
# (--ignore-scripts) and nothing but the npm registry is contacted.
#
# Usage: scripts/onnxruntime.sh        (needs node >= 16 and npm)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=1.23.2
dir=.ort

die() { echo "onnxruntime.sh: error: $*" >&2; exit 1; }

# Prints the ONNX Runtime version the installed package loads, or fails.
loaded_version() {
  node -e "const ort = require(require.resolve('onnxruntime-node', {paths: ['$dir']}));
           process.stdout.write(String(ort.env.versions.common))" 2>/dev/null
}

command -v node >/dev/null 2>&1 || die "node is not installed (apt-get install nodejs npm, or run scripts/setup.sh)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install npm, or run scripts/setup.sh)"

if [[ "$(loaded_version || true)" == "$version" ]]; then
  echo "onnxruntime.sh: onnxruntime-node $version already installed in $dir"
  exit 0
fi

echo "onnxruntime.sh: installing onnxruntime-node@$version into $dir (npm registry)"
mkdir -p "$dir"
# A package.json of our own makes $dir the npm project root, so npm does not
# walk up and install into a parent directory's project.
[[ -f "$dir/package.json" ]] || echo '{"name": "kdtrain-ort", "private": true}' >"$dir/package.json"
npm install --prefix "$dir" --ignore-scripts --no-audit --no-fund --silent --save-exact "onnxruntime-node@$version" ||
  die "npm install onnxruntime-node@$version failed; is the npm registry reachable?"
got=$(loaded_version) || die "onnxruntime-node@$version installed in $dir but does not load under $(node --version)"
[[ "$got" == "$version" ]] || die "$dir holds onnxruntime-node $got, expected $version"
echo "onnxruntime.sh: onnxruntime-node $got installed in $dir"
