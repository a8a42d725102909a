#!/usr/bin/env python3
"""Prints, as one JSON object, what the CUDA libraries given as arguments
(full paths of libcudart.so.13, libcudnn.so.9, libcublas.so.13, any subset)
report about themselves and the machine: driver and runtime versions, the
device count or the error that stands for it, cuDNN and cuBLAS versions.
Run by scripts/gpu_check.py in a child process (a library that crashes on
load takes only this process down)."""
import ctypes
import json
import sys


def cuda_version(v):
    return f"{v // 1000}.{(v % 1000) // 10}"


def main(paths):
    out = {}
    by_name = {p.rsplit("/", 1)[-1]: p for p in paths}
    try:
        if "libcudart.so.13" in by_name:
            rt = ctypes.CDLL(by_name["libcudart.so.13"])
            rt.cudaGetErrorName.restype = ctypes.c_char_p
            rt.cudaGetErrorString.restype = ctypes.c_char_p
            v = ctypes.c_int(0)
            rt.cudaDriverGetVersion(ctypes.byref(v))
            out["driver"] = f"CUDA {cuda_version(v.value)}" if v.value else "none installed (version 0)"
            rt.cudaRuntimeGetVersion(ctypes.byref(v))
            out["runtime"] = cuda_version(v.value)
            n = ctypes.c_int(0)
            status = rt.cudaGetDeviceCount(ctypes.byref(n))
            out["devices"] = n.value if status == 0 else 0
            if status != 0:
                out["device_error"] = (f"cudaGetDeviceCount: {rt.cudaGetErrorName(status).decode()} "
                                       f"({rt.cudaGetErrorString(status).decode()})")
        if "libcudnn.so.9" in by_name:
            dnn = ctypes.CDLL(by_name["libcudnn.so.9"])
            dnn.cudnnGetVersion.restype = ctypes.c_size_t
            v = dnn.cudnnGetVersion()  # cuDNN 9: major * 10000 + minor * 100 + patch
            out["cuDNN"] = f"{v // 10000}.{(v % 10000) // 100}.{v % 100}"
        if "libcublas.so.13" in by_name:
            blas = ctypes.CDLL(by_name["libcublas.so.13"])
            parts = []
            for prop in range(3):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                v = ctypes.c_int(0)
                blas.cublasGetProperty(prop, ctypes.byref(v))
                parts.append(str(v.value))
            out["cuBLAS"] = ".".join(parts)
    except OSError as e:
        out["error"] = f"loading a CUDA library failed: {e}"
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
