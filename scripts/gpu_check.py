#!/usr/bin/env python3
"""Every GPU check in one call on the GPU machine (run through scripts/gpu-check.sh).

Reads gpu-bundle/ (made here by scripts/gpu-prepare.sh and carried along) and
runs, under one overall deadline (default 420 s, --deadline S) with a cap per
step, in order of importance:
  preflight   GPU and driver (nvidia-smi), library discovery (no `find /`:
              the bundle, pip's nvidia/*/lib of every site-packages python
              knows, ldconfig, standard dirs), versions of driver, runtime,
              cuDNN and cuBLAS, `ldd` of every binary; nothing else runs
              unless this passes;
  GPU tests   every *_gpu_test binary;
  pipeline    the default kdtrain run, then its gate: teacher >= 98.7 % and
              distilled student >= 98.2 % test accuracy (see GATES; issue #21's
              99.0 / 98.45 % targets are reported, not gated), and the .safetensors
              reloaded into bench/pytorch_reference.py's modules (strict) must
              reproduce the reported test accuracies (bench/reload_check.py);
  benchmarks  a pass of every *_bench binary (tables into the tarball, a
              one-line digest each printed);
  PyTorch     bench/pytorch_reference.py in eager mode on the same GPU, and
              the side-by-side table (--no-torch skips it). torch.compile is
              a separate invocation: --torch-compile runs preflight and the
              compiled comparison only.
Whatever happens (a step failing, timing out or crashing, the deadline, a
signal, a bug in this script), it ends by printing the summary table and then
each failure's reason within ~8,000 characters, and exits non-zero if anything
failed. $OUT (default gpu-check-out/) receives at most 8 files: the summary,
the environment report, one tarball of every log, and the kdtrain / PyTorch
result JSON when those ran.
"""
import argparse
import datetime
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_check_lib as lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REASON_BUDGET = 8000
RESERVE_S = 15          # kept back from the deadline for the summary and the tarball
CAPS = {                # seconds per step (each also limited by what is left of the deadline)
    "gpu_test": 120, "gpu_tests_total": 210,
    "kdtrain": 180, "gate": 60,
    "bench": 30, "bench_total": 80,
    "torch": 200,
}
# The accuracy gate tells a working GPU engine from a broken one, so it sits below what the
# recipe gives by chance. On the CPU engines the default run's teacher scored 98.88-99.16 %
# over 10 seeds; its distilled student, with the 20 student epochs of SPEC section 2, scored
# 98.52 +- 0.07 % over 3 seeds, every seed >= 98.45 % (bench/RESULTS.md): both floors sit
# about 3-4 standard deviations below. Issue #21's targets (teacher 99.0 %, student 98.45 %,
# each on the mean of 3 seeds) cannot be judged from one run: they are printed, not gated.
GATES = {"teacher": 0.987, "student": 0.982}
TARGETS = {"teacher": 0.990, "student": 0.9845}


def accuracy_gate(acc):
    """acc: test accuracy per role (fractions; None when missing) -> (failures, target notes):
    a failure per role below its gate (or missing), a note per other role on its target."""
    failures, notes = [], []
    for role, floor in GATES.items():
        a = acc.get(role)
        if not isinstance(a, (int, float)) or a < floor:
            failures.append(f"{role} test accuracy {a if a is None else f'{100 * a:.2f} %'} is below the gate "
                            f"{100 * floor:.1f} %")
        else:
            notes.append(f"{role} target {100 * TARGETS[role]:.2f} % "
                         + ("met" if a >= TARGETS[role] else "missed (not gated)"))
    return failures, notes


def stop_group(proc):
    """SIGTERM, then SIGKILL after 5 s, to the process group a step runs in."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class Check:
    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + args.deadline
        self.bundle = os.path.join(REPO, "gpu-bundle")
        self.out = os.path.abspath(args.out)
        self.work = tempfile.mkdtemp(prefix="gpu-check-")
        self.rows = []       # (step, status, seconds, detail)
        self.reasons = []    # (step, text)
        self.env_lines = []  # the environment report
        self.headline = "no GPU information"
        self.env = dict(os.environ)

    # -------------------------------------------------------------- helpers
    def left(self):
        return self.deadline - time.monotonic() - RESERVE_S

    def say(self, text=""):
        print(text, flush=True)

    def record(self, step, status, seconds, detail="", reason=None):
        self.rows.append((step, status, seconds, detail))
        ok = status in ("ok", "PASS", "ran")
        if not ok and reason:
            self.reasons.append((f"{step}: {status}", reason))
        self.say(f"[{status:>8}] {step} ({seconds:.0f} s) {detail}".rstrip())

    def run(self, step, cmd, cap, log_name, env=None):
        """Runs cmd with its output in work/log_name, killed (process group) at
        min(cap, what is left). Returns (rc, seconds, log text); rc 124 on
        timeout, None when no time was left to start it."""
        left = self.left()
        if left < 5 or cap < 1:
            why = "deadline reached" if left < 5 else "its group's time cap is used up"
            self.record(step, "NOT RUN", 0, why,
                        f"not started ({why}): {left:.0f} s left of the {self.args.deadline} s deadline")
            return None, 0, ""
        limit = min(cap, left)
        path = os.path.join(self.work, log_name)
        t0 = time.monotonic()
        with open(path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env=env or self.env, start_new_session=True)
            except OSError as e:
                log.write(f"cannot start: {e}\n")
                return 127, 0, f"cannot start {cmd[0]}: {e}"
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                stop_group(proc)
                rc = 124
                log.write(f"\n[gpu-check] killed after {limit:.0f} s (step cap {cap} s, deadline)\n")
            except BaseException:  # SIGTERM / SIGINT while it runs: it goes down with the check
                stop_group(proc)
                raise
        with open(path, errors="replace") as f:
            return rc, time.monotonic() - t0, f.read()

    # -------------------------------------------------------------- steps
    def preflight(self):
        t0 = time.monotonic()
        problems = []
        env_lines = self.env_lines
        env_lines.append(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
                         f"host python {sys.version.split()[0]} ({sys.executable})")
        if not os.path.isdir(os.path.join(self.bundle, "bin")):
            problems.append("gpu-bundle/bin not found: run scripts/gpu-prepare.sh on the build machine and carry "
                            "gpu-bundle with the call")
        info = os.path.join(self.bundle, "build-info.txt")
        if os.path.exists(info):
            with open(info) as f:
                env_lines += ["built with: " + line.strip() for line in f if line.strip()]

        smi = shutil.which("nvidia-smi")
        gpu = ""
        if smi is None:
            problems.append("no GPU: nvidia-smi is not on the PATH (no NVIDIA driver on this machine)")
        else:
            try:
                r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=20)
                gpu = r.stdout.strip()
                if r.returncode != 0 or not gpu:
                    problems.append(f"nvidia-smi failed (exit {r.returncode}): {(r.stdout + r.stderr).strip()[:300]}")
            except (OSError, subprocess.SubprocessError) as e:
                problems.append(f"nvidia-smi did not answer: {e}")
        env_lines.append(f"nvidia-smi: {gpu or 'n/a'}")

        found, searched = lib.discover_libraries(os.path.join(self.bundle, "lib"))
        for name in lib.NEEDED_LIBS:
            env_lines.append(f"{name}: {found.get(name, 'NOT FOUND')}")
            if name not in found:
                problems.append(f"{name} not found in the bundle, pip's nvidia/*/lib of python's site-packages, "
                                f"ldconfig or {', '.join(lib.STANDARD_DIRS[:3])}")
        env_lines.append("searched: " + ", ".join(searched))
        self.env["LD_LIBRARY_PATH"] = lib.library_path(found, os.environ.get("LD_LIBRARY_PATH", ""))
        env_lines.append("LD_LIBRARY_PATH=" + self.env["LD_LIBRARY_PATH"])

        versions = self.library_versions(found)
        env_lines += versions["lines"]
        if versions["problem"]:
            problems.append(versions["problem"])
        self.headline = ", ".join(x for x in [gpu or "no GPU", versions["short"]] if x)

        # The .xz originals stay beside what gpu-check.sh unpacked from them.
        binaries = sorted(b for b in glob.glob(os.path.join(self.bundle, "bin", "*")) if not b.endswith(".xz"))
        for b in binaries:
            try:
                out = subprocess.run(["ldd", b], capture_output=True, text=True, timeout=20, env=self.env).stdout
            except (OSError, subprocess.SubprocessError) as e:
                out = f"ldd failed: {e}"
            missing = lib.ldd_problems(out)
            env_lines.append(f"ldd {os.path.basename(b)}: " + ("; ".join(lib.ldd_resolution(out)) or out.strip()[:200]))
            if missing:
                problems.append(f"{os.path.basename(b)}: ldd cannot resolve {', '.join(missing)}")
        self.say("== environment")
        for line in env_lines:
            self.say(line)
        with open(os.path.join(self.work, "environment.txt"), "w") as f:
            f.write("\n".join(env_lines) + "\n")
        status = "ok" if not problems else "FAIL"
        detail = self.headline if not problems else problems[0][:150]
        self.record("preflight", status, time.monotonic() - t0, detail, "\n".join(problems))
        return not problems

    def library_versions(self, found):
        """Driver, runtime, cuDNN, cuBLAS versions and the device count, asked of
        the libraries found (in a child python, so a crash cannot take this
        script down)."""
        probe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_versions.py")
        paths = [os.path.join(found[n], n) for n in ("libcudart.so.13", "libcudnn.so.9", "libcublas.so.13")
                 if n in found]
        try:
            r = subprocess.run([sys.executable, probe] + paths, capture_output=True, text=True, timeout=60,
                               env=self.env)
            data = json.loads(r.stdout) if r.stdout.strip() else {}
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            data = {"error": f"version probe failed: {e}"}
        lines = [f"{k}: {v}" for k, v in data.items()]
        short = ", ".join(f"{k} {data[k]}" for k in ("driver", "runtime", "cuDNN", "cuBLAS") if k in data)
        problem = None
        if data.get("devices", 0) in (0, None) or "device_error" in data:
            problem = "CUDA sees no usable device: " + str(data.get("device_error", data.get("error", "0 devices")))
            if str(data.get("driver", "")).startswith("none"):
                problem += " -- cudaDriverGetVersion reports 0: no NVIDIA driver is installed here"
        return {"lines": lines, "short": short, "problem": problem}

    def gpu_tests(self):
        total_cap = CAPS["gpu_tests_total"]
        group_end = time.monotonic() + total_cap
        for binary in sorted(glob.glob(os.path.join(self.bundle, "bin", "*_gpu_test"))):
            name = os.path.basename(binary)
            cap = min(CAPS["gpu_test"], max(0, group_end - time.monotonic()))
            rc, secs, log = self.run(name, [binary, "--gtest_brief=1", "--gtest_color=no"], cap, name + ".log")
            if rc is None:
                continue
            r = lib.parse_gtest(log, rc)
            detail = f"{r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped of {r['tests']}"
            if r["status"] in ("FAIL",):
                reason = lib.gtest_failure_reasons(log)
            elif r["status"] == "SKIPPED":
                reason = "tests skipped on a GPU machine (the device was not seen):\n" + \
                    "\n".join(l for l in log.splitlines() if "SKIPPED" in l or "skip" in l.lower())[:1500]
            else:
                reason = lib.tail(log, 20)
            self.record(name, r["status"], secs, detail, reason)

    def pipeline(self):
        run_dir = os.path.join(self.work, "kdtrain-run")
        kdtrain = os.path.join(self.bundle, "bin", "kdtrain")
        rc, secs, log = self.run("kdtrain default pipeline",
                                 [kdtrain, "--data", os.path.join(self.bundle, "mnist"), "--device", "cuda",
                                  "--out", run_dir], CAPS["kdtrain"], "kdtrain.log")
        if rc is None:
            return
        summary = os.path.join(run_dir, "summary.json")
        if rc != 0 or not os.path.exists(summary):
            status = "TIMEOUT" if rc == 124 else "FAIL"
            self.record("kdtrain default pipeline", status, secs, f"exit {rc}", lib.tail(log, 25))
            return
        shutil.copy(summary, os.path.join(self.out, "kdtrain-summary.json"))
        with open(summary) as f:
            models = {m["role"]: m for m in json.load(f).get("models", [])}
        acc = {role: models.get(role, {}).get("test_acc") for role in ("teacher", "student", "scratch")}
        detail = ", ".join(f"{r} {100 * a:.2f} %" for r, a in acc.items() if isinstance(a, (int, float)))
        self.record("kdtrain default pipeline", "ok", secs, detail)

        t0 = time.monotonic()
        gate, targets = accuracy_gate(acc)
        rc, secs, log = self.run("pipeline gate (accuracy, PyTorch reload)",
                                 [sys.executable, os.path.join(REPO, "bench", "reload_check.py"), "--run", run_dir,
                                  "--data", os.path.join(self.bundle, "mnist"), "--require-safetensors"],
                                 CAPS["gate"], "reload_check.log")
        if rc is None:
            return
        if rc != 0:
            gate.append("PyTorch reload: " + lib.tail(log, 12))
        last = [l for l in log.splitlines() if l.startswith("reload_check:")]
        detail = "; ".join(targets + ([last[-1]] if last else []))
        self.record("pipeline gate (accuracy, PyTorch reload)", "FAIL" if gate else "ok",
                    time.monotonic() - t0, detail[:150], "\n".join(gate))

    def benchmarks(self):
        group_end = time.monotonic() + CAPS["bench_total"]
        digest = []
        # Each benchmark runs a fixed number of samples (bench/bench_util.h,
        # manual_time: Iterations(25)), which overrides --benchmark_min_time;
        # the installed Google Benchmark is 1.7.1, whose flag takes a plain
        # number of seconds ("0.05"; "0.05s" is 1.8 syntax, rejected here).
        for binary in sorted(glob.glob(os.path.join(self.bundle, "bin", "*_bench"))):
            name = os.path.basename(binary)
            json_path = os.path.join(self.work, name + ".json")
            cap = min(CAPS["bench"], max(0, group_end - time.monotonic()))
            rc, secs, log = self.run(name, [binary, "--benchmark_counters_tabular=true", "--benchmark_out=" + json_path,
                                            "--benchmark_out_format=json"], cap, name + ".txt")
            if rc is None:
                continue
            text = ""
            if os.path.exists(json_path):
                with open(json_path) as f:
                    text = f.read()
            status, line = lib.parse_benchmark(text, rc)
            digest.append(f"{name}: {status}: {line}")
            self.record(name, status, secs, line[:150], lib.tail(log, 12))
        if digest:
            self.say("== benchmark digest (full tables in gpu-check.tar.gz)")
            for line in digest:
                self.say("  " + line)

    def pytorch(self, mode):
        step = f"PyTorch {mode} comparison"
        json_path = os.path.join(self.work, f"pytorch-{mode}.json")
        rc, secs, log = self.run(step, [sys.executable, os.path.join(REPO, "bench", "pytorch_reference.py"),
                                        "--data", os.path.join(self.bundle, "mnist"), "--mode", mode,
                                        "--json", json_path], CAPS["torch"], f"pytorch-{mode}.log",
                                 env=dict(self.env, PYTHONUNBUFFERED="1"))
        if rc is None:
            return
        if rc != 0 or not os.path.exists(json_path):
            self.record(step, "TIMEOUT" if rc == 124 else "FAIL", secs, f"exit {rc}", lib.tail(log, 25))
            return
        shutil.copy(json_path, os.path.join(self.out, f"pytorch-{mode}.json"))
        summary = os.path.join(self.out, "kdtrain-summary.json")
        detail = "done"
        if os.path.exists(summary):
            r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "compare_table.py"), summary, json_path],
                               capture_output=True, text=True, timeout=30)
            with open(os.path.join(self.out, f"comparison-{mode}.md"), "w") as f:
                f.write(r.stdout + r.stderr)
            detail = "table in comparison-%s.md" % mode if r.returncode == 0 else f"compare_table exit {r.returncode}"
            if r.returncode != 0:
                self.record(step, "FAIL", secs, detail, r.stderr[-2000:])
                return
            self.say(f"== kdtrain vs PyTorch {mode}")
            self.say(r.stdout.strip()[:3000])
        self.record(step, "ok", secs, detail)

    # -------------------------------------------------------------- the end
    def finish(self):
        """The summary table, then the failures' reasons; files into $OUT."""
        failed = [r for r in self.rows if r[1] not in ("ok", "PASS", "ran")]
        elapsed = time.monotonic() - self.start
        lines = [f"== gpu-check summary: {self.headline}; "
                 f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; {elapsed:.0f} s of {self.args.deadline} s",
                 f"{'step':<42} {'status':<8} {'time':>6}  detail"]
        for step, status, secs, detail in self.rows:
            lines.append(f"{step:<42} {status:<8} {secs:>5.0f}s  {detail}"[:130])  # the table stays ~3 KB
        verdict = "PASS" if self.rows and not failed else "FAIL"
        lines.append(f"RESULT: {verdict} ({len(failed)} of {len(self.rows)} steps failed)")
        reasons = lib.bounded_reasons(self.reasons, REASON_BUDGET)
        text = "\n".join(lines) + "\n" + (f"== why\n{reasons}" if reasons else "")
        with open(os.path.join(self.out, "summary.txt"), "w") as f:
            f.write(text)
        if os.path.exists(os.path.join(self.work, "environment.txt")):
            shutil.copy(os.path.join(self.work, "environment.txt"), os.path.join(self.out, "environment.txt"))
        with tarfile.open(os.path.join(self.out, "gpu-check.tar.gz"), "w:gz") as tar:
            tar.add(self.work, arcname="gpu-check",
                    filter=lambda ti: None if ti.name.endswith(".safetensors") else ti)
        shutil.rmtree(self.work, ignore_errors=True)
        files, within = lib.files_to_return(self.out)
        print(text, end="", flush=True)
        if not within:
            print(f"gpu-check: {len(files)} files in {self.out}, more than the 8 that come back", flush=True)
        return 0 if verdict == "PASS" and within else 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deadline", type=int, default=420, help="seconds for the whole check (default 420)")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"), help="output folder (default $OUT)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparison")
    p.add_argument("--no-bench", action="store_true", help="skip the micro-benchmarks")
    p.add_argument("--torch-compile", action="store_true",
                   help="only preflight and the torch.compile comparison (a separate call)")
    args = p.parse_args(argv)
    if not 30 <= args.deadline <= 590:
        p.error(f"--deadline must be in [30, 590] seconds (one call on the GPU machine runs at most 600), "
                f"got {args.deadline}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    for stale in ("summary.txt", "environment.txt", "gpu-check.tar.gz", "kdtrain-summary.json", "pytorch-eager.json",
                  "pytorch-compile.json", "comparison-eager.md", "comparison-compile.md"):
        if os.path.exists(os.path.join(args.out, stale)):
            os.remove(os.path.join(args.out, stale))
    check = Check(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if check.preflight():
            if args.torch_compile:
                check.pytorch("compile")
            else:
                check.gpu_tests()
                check.pipeline()
                if not args.no_bench:
                    check.benchmarks()
                if not args.no_torch:
                    check.pytorch("eager")
        else:
            check.say("preflight failed: nothing else was run")
    except KeyboardInterrupt as e:
        check.record("gpu-check", "STOPPED", time.monotonic() - check.start, f"interrupted ({e})",
                     "the check was interrupted before its end")
    except Exception:  # a bug here must still leave the summary
        check.record("gpu-check", "CRASH", time.monotonic() - check.start, "internal error", traceback.format_exc())
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
