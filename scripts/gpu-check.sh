#!/usr/bin/env bash
# Every GPU check in one call, on the GPU machine, with gpu-bundle/ (made here
# by scripts/gpu-prepare.sh) carried along. The work is done by
# scripts/gpu_check.py (see its docstring): one deadline (--deadline S,
# default 420 s), the summary table printed last and each failure's reason
# after it, a non-zero exit status on any failure, at most 8 files in $OUT.
#   bash scripts/gpu-check.sh                   # everything, PyTorch eager comparison included
#   bash scripts/gpu-check.sh --torch-compile   # a second call: the torch.compile comparison
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null; then
  echo "gpu-check: python3 not found on this machine; the check needs it (the GPU image's python3 has torch)"
  exit 2
fi
# Binaries and libraries travel xz-compressed (gpu-prepare.sh): unpack them
# once, with python's lzma (no xz needed), keeping the binaries executable.
python3 - <<'PY'
import glob, lzma, os, shutil
for packed in glob.glob("gpu-bundle/bin/*.xz") + glob.glob("gpu-bundle/lib/*.xz"):
    if not os.path.exists(packed[:-3]):
        with lzma.open(packed) as src, open(packed[:-3] + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(packed[:-3] + ".part", 0o755)
        os.replace(packed[:-3] + ".part", packed[:-3])
PY
exec python3 scripts/gpu_check.py "$@"
