"""The parts of scripts/gpu_check.py that need no GPU, kept apart so that
tests/gpu_check_test.py can check them on any machine: library discovery,
gtest and Google Benchmark result parsing, failure-reason extraction and the
output budget. Standard library only (it runs under whatever python3 the GPU
machine has).
"""
import glob
import importlib.util
import json
import os
import re
import site
import subprocess
import sys
import sysconfig

# The shared libraries the GPU binaries load (ldd names; libcuda.so.1 is the
# driver's, which the runtime loads), and where each may come from.
NEEDED_LIBS = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9", "libbenchmark.so.1debian",
               "libcuda.so.1")
STANDARD_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/local/cuda/targets/x86_64-linux/lib",
                 "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64")


# ------------------------------------------------------------------ library discovery

def site_package_roots(python_paths=None, env=None):
    """Directories that may hold the `nvidia` namespace package of pip's CUDA
    wheels: this interpreter's site-packages (system, user, venv), sys.path,
    the prefixes of an active venv or conda env, and where importlib finds
    `nvidia`. python_paths / env replace sys.path / os.environ (tests)."""
    env = os.environ if env is None else env
    roots = []
    if python_paths is None:
        python_paths = list(sys.path)
        try:
            python_paths += site.getsitepackages()
        except AttributeError:  # some virtualenv versions lack it
            pass
        python_paths.append(site.getusersitepackages())
        for key in ("purelib", "platlib"):
            python_paths.append(sysconfig.get_paths().get(key, ""))
        try:
            spec = importlib.util.find_spec("nvidia")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            python_paths += [os.path.dirname(p) for p in spec.submodule_search_locations]
    for prefix_var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        prefix = env.get(prefix_var)
        if prefix:
            python_paths += glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages"))
    for p in python_paths:
        if p and os.path.isdir(p) and p not in roots:
            roots.append(p)
    return roots


def wheel_lib_dirs(roots):
    """<root>/nvidia/*/lib (cuDNN: nvidia/cudnn/lib; CUDA 13 wheels: nvidia/cu13/lib) under each root."""
    dirs = []
    for root in roots:
        for pattern in ("nvidia/*/lib", "nvidia/*/lib64"):
            for d in sorted(glob.glob(os.path.join(root, pattern))):
                if os.path.isdir(d) and d not in dirs:
                    dirs.append(d)
    return dirs


def ldconfig_dirs(names, ldconfig_output=None):
    """{lib name: directory} from `ldconfig -p` for the x86-64 entries of `names`."""
    if ldconfig_output is None:
        try:
            ldconfig_output = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            ldconfig_output = ""
    found = {}
    for line in ldconfig_output.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and m.group(1) in names and "x86-64" in m.group(2) and m.group(1) not in found:
            found[m.group(1)] = os.path.dirname(m.group(3))
    return found


def discover_libraries(bundle_lib, names=NEEDED_LIBS, roots=None, ldconfig_output=None, standard_dirs=STANDARD_DIRS):
    """Where each of `names` is, searched in order: the bundle's lib/, the pip
    wheels' nvidia/*/lib of every site-packages root, `ldconfig -p`, the
    standard CUDA and system directories. Returns (found {name: dir},
    search_dirs [every directory looked in, in order]). No filesystem walk."""
    roots = site_package_roots() if roots is None else roots
    candidates = [bundle_lib] + wheel_lib_dirs(roots)
    from_ldconfig = ldconfig_dirs(names, ldconfig_output)
    found = {}
    for name in names:
        for d in candidates:
            if os.path.exists(os.path.join(d, name)):
                found[name] = d
                break
        else:
            if name in from_ldconfig:
                found[name] = from_ldconfig[name]
            else:
                for d in standard_dirs:
                    if os.path.exists(os.path.join(d, name)):
                        found[name] = d
                        break
    return found, candidates + [d for d in standard_dirs if d not in candidates]


def library_path(found, existing=""):
    """LD_LIBRARY_PATH: the found directories (each once, in NEEDED_LIBS order), then `existing`."""
    dirs = []
    for name in NEEDED_LIBS:
        d = found.get(name)
        if d and d not in dirs:
            dirs.append(d)
    return ":".join(dirs + ([existing] if existing else []))


def ldd_problems(ldd_output):
    """The 'not found' libraries of one binary's ldd output."""
    return [line.split("=>")[0].strip() for line in ldd_output.splitlines() if "not found" in line]


def ldd_resolution(ldd_output, names=("cudart", "cublas", "cudnn", "benchmark", "libcuda.")):
    """'libcudnn.so.9 -> /path/libcudnn.so.9' for the libraries worth printing."""
    lines = []
    for line in ldd_output.splitlines():
        m = re.match(r"\s*(\S+) => (.*?)( \(0x[0-9a-f]+\))?$", line)
        if m and any(n in m.group(1) for n in names):
            lines.append(f"{m.group(1)} -> {m.group(2)}")
    return lines


# ------------------------------------------------------------------ gtest

def parse_gtest(log, rc):
    """A gtest binary's outcome from its output and exit status (124/137:
    killed by timeout). Returns {status, passed, failed, skipped, tests}.
    status: PASS (ran, nothing failed or skipped), SKIPPED (some skipped: on a
    GPU machine a skipped GPU test means the device was not seen), FAIL,
    TIMEOUT, CRASH (ended without gtest's summary, or by a signal)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "tests": 0}
    m = re.search(r"^\[==========\] (\d+) tests? from \d+ test (?:suites?|cases?) ran", log, re.M)
    if m:
        counts["tests"] = int(m.group(1))
    for key, tag in (("passed", r"\[  PASSED  \]"), ("failed", r"\[  FAILED  \]"), ("skipped", r"\[  SKIPPED \]")):
        m = re.search(r"^" + tag + r" (\d+) tests?", log, re.M)
        if m:
            counts[key] = int(m.group(1))
    finished = counts["tests"] > 0  # gtest prints "[==========] N tests from M test suites ran." at its end
    if rc in (124, 137):
        status = "TIMEOUT"
    elif rc < 0 or rc > 128 or not finished:
        status = "CRASH"
    elif rc != 0 or counts["failed"] > 0:
        status = "FAIL"
    elif counts["skipped"] > 0 or counts["passed"] == 0:
        status = "SKIPPED"
    else:
        status = "PASS"
    return dict(status=status, **counts)


def gtest_failure_reasons(log, max_lines_per_failure=12):
    """The seed line and every assertion failure (the 'file:line: Failure'
    line and what follows, up to the next gtest tag or blank line), then the
    list of failed tests."""
    lines = log.splitlines()
    out = [l for l in lines if l.startswith("[ seed")][:1]
    i = 0
    while i < len(lines):
        if re.search(r": Failure$|: error: |C\+\+ exception", lines[i]):
            block = [lines[i]]
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith("[") \
                    and len(block) < max_lines_per_failure:
                block.append(lines[j])
                j += 1
            out += block
            i = j
        else:
            i += 1
    out += [l for l in lines if re.match(r"^\[  FAILED  \] \w", l)]
    return "\n".join(out)


def tail(text, lines=15):
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ Google Benchmark

NO_DEVICE_EXIT = 77  # bench/bench_util.h: asked to run without a CUDA device


def parse_benchmark(json_text, rc):
    """(status, digest line) of one bench binary's --benchmark_out JSON.
    'ran' only when it exited 0 and produced at least one benchmark without
    an error; exit 77 is NO-GPU (it saw no device)."""
    if rc == NO_DEVICE_EXIT:
        return "NO-GPU", "saw no CUDA device"
    if rc in (124, 137):
        return "TIMEOUT", "killed at its time cap"
    try:
        runs = json.loads(json_text).get("benchmarks", []) if json_text else []
    except ValueError:
        runs = []
    errors = [b for b in runs if b.get("error_occurred")]
    if rc != 0:
        return "FAIL", f"exit status {rc}"
    if not runs:
        return "FAIL", "no benchmark results"
    if errors:
        return "FAIL", f"{len(errors)} of {len(runs)} benchmarks reported an error, first: " \
                       f"{errors[0].get('name')}: {errors[0].get('error_message', '')}"
    parts = [f"{len(runs)} benchmarks"]
    for counter in ("GB/s", "TFLOP/s", "of_copy"):
        values = [b[counter] for b in runs if isinstance(b.get(counter), (int, float))]
        if values:
            parts.append(f"{counter} {min(values):.3g}..{max(values):.3g}")
    med = [b["median_us"] for b in runs if isinstance(b.get("median_us"), (int, float))]
    if med:
        parts.append(f"median_us {min(med):.3g}..{max(med):.3g}")
    return "ran", ", ".join(parts)


# ------------------------------------------------------------------ output budget

def bounded_reasons(reasons, budget=8000):
    """Joins (step, text) failure reasons into at most `budget` characters:
    every failing step gets a header and an equal share of what is left,
    its text cut from the middle (the first lines say what failed, the last
    where it stopped)."""
    if not reasons:
        return ""
    headers = [f"--- {step}\n" for step, _ in reasons]
    share = max(0, (budget - sum(len(h) for h in headers)) // len(reasons) - 1)
    out = []
    for header, (_, text) in zip(headers, reasons):
        text = text.strip()
        if len(text) > share:
            marker = "\n[... cut ...]\n"
            keep = max(0, share - len(marker))
            text = text[:keep // 2] + marker + text[len(text) - (keep - keep // 2):] if keep > 0 else ""
        out.append(header + text + "\n")
    return "".join(out)[:budget]


def files_to_return(out_dir, limit=8):
    """The files under out_dir (what the device tool brings back), checked against its limit of 8."""
    files = []
    for root, _, names in os.walk(out_dir):
        files += [os.path.relpath(os.path.join(root, n), out_dir) for n in names]
    return sorted(files), len(files) <= limit
