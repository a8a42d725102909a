#!/usr/bin/env bash
# Behaviour check for refactors: runs a small reference run, a small fast-CPU
# run and a 3-run sweep with KDTRAIN, and prints what must not change: test
# accuracies, error counts, selected epochs, the sweep's per-run results and a
# hash of every saved tensor's bytes (the files' metadata holds times and
# dates, so whole-file hashes differ between runs). Run it with the binary
# before and after a change and diff the two outputs.
# Usage: scripts/same-results.sh KDTRAIN OUT_DIR > results.txt
set -euo pipefail
bin=$1 root=$2
rm -rf "$root" && mkdir -p "$root"
"$bin" run --device reference --train-limit 600 --val-size 200 --test-limit 300 --epochs-teacher 1 \
  --epochs-student 2 --latency-batches 1 --no-ort --quiet --out "$root/ref"
"$bin" run --device cpu --threads 2 --train-limit 6000 --epochs-teacher 2 --epochs-student 2 \
  --latency-batches 1,64 --no-ort --quiet --out "$root/cpu"
"$bin" sweep --device cpu --threads 2 --train-limit 3000 --epochs-teacher 1 --epochs-student 1 \
  --student-arch 'flatten,dense:64,relu,dense:10' --temperature '2;4' --latency-batches 1 --no-ort --quiet \
  --out "$root/sweep"
python3 - "$root" <<'PY'
import hashlib, json, struct, sys, glob, os
root = sys.argv[1]
for run in ("ref", "cpu"):
    for m in json.load(open(f"{root}/{run}/summary.json"))["models"]:
        print(run, m["role"], m["test_acc"], m["test_errors"], m["selected_epoch"])
for r in json.load(open(f"{root}/sweep/sweep.json"))["runs"]:
    print("sweep", r["kind"], r["temperature"], r["alpha"], r["val_acc"], r["test_acc"], r["selected_epoch"])
for path in sorted(glob.glob(f"{root}/*/*.safetensors")):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    digest = hashlib.sha256(b"".join(data[8 + n + header[k]["data_offsets"][0]:8 + n + header[k]["data_offsets"][1]]
                                     for k in sorted(header))).hexdigest()[:16]
    print(os.path.relpath(path, root), digest)
PY
