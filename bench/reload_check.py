#!/usr/bin/env python3
"""Reloads a kdtrain run's .safetensors into the PyTorch modules of
bench/pytorch_reference.py and checks that they reproduce the test accuracies
the run reported.

For each model of the run's summary.json whose file exists (teacher.safetensors,
student.safetensors, student_scratch.safetensors): load the tensors with
safetensors.torch.load_file (when the safetensors package is importable; else,
unless --require-safetensors, with the small reader below, which follows the
same format: 8-byte little-endian header length, JSON header, raw
little-endian data), load_state_dict(strict=True) into Teacher / Student,
evaluate the run's test split (the first test-limit images, normalised as
kdtrain does), and compare the number of correct answers with the run's
test_errors. kdtrain (cuDNN/cuBLAS or the CPU engine) and PyTorch sum in
different orders, so an image whose two largest logits are within fp32
rounding of each other may flip: --max-diff (default 2 of 10,000) allows that
many, no more. Exits 0 when every model matches, 1 otherwise.

Usage: python3 bench/reload_check.py --run RUN_DIR --data DATA_DIR [--device auto|cuda|cpu]
       [--require-safetensors] [--max-diff N]
"""
import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import MEAN, STD, Student, Teacher, read_idx  # noqa: E402

DEFAULT_TEACHER = "conv:32:3,relu,conv:64:3,relu,maxpool:2,dropout:0.25,flatten,dense:128,relu,dropout:0.5,dense:10"
DEFAULT_STUDENT = "flatten,dense:256,relu,dense:128,relu,dense:10"
FILES = {"teacher": "teacher.safetensors", "student": "student.safetensors", "scratch": "student_scratch.safetensors"}
DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}


def read_safetensors(path):
    """{name: tensor} of a .safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the 8-byte header length")
    header_len, = struct.unpack("<Q", raw[:8])
    if 8 + header_len > len(raw):
        raise ValueError(f"{path}: header of {header_len} bytes runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + header_len])
    data = raw[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name}: dtype {entry['dtype']} is not supported here")
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor {name}: data_offsets [{begin}, {end}) outside the {len(data)} data bytes")
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"])
    return tensors


def load_file(path, require_package):
    """(tensors, which loader) through safetensors.torch when importable."""
    try:
        from safetensors.torch import load_file as st_load
    except ImportError:
        if require_package:
            raise SystemExit("reload_check: the safetensors package is not importable in this python "
                             f"({sys.executable}), and --require-safetensors was given")
        return read_safetensors(path), "bench/reload_check.py reader"
    return st_load(path), "safetensors.torch.load_file"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="kdtrain --out directory (summary.json and *.safetensors)")
    p.add_argument("--data", required=True, help="the data directory the run used")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--require-safetensors", action="store_true", help="fail unless safetensors.torch is importable")
    p.add_argument("--max-diff", type=int, default=2, help="correct answers that may differ from the run's (default 2)")
    args = p.parse_args()
    dev = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                       else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # fp32, as kdtrain computes
        torch.backends.cuda.matmul.allow_tf32 = False
    summary = json.load(open(os.path.join(args.run, "summary.json")))
    config = summary.get("config", {})
    test_limit = int(config.get("test-limit", 0) or 0)
    te_x = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte"))
    te_y = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte")).long()
    if test_limit > 0:
        te_x, te_y = te_x[:test_limit], te_y[:test_limit]
    x = ((te_x.float() / 255 - MEAN) / STD).unsqueeze(1).to(dev)
    y = te_y.to(dev)
    classes = int(te_y.max()) + 1
    failures, checked = [], 0
    for m in summary.get("models", []):
        role = m.get("role")
        path = os.path.join(args.run, FILES.get(role, ""))
        if role not in FILES or not os.path.exists(path):
            continue
        expected_arch = DEFAULT_TEACHER if role == "teacher" else DEFAULT_STUDENT
        if m.get("arch") != expected_arch:
            failures.append(f"{role}: arch '{m.get('arch')}' has no PyTorch module here (only the defaults)")
            continue
        model = (Teacher(classes) if role == "teacher" else Student(classes)).to(dev)
        tensors, loader = load_file(path, args.require_safetensors)
        try:
            model.load_state_dict({k: v.to(dev) for k, v in tensors.items()}, strict=True)
        except RuntimeError as e:
            failures.append(f"{role}: {path} does not load into the PyTorch module (strict): {e}")
            continue
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()) for i in range(0, len(y), 1000))
        reported = len(y) - int(m["test_errors"])
        checked += 1
        line = (f"reload_check: {role} {correct}/{len(y)} correct in PyTorch {torch.__version__} on {dev.type} "
                f"({loader}); the run reported {reported}/{len(y)}")
        print(line, flush=True)
        if abs(correct - reported) > args.max_diff:
            failures.append(line + f": differs by {abs(correct - reported)} > --max-diff {args.max_diff}")
    if checked == 0 and not failures:
        failures.append(f"no model files of {', '.join(FILES.values())} in {args.run}")
    for f in failures:
        print("reload_check: FAIL: " + f, flush=True)
    if not failures:
        print(f"reload_check: all {checked} models reproduce the reported test accuracy", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
