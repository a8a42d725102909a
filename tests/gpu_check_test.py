#!/usr/bin/env python3
"""The GPU check's parts that need no GPU (registered in CTest as gpu_check_scripts):
library discovery, gtest and Google Benchmark result parsing, failure reasons
and the output budget (scripts/gpu_check_lib.py); the dry run of the whole
check on a machine without a GPU (scripts/gpu_check.py); the safetensors
reader of bench/reload_check.py; and, when some python3 here has torch (e.g.
Debian's python3-torch), bench/pytorch_reference.py on the CPU with a tiny
subset and a CPU kdtrain run reloaded into its modules."""
import functools
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import gpu_check_lib as lib  # noqa: E402

BINARY_DIR = os.environ.get("KD_BINARY_DIR", os.path.join(REPO, "build"))
DATA = os.path.join(REPO, "data", "mnist")


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


class LibraryDiscovery(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_finds_pip_wheel_libraries_bundle_and_ldconfig(self):
        site = os.path.join(self.tmp, "venv", "lib", "python3.12", "site-packages")
        touch(os.path.join(site, "nvidia", "cudnn", "lib", "libcudnn.so.9"))
        touch(os.path.join(site, "nvidia", "cu13", "lib", "libcublas.so.13"))
        touch(os.path.join(site, "nvidia", "cu13", "lib", "libcublasLt.so.13"))
        bundle = os.path.join(self.tmp, "gpu-bundle", "lib")
        touch(os.path.join(bundle, "libbenchmark.so.1debian"))
        ldconfig = ("\tlibcudart.so.13 (libc6,x86-64) => /opt/cuda/lib64/libcudart.so.13\n"
                    "\tlibcudnn.so.9 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcudnn.so.9\n")
        # The venv is found through VIRTUAL_ENV alone (it is not on this python's path).
        roots = lib.site_package_roots(python_paths=[], env={"VIRTUAL_ENV": os.path.join(self.tmp, "venv")})
        self.assertEqual(roots, [site])
        found, searched = lib.discover_libraries(bundle, roots=roots, ldconfig_output=ldconfig, standard_dirs=())
        self.assertEqual(found["libcudnn.so.9"], os.path.join(site, "nvidia", "cudnn", "lib"))  # wheel before ldconfig
        self.assertEqual(found["libcublas.so.13"], os.path.join(site, "nvidia", "cu13", "lib"))
        self.assertEqual(found["libcudart.so.13"], "/opt/cuda/lib64")
        self.assertEqual(found["libbenchmark.so.1debian"], bundle)
        self.assertEqual(searched[0], bundle)
        path = lib.library_path(found, "/existing")
        self.assertEqual(path.split(":"), ["/opt/cuda/lib64", os.path.join(site, "nvidia", "cu13", "lib"),
                                           os.path.join(site, "nvidia", "cudnn", "lib"), bundle, "/existing"])

    def test_reports_what_is_missing(self):
        found, _ = lib.discover_libraries(os.path.join(self.tmp, "none"), roots=[], ldconfig_output="",
                                          standard_dirs=())
        self.assertEqual(found, {})
        self.assertEqual(lib.library_path(found), "")

    def test_ldd_parsing(self):
        ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
               "\tlibcudnn.so.9 => /site/nvidia/cudnn/lib/libcudnn.so.9 (0x00007f00)\n"
               "\tlibcublas.so.13 => not found\n"
               "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f01)\n")
        self.assertEqual(lib.ldd_problems(ldd), ["libcublas.so.13"])
        self.assertEqual(lib.ldd_resolution(ldd), ["libcudnn.so.9 -> /site/nvidia/cudnn/lib/libcudnn.so.9",
                                                   "libcublas.so.13 -> not found"])

    def test_this_pythons_roots_exist(self):
        for root in lib.site_package_roots():
            self.assertTrue(os.path.isdir(root), root)


GTEST_PASS = """Running main() from gtest_main.cc
[ seed     ] KD_TEST_SEED=42
[==========] 3 tests from 1 test suite ran. (5 ms total)
[  PASSED  ] 3 tests.
"""
GTEST_FAIL = """[ seed     ] KD_TEST_SEED=123
[ RUN      ] SoftmaxKlGpu.MatchesReferenceOnSpecShapes
../tests/softmax_kl_gpu_test.cpp:170: Failure
Value of: close_with_floor(gpu.grad, ref.grad, kAbsoluteFloor / k.b)
  Actual: false (||gpu - ref|| = 1e-3 > 2e-6)
Google Test trace:
../tests/softmax_kl_gpu_test.cpp:166: b=1 c=2 T=1 alpha=0.5
[  FAILED  ] SoftmaxKlGpu.MatchesReferenceOnSpecShapes (12 ms)
[==========] 4 tests from 1 test suite ran. (30 ms total)
[  PASSED  ] 2 tests.
[  SKIPPED ] 1 test, listed below:
[  SKIPPED ] SoftmaxKlGpu.Other
[  FAILED  ] 1 test, listed below:
[  FAILED  ] SoftmaxKlGpu.MatchesReferenceOnSpecShapes
"""
GTEST_SKIPPED = """[==========] 2 tests from 1 test suite ran. (0 ms total)
[  PASSED  ] 0 tests.
[  SKIPPED ] 2 tests.
"""


class GtestParsing(unittest.TestCase):
    def test_pass(self):
        self.assertEqual(lib.parse_gtest(GTEST_PASS, 0),
                         {"status": "PASS", "passed": 3, "failed": 0, "skipped": 0, "tests": 3})

    def test_fail_counts_and_reasons(self):
        r = lib.parse_gtest(GTEST_FAIL, 1)
        self.assertEqual((r["status"], r["passed"], r["failed"], r["skipped"], r["tests"]), ("FAIL", 2, 1, 1, 4))
        reasons = lib.gtest_failure_reasons(GTEST_FAIL)
        self.assertIn("KD_TEST_SEED=123", reasons)
        self.assertIn("softmax_kl_gpu_test.cpp:170: Failure", reasons)
        self.assertIn("||gpu - ref|| = 1e-3", reasons)
        self.assertIn("b=1 c=2", reasons)
        self.assertIn("[  FAILED  ] SoftmaxKlGpu.MatchesReferenceOnSpecShapes", reasons)

    def test_skipped_is_not_a_pass(self):
        self.assertEqual(lib.parse_gtest(GTEST_SKIPPED, 0)["status"], "SKIPPED")

    def test_crash_and_timeout(self):
        cut = "[ RUN      ] ConvGpu.MatchesReference\n"
        self.assertEqual(lib.parse_gtest(cut, -11)["status"], "CRASH")
        self.assertEqual(lib.parse_gtest(cut, 139)["status"], "CRASH")
        self.assertEqual(lib.parse_gtest(cut, 0)["status"], "CRASH")  # exit 0 without gtest's summary
        self.assertEqual(lib.parse_gtest(cut, 124)["status"], "TIMEOUT")

    def test_real_binary_output(self):
        binary = os.path.join(BINARY_DIR, "param_layout_test")
        if not os.path.exists(binary):
            self.skipTest(f"{binary} not built")
        r = subprocess.run([binary, "--gtest_brief=1"], capture_output=True, text=True, timeout=60)
        parsed = lib.parse_gtest(r.stdout, r.returncode)
        self.assertEqual(parsed["status"], "PASS", r.stdout)
        self.assertGreater(parsed["passed"], 0)


class BenchmarkParsing(unittest.TestCase):
    def test_ran_with_digest(self):
        text = json.dumps({"benchmarks": [{"name": "a/64", "median_us": 3.0, "GB/s": 1000.0},
                                          {"name": "a/1024", "median_us": 30.0, "GB/s": 3000.0}]})
        status, digest = lib.parse_benchmark(text, 0)
        self.assertEqual(status, "ran")
        self.assertIn("2 benchmarks", digest)
        self.assertIn("GB/s 1e+03..3e+03", digest)

    def test_no_gpu_error_and_empty_are_not_ran(self):
        self.assertEqual(lib.parse_benchmark("", lib.NO_DEVICE_EXIT)[0], "NO-GPU")
        self.assertEqual(lib.parse_benchmark("", 0)[0], "FAIL")
        self.assertEqual(lib.parse_benchmark(json.dumps({"benchmarks": []}), 0)[0], "FAIL")
        self.assertEqual(lib.parse_benchmark("", 124)[0], "TIMEOUT")
        err = json.dumps({"benchmarks": [{"name": "x", "error_occurred": True, "error_message": "cuDNN"}]})
        self.assertEqual(lib.parse_benchmark(err, 0)[0], "FAIL")

    def test_real_binary_without_gpu(self):
        binary = os.path.join(BINARY_DIR, "pool_bench")
        if not os.path.exists(binary) or shutil.which("nvidia-smi"):
            self.skipTest("needs the pool_bench binary and a machine without a GPU")
        r = subprocess.run([binary], capture_output=True, text=True, timeout=60)
        self.assertEqual(lib.parse_benchmark("", r.returncode)[0], "NO-GPU", r.stdout + r.stderr)


class OutputBudget(unittest.TestCase):
    def test_reasons_fit_and_every_step_is_named(self):
        reasons = [(f"step{i}", ("line %d of a long log\n" % i) * 2000) for i in range(12)]
        text = lib.bounded_reasons(reasons, 8000)
        self.assertLessEqual(len(text), 8000)
        for i in range(12):
            self.assertIn(f"--- step{i}\n", text)
        self.assertIn("[... cut ...]", text)

    def test_short_reasons_are_kept_whole(self):
        text = lib.bounded_reasons([("a", "one\ntwo"), ("b", "three")], 8000)
        self.assertEqual(text, "--- a\none\ntwo\n--- b\nthree\n")
        self.assertEqual(lib.bounded_reasons([], 8000), "")


class DryRun(unittest.TestCase):
    """The whole check on a machine without a GPU: fails within seconds, names
    why, exits non-zero, prints the summary last and leaves at most 8 files."""

    def test_fails_fast_and_says_why(self):
        if shutil.which("nvidia-smi"):
            self.skipTest("this machine has nvidia-smi: the dry run is for machines without a GPU")
        out = tempfile.mkdtemp()
        try:
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "gpu_check.py"), "--out", out],
                               capture_output=True, text=True, timeout=120)
            seconds = time.monotonic() - t0
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertLess(seconds, 60)
            text = r.stdout
            summary_at = text.index("== gpu-check summary")
            self.assertIn("RESULT: FAIL", text[summary_at:])
            self.assertIn("preflight", text[summary_at:])
            self.assertIn("== why", text[summary_at:])
            self.assertTrue("no GPU" in text[summary_at:] or "gpu-bundle/bin not found" in text[summary_at:],
                            text[summary_at:])
            files, within = lib.files_to_return(out)
            self.assertTrue(within, files)
            self.assertIn("gpu-check.tar.gz", files)
            self.assertIn("summary.txt", files)
            with open(os.path.join(out, "summary.txt")) as f:
                self.assertEqual(f.read(), text[summary_at:])
        finally:
            shutil.rmtree(out)

    def test_rejects_a_deadline_beyond_one_call(self):
        r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "gpu_check.py"), "--deadline", "900"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--deadline", r.stderr)


FAKE_GTEST = """#!/bin/sh
cat <<'LOG'
{log}
LOG
{tail}
"""
FAKE_KDTRAIN = """#!/usr/bin/env python3
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out)
models = [{"role": "teacher", "test_acc": 0.9912, "test_errors": 88, "arch": "t"},
          {"role": "student", "test_acc": 0.9791, "test_errors": 209, "arch": "s"}]
json.dump({"models": models}, open(os.path.join(out, "summary.json"), "w"))
print("trained")
"""
FAKE_BENCH = """#!/usr/bin/env python3
import json, sys
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--benchmark_out=")][0]
json.dump({"benchmarks": [{"name": "x/64", "median_us": 2.0, "GB/s": 900.0}]}, open(out, "w"))
"""


class AccuracyGate(unittest.TestCase):
    """The gate fails a run below its floors, or with an accuracy missing; the issue's targets
    are notes, met or missed, never failures."""

    def test_floors_fail_and_targets_only_report(self):
        import gpu_check
        failures, notes = gpu_check.accuracy_gate({"teacher": 0.9903, "student": 0.9829})
        self.assertEqual(failures, [])
        self.assertEqual(notes, ["teacher target 99.00 % met", "student target 98.45 % missed (not gated)"])
        failures, _ = gpu_check.accuracy_gate({"teacher": 0.9869, "student": 0.9846})
        self.assertEqual(failures, ["teacher test accuracy 98.69 % is below the gate 98.7 %"])
        failures, _ = gpu_check.accuracy_gate({"teacher": 0.9912})
        self.assertEqual(failures, ["student test accuracy None is below the gate 98.2 %"])


class HarnessFlow(unittest.TestCase):
    """scripts/gpu_check.py's steps on fake binaries (a fake nvidia-smi, the
    device probe replaced): every outcome lands in its row, the table comes
    after every step, the reasons after it, and the exit status says FAIL."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.path = os.environ["PATH"]

    def tearDown(self):
        os.environ["PATH"] = self.path
        shutil.rmtree(self.tmp)

    def write(self, rel, text):
        path = os.path.join(self.tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    def test_every_step_reports_and_the_summary_comes_last(self):
        import contextlib
        import io
        import gpu_check
        self.write("fakebin/nvidia-smi", "#!/bin/sh\necho 'Fake GPU, 580.0, 1000 MiB'\n")
        os.environ["PATH"] = os.path.join(self.tmp, "fakebin") + os.pathsep + self.path
        bundle = os.path.join(self.tmp, "gpu-bundle")
        self.write("gpu-bundle/lib/libcuda.so.1", "")
        self.write("gpu-bundle/lib/libbenchmark.so.1debian", "")
        self.write("gpu-bundle/bin/a_ok_gpu_test", FAKE_GTEST.format(log=GTEST_PASS, tail="exit 0"))
        self.write("gpu-bundle/bin/b_bad_gpu_test", FAKE_GTEST.format(log=GTEST_FAIL, tail="exit 1"))
        self.write("gpu-bundle/bin/c_crash_gpu_test",
                   FAKE_GTEST.format(log="[ RUN      ] Conv.Crashes\nlast words", tail="kill -SEGV $$"))
        self.write("gpu-bundle/bin/d_slow_gpu_test", "#!/bin/sh\necho started\nsleep 60\n")
        self.write("gpu-bundle/bin/kdtrain", FAKE_KDTRAIN)
        self.write("gpu-bundle/bin/a_fast_bench", FAKE_BENCH)
        self.write("gpu-bundle/bin/b_nogpu_bench", "#!/bin/sh\necho no device\nexit 77\n")
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        saved_caps = dict(gpu_check.CAPS)
        gpu_check.CAPS.update(gpu_test=3, gate=20, bench=10)
        try:
            check = gpu_check.Check(gpu_check.parse_args(["--out", out, "--deadline", "120"]))
            check.bundle = bundle
            check.library_versions = lambda found: {"lines": ["devices: 1"], "short": "driver CUDA 13.0", "problem": None}
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                self.assertTrue(check.preflight())
                check.gpu_tests()
                check.pipeline()
                check.benchmarks()
                rc = check.finish()
        finally:
            gpu_check.CAPS.clear()
            gpu_check.CAPS.update(saved_caps)
        text = printed.getvalue()
        self.assertEqual(rc, 1)
        rows = {step: status for step, status, _, _ in check.rows}
        self.assertEqual(rows["preflight"], "ok")
        self.assertEqual(rows["a_ok_gpu_test"], "PASS")
        self.assertEqual(rows["b_bad_gpu_test"], "FAIL")
        self.assertEqual(rows["c_crash_gpu_test"], "CRASH")
        self.assertEqual(rows["d_slow_gpu_test"], "TIMEOUT")
        self.assertEqual(rows["kdtrain default pipeline"], "ok")
        self.assertEqual(rows["pipeline gate (accuracy, PyTorch reload)"], "FAIL")  # student 97.91 % < 98.2 %
        self.assertEqual(rows["a_fast_bench"], "ran")
        self.assertEqual(rows["b_nogpu_bench"], "NO-GPU")
        summary_at = text.index("== gpu-check summary")
        self.assertEqual(text[summary_at:].count("[    "), 0, "a step line after the summary")
        why = text[text.index("== why"):]
        self.assertIn("KD_TEST_SEED=123", why)
        self.assertIn("last words", why)
        self.assertIn("student test accuracy 97.91 % is below the gate 98.2 %", why)
        self.assertIn("teacher target 99.00 % met", text[:summary_at])
        self.assertIn("a_fast_bench: ran: 1 benchmarks, GB/s 900..900", text[:summary_at])
        files, within = lib.files_to_return(out)
        self.assertTrue(within, files)
        self.assertEqual(files, ["environment.txt", "gpu-check.tar.gz", "kdtrain-summary.json", "summary.txt"])


@functools.lru_cache(maxsize=None)
def python_with_torch():
    """A python3 here that can import torch (this one, or Debian's), or None (asked once)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and os.path.exists(candidate):
            if subprocess.run([candidate, "-c", "import torch"], capture_output=True, timeout=120).returncode == 0:
                return candidate
    return None


class SafetensorsReader(unittest.TestCase):
    def setUp(self):
        self.python = python_with_torch()
        if self.python is None:
            self.skipTest("no python3 with torch here")

    def run_py(self, code):
        return subprocess.run([self.python, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=os.path.join(REPO, "bench"))

    def test_reads_what_the_format_says(self):
        tmp = tempfile.mkdtemp()
        try:
            path = os.path.join(tmp, "t.safetensors")
            header = {"__metadata__": {"arch": "x"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [24, 28]}}
            blob = json.dumps(header).encode()
            blob += b" " * (-len(blob) % 8)
            data = struct.pack("<6f", 1, 2, 3, 4, 5, 6) + struct.pack("<f", -7.5)
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", len(blob)) + blob + data)
            r = self.run_py(f"from reload_check import read_safetensors as r; t = r({path!r}); "
                            "print(t['a'].tolist(), t['b'].tolist(), sorted(t))")
            self.assertEqual(r.stdout.strip(), "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] [-7.5] ['a', 'b']", r.stderr)
            with open(path, "r+b") as f:
                f.truncate(20)
            r = self.run_py(f"from reload_check import read_safetensors as r; r({path!r})")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("runs past the end of the file", r.stderr)
        finally:
            shutil.rmtree(tmp)


class PytorchScriptsOnCpu(unittest.TestCase):
    """bench/pytorch_reference.py and bench/reload_check.py on a tiny subset, on the CPU."""

    def setUp(self):
        self.python = python_with_torch()
        if self.python is None:
            self.skipTest("no python3 with torch here")
        if not os.path.exists(os.path.join(DATA, "t10k-labels-idx1-ubyte")):
            self.skipTest(f"no MNIST in {DATA} (data/fetch.sh)")
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_reference_pipeline_runs_and_reports(self):
        # --quick as CI and the README run it; an explicit flag overrides one of its settings.
        out = os.path.join(self.tmp, "pt.json")
        r = subprocess.run([self.python, os.path.join(REPO, "bench", "pytorch_reference.py"), "--data", DATA,
                            "--device", "cpu", "--quick", "--test-limit", "100", "--json", out],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(out) as f:
            result = json.load(f)[0]
        self.assertEqual(result["mode"], "eager")
        self.assertEqual((result["train_samples"], result["test_samples"]), (1000, 100))
        self.assertGreater(result["samples_per_s"]["teacher"], 0)
        for role in ("teacher", "student", "scratch"):
            self.assertTrue(0.0 <= result["models"][role]["test_acc"] <= 1.0)
        self.assertEqual(sorted(result["models"]["student"]["latency"]), ["1", "64"])
        self.assertIn("teacher training:", r.stdout)

    def test_help_says_what_quick_and_the_latency_defaults_do(self):
        r = subprocess.run([self.python, os.path.join(REPO, "bench", "pytorch_reference.py"), "--help"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = " ".join(r.stdout.split())
        self.assertIn("--quick a smoke run for CI", text)
        self.assertIn("--train-limit 1000", text)
        self.assertIn("1,64,1024 on cpu", text)

    def test_compile_mode_without_torch_compile_says_so(self):
        has_compile = subprocess.run([self.python, "-c", "import torch, sys; sys.exit(hasattr(torch, 'compile'))"],
                                     timeout=120).returncode
        if has_compile:
            self.skipTest("this torch has torch.compile")
        r = subprocess.run([self.python, os.path.join(REPO, "bench", "pytorch_reference.py"), "--data", DATA,
                            "--device", "cpu", "--mode", "compile"], capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("needs torch.compile", r.stderr)

    def test_kdtrain_weights_reload_into_the_pytorch_modules(self):
        kdtrain = os.path.join(BINARY_DIR, "kdtrain")
        if not os.path.exists(kdtrain):
            self.skipTest(f"{kdtrain} not built")
        run = os.path.join(self.tmp, "run")
        r = subprocess.run([kdtrain, "--data", DATA, "--device", "cpu", "--train-limit", "64", "--test-limit", "100",
                            "--val-size", "20", "--epochs-teacher", "1", "--epochs-student", "1",
                            "--latency-batches", "1", "--out", run, "--quiet"],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([self.python, os.path.join(REPO, "bench", "reload_check.py"), "--run", run, "--data", DATA,
                            "--device", "cpu", "--max-diff", "0"], capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("all 3 models reproduce the reported test accuracy", r.stdout)
        # A model file that does not fit the module is refused (strict), and says which.
        shutil.copy(os.path.join(run, "student.safetensors"), os.path.join(run, "teacher.safetensors"))
        r = subprocess.run([self.python, os.path.join(REPO, "bench", "reload_check.py"), "--run", run, "--data", DATA,
                            "--device", "cpu"], capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("teacher", r.stdout)
        self.assertIn("does not load into the PyTorch module", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
