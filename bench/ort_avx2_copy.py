#!/usr/bin/env python3
"""Writes a copy of ONNX Runtime's libonnxruntime.so.1 that runs MLAS's AVX2 kernels on an AVX-512 CPU.

Why: kdtrain can force its AVX2 path on an AVX-512 machine (KD_CPU_PATH=avx2), but ONNX Runtime has
no switch for its instruction set: MLAS, its math library, picks its kernels once, at start-up, from
CPUID and XCR0. Compared as shipped, kdtrain's AVX2 path would race ONNX Runtime's AVX-512 kernels.
On an AVX2-only CPU, MLAS takes its AVX2/FMA3 kernels because one test fails: CPUID.7 EBX bit 16
(AVX512F) with XCR0's opmask/ZMM state bits (0xE0) set. This copy has the jump that test guards
replaced by a 6-byte NOP, so MLAS falls through to exactly what it does on an AVX2-only CPU. Nothing
else changes: the kernels are ONNX Runtime's own, bit for bit.

The bytes are looked for, not assumed at an offset: `test r10d, 0x10000` (AVX512F), `and eax, 0xE0;
cmp rax, 0xE0; je` (the XCR0 state), as in ONNX Runtime 1.23.2's x64 build (scripts/onnxruntime.sh).
Anything other than exactly one match is refused. Checked on 1.23.2 (bench/RESULTS.md): with the
copy, `perf` puts the student's GEMM in a loop of ymm instructions, as shipped in one of zmm ones.

Usage: bench/ort_avx2_copy.py SOURCE_LIB DEST_LIB
"""
import re
import sys

# test r10d, 0x10000 ; je +?? ; mov rax, r11 ; and eax, 0xE0 ; cmp rax, 0xE0 ; je rel32
PATTERN = re.compile(rb"\x41\xf7\xc2\x00\x00\x01\x00\x74.\x4c\x89\xd8\x25\xe0\x00\x00\x00\x48\x3d\xe0\x00\x00\x00(\x0f\x84)",
                     re.DOTALL)
NOP6 = bytes.fromhex("660f1f440000")  # nop word [rax + rax + 0]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    source, dest = sys.argv[1], sys.argv[2]
    data = bytearray(open(source, "rb").read())
    matches = list(PATTERN.finditer(data))
    if len(matches) != 1:
        print(f"ort_avx2_copy: {source}: found MLAS's AVX-512 dispatch test {len(matches)} times, expected once; "
              "this script knows ONNX Runtime 1.23.2's x64 build (scripts/onnxruntime.sh installs it)",
              file=sys.stderr)
        return 1
    at = matches[0].start(1)
    data[at:at + 6] = NOP6
    open(dest, "wb").write(data)
    print(f"ort_avx2_copy: {dest}: MLAS's AVX-512 branch at file offset {at:#x} replaced by a NOP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
