#!/usr/bin/env python3
"""CTest mpi.*: kdtrain under mpirun with 2 ranks (docs/mpi.md), on the CPU reference
engine and a few hundred MNIST images, so that each case takes seconds.

  mpi_test.py sweep_equals_one_process   2 ranks give the runs, accuracies and weights of 1 process
  mpi_test.py sweep_resume_killed_rank   rank 1 killed (SIGKILL) mid-sweep; --resume trains only the rest
  mpi_test.py sweep_failing_rank         a run failing on rank 1 ends the job with rank 1's reason
  mpi_test.py failing_rank_at_start      rank 1 failing before the sweep starts ends the job, never a hang
  mpi_test.py data_parallel_matches_one_process
                                         train-teacher --data-parallel on 2 ranks: bit-identical on rerun,
                                         within reduction-order rounding of one process
  mpi_test.py data_parallel_resume_any_n 2 ranks stopped mid-epoch; 3 refused (the last batch has 2 rows),
                                         1 process continues it
  mpi_test.py data_parallel_mixup_matches_one_process
                                         run --mixup (online targets, augmentation) on 2 ranks: every model
                                         bit-identical on rerun, within rounding of one process

Environment: KD_BINARY_DIR (the build, default build/), MPIEXEC (default mpirun).
mpirun runs with --oversubscribe (2 ranks on any machine) and --allow-run-as-root (CI
runs as root).
"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KDTRAIN = os.path.join(os.environ.get("KD_BINARY_DIR", os.path.join(ROOT, "build")), "kdtrain")
MPIRUN = [os.environ.get("MPIEXEC", "mpirun"), "--oversubscribe", "--allow-run-as-root"]
TIMEOUT = 60  # seconds for any one command: a hang fails the case instead of stalling CI

# 3 seeds x 2 architectures x (2 T + scratch) = 18 runs of 3 epochs on 600 images: ~4 s of
# runs, so that rank 1, which starts its first run only after the teacher's broadcast and
# its own soft-target pass, gets runs even on a machine at load 10 (with 1 epoch it got none
# once there). Evaluation batches of 100, not 1000: a rank's buffers for 1000 teacher rows
# take a second to fault in on a loaded VM.
SWEEP = ["sweep", "--device", "reference", "--data", os.path.join(ROOT, "data/mnist"), "--seed", "7",
         "--train-limit", "600", "--val-size", "100", "--test-limit", "200", "--eval-batch-size", "100",
         "--epochs-teacher", "1",
         "--epochs-student", "3", "--seeds", "3", "--no-ort",
         "--teacher-arch", "conv:8:3,relu,maxpool:2,dropout:0.1,flatten,dense:64,relu,dense:10",
         "--student-arch", "flatten,dense:32,relu,dense:10;flatten,dense:10", "--temperature", "2", "--temperature", "4"]
RUNS = 18


def run(cmd, expect_ok=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if expect_ok and p.returncode != 0:
        sys.exit(f"FAIL: exit {p.returncode}: {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def state(out):
    with open(os.path.join(out, "sweep_state.json")) as f:
        return json.load(f)


def tensors(path):
    """The raw tensor bytes of a safetensors file (its metadata holds timings, which differ)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n:]


def key(r):
    return (r["kind"], r["arch"], r["temperature"], r["alpha"], r["seed_index"])


def check_same_runs(out, reference):
    """Every run of `out` has the accuracies and the weights of the same run in `reference`."""
    got, want = state(out)["runs"], {key(r): r for r in state(reference)["runs"]}
    if sorted(key(r) for r in got) != sorted(want):
        sys.exit(f"FAIL: {out} ran {sorted(key(r) for r in got)}, the one-process sweep {sorted(want)}")
    for r in got:
        w = want[key(r)]
        for field in ("test_acc", "val_acc", "selected_epoch", "seed", "params"):
            if r[field] != w[field]:
                sys.exit(f"FAIL: {key(r)}: {field} {r[field]} with 2 ranks, {w[field]} in one process")
        if tensors(os.path.join(out, r["model_file"])) != tensors(os.path.join(reference, w["model_file"])):
            sys.exit(f"FAIL: {key(r)}: the weights in {r['model_file']} differ from the one-process sweep's")
    for f in ("sweep.csv", "sweep.json", "recommended.safetensors", "teacher.safetensors"):
        if not os.path.exists(os.path.join(out, f)):
            sys.exit(f"FAIL: {out}/{f} was not written")
    if tensors(os.path.join(out, "teacher.safetensors")) != tensors(os.path.join(reference, "teacher.safetensors")):
        sys.exit("FAIL: the teacher differs from the one-process sweep's")


def one_process(tmp):
    out = os.path.join(tmp, "one")
    run([KDTRAIN] + SWEEP + ["--out", out, "--quiet"])
    return out


def sweep_equals_one_process(tmp):
    reference = one_process(tmp)
    out = os.path.join(tmp, "two")
    p = run(MPIRUN + ["-np", "2", KDTRAIN] + SWEEP + ["--out", out])
    check_same_runs(out, reference)
    done = [line for line in p.stdout.splitlines() if line.startswith("[sweep] ") and " done: rank " in line]
    if len(done) != RUNS or f"[sweep] {RUNS}/{RUNS} done: rank " not in p.stdout:
        sys.exit(f"FAIL: expected {RUNS} progress lines '[sweep] k/{RUNS} done: rank R ran ...', got:\n" + "\n".join(done))
    ranks = {line.split(" done: rank ")[1].split()[0] for line in done}
    if ranks != {"0", "1"}:
        sys.exit(f"FAIL: runs were trained by ranks {sorted(ranks)}, not by both")
    # Only rank 0 prints: one table, one recommendation.
    if p.stdout.count("recommended: ") != 1:
        sys.exit("FAIL: the recommendation was printed " + str(p.stdout.count("recommended: ")) + " times")


def rank_pid(mpirun_pid, rank):
    """The pid of `rank` among mpirun's descendants (Open MPI puts the rank in each one's environment)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == "kdtrain" and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and \
                is_descendant(int(pid), mpirun_pid):
            return int(pid)
    return None


def is_descendant(pid, ancestor):
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def sweep_resume_killed_rank(tmp):
    reference = one_process(tmp)
    out = os.path.join(tmp, "killed")
    job = subprocess.Popen(MPIRUN + ["-np", "2", KDTRAIN] + SWEEP + ["--out", out],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + TIMEOUT
    killed, pid = False, None
    while time.time() < deadline and job.poll() is None and not killed:
        pid = pid or rank_pid(job.pid, 1)
        try:
            recorded = len(state(out)["runs"])
        except (OSError, ValueError):
            recorded = 0
        if pid and recorded >= 1:
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    output, _ = job.communicate(timeout=TIMEOUT)
    if not killed:
        sys.exit("FAIL: the sweep ended before rank 1 could be killed:\n" + output[-2000:])
    if job.returncode == 0:
        sys.exit("FAIL: mpirun exited 0 after rank 1 was killed")
    partial = len(state(out)["runs"])
    if not 1 <= partial < RUNS:
        sys.exit(f"FAIL: {partial} of {RUNS} runs recorded when rank 1 was killed")
    p = run(MPIRUN + ["-np", "2", KDTRAIN] + SWEEP + ["--resume", out])
    if f"({partial} finished before, skipped)" not in p.stdout:
        sys.exit(f"FAIL: the resumed sweep does not say it skipped the {partial} finished runs:\n" + p.stdout[-2000:])
    check_same_runs(out, reference)
    print(f"rank 1 killed with {partial} of {RUNS} runs recorded; resumed: {RUNS - partial} trained")


def sweep_failing_rank(tmp):
    # Rank 1 alone stops itself after 2 training steps (the test hook a signal would
    # trigger): its run fails, and rank 0 ends the job with rank 1's reason.
    out = os.path.join(tmp, "failing")
    cmd = MPIRUN + ["-np", "1", KDTRAIN] + SWEEP + ["--out", out] + \
        [":", "-np", "1", "env", "KD_TEST_INTERRUPT_AFTER_STEPS=2", KDTRAIN] + SWEEP + ["--out", out]
    p = run(cmd, expect_ok=False)
    if p.returncode == 0:
        sys.exit("FAIL: the job exited 0 although a run failed on rank 1")
    want = "kdtrain: rank 1 of 2 failed: "
    line = next((l for l in p.stderr.splitlines() if l.startswith(want)), None)
    if line is None or "interrupted (a stop request)" not in line or "kdtrain sweep --resume " + out not in line:
        sys.exit(f"FAIL: no line '{want}<run>: interrupted ... --resume {out}' in:\n{p.stderr[-3000:]}")
    print(line)


def failing_rank_at_start(tmp):
    # Rank 1 is given data that does not exist: it fails while rank 0 waits for it.
    cmd = MPIRUN + ["-np", "1", KDTRAIN] + SWEEP + ["--out", os.path.join(tmp, "start")] + \
        [":", "-np", "1", KDTRAIN] + SWEEP + ["--data", os.path.join(tmp, "nowhere")]
    started = time.time()
    p = run(cmd, expect_ok=False)
    want = "kdtrain: rank 1 of 2: "
    line = next((l for l in p.stderr.splitlines() if l.startswith(want)), None)
    if p.returncode == 0 or line is None or "nowhere" not in line or "(every rank stops)" not in line:
        sys.exit(f"FAIL: exit {p.returncode}; expected a line '{want}... nowhere ... (every rank stops)' in:\n"
                 + p.stderr[-3000:])
    print(f"{line} ({time.time() - started:.1f} s)")


# 642 training images: 10 batches of 64 and a last one of 2, which 3 ranks cannot share.
TEACHER = ["train-teacher", "--device", "reference", "--data", os.path.join(ROOT, "data/mnist"), "--seed", "5",
           "--train-limit", "642", "--val-size", "200", "--test-limit", "200", "--eval-batch-size", "200",
           "--epochs-teacher", "1", "--no-ort", "--latency-batches", "1", "--quiet",
           "--teacher-arch", "conv:4:3,relu,maxpool:2,dropout:0.25,flatten,dense:32,relu,dropout:0.5,dense:10"]


def floats(path):
    return struct.unpack(f"<{len(tensors(path)) // 4}f", tensors(path))


def relative_difference(a, b):
    x, y = floats(a), floats(b)
    return (sum((p - q) ** 2 for p, q in zip(x, y)) / sum(p * p for p in x)) ** 0.5


# 2 ranks against one process after 11 Adam steps: each step's gradient is the same sum
# taken in another order (each rank's rows, then rank 0 + rank 1, and a rows/b scaling),
# ~1e-7 relative per step, which Adam's division by sqrt(v) can amplify where v is small.
# Measured 2e-8 (2026-12-07); 1e-5 leaves room and still fails on any real error (a wrong
# shard, dropout mask or scaling moves the weights by 1e-2 or more).
DATA_PARALLEL_TOLERANCE = 1e-5


def scratch_dirs():
    return {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("kdtrain-rank")}


def data_parallel_matches_one_process(tmp):
    before = scratch_dirs()
    one, first, second = (os.path.join(tmp, d) for d in ("one", "first", "second"))
    run([KDTRAIN] + TEACHER + ["--out", one])
    for out in (first, second):
        run(MPIRUN + ["-np", "2", KDTRAIN] + TEACHER + ["--data-parallel", "--out", out])
    model = "teacher.safetensors"
    if tensors(os.path.join(first, model)) != tensors(os.path.join(second, model)):
        sys.exit("FAIL: two data-parallel runs on 2 ranks gave different weights")
    diff = relative_difference(os.path.join(one, model), os.path.join(first, model))
    if not diff <= DATA_PARALLEL_TOLERANCE:
        sys.exit(f"FAIL: 2 ranks differ from one process by {diff:.3g} (relative L2), over {DATA_PARALLEL_TOLERANCE}")
    if scratch_dirs() - before:
        sys.exit(f"FAIL: rank 1 left its scratch directories behind: {sorted(scratch_dirs() - before)}")
    print(f"2 ranks vs one process: {diff:.3g} relative; rerun bit-identical")


def data_parallel_resume_any_n(tmp):
    one, out = os.path.join(tmp, "one"), os.path.join(tmp, "stopped")
    run([KDTRAIN] + TEACHER + ["--out", one])
    # The test hook stops every rank after 6 of the 11 steps, as a signal would.
    p = run(MPIRUN + ["-np", "2", "-x", "KD_TEST_INTERRUPT_AFTER_STEPS=6", KDTRAIN] + TEACHER +
            ["--data-parallel", "--out", out], expect_ok=False)
    if p.returncode == 0 or not os.path.exists(os.path.join(out, "checkpoint.safetensors")):
        sys.exit(f"FAIL: exit {p.returncode}, no checkpoint after the stop:\n{p.stderr[-2000:]}")
    if p.stderr.count("kdtrain: interrupted") != 1:
        sys.exit("FAIL: expected rank 0's one 'kdtrain: interrupted ...' line, got:\n" + p.stderr[-2000:])
    p = run(MPIRUN + ["-np", "3", KDTRAIN] + TEACHER + ["--data-parallel", "--resume", out], expect_ok=False)
    want = "--data-parallel: 3 ranks cannot share every batch: 642 training images in batches of 64 leave 2 in " \
           "the last one; run at most 2 ranks (mpirun -np), or change --batch-size or --train-limit"
    if p.returncode == 0 or want not in p.stderr:
        sys.exit(f"FAIL: exit {p.returncode}; expected '{want}' in:\n{p.stderr[-2000:]}")
    run([KDTRAIN] + TEACHER + ["--data-parallel", "--resume", out])
    model = "teacher.safetensors"
    diff = relative_difference(os.path.join(one, model), os.path.join(out, model))
    if not diff <= DATA_PARALLEL_TOLERANCE:
        sys.exit(f"FAIL: resumed with 1 rank, {diff:.3g} from one process (relative L2), over {DATA_PARALLEL_TOLERANCE}")
    print(f"6 steps on 2 ranks, 5 on 1: {diff:.3g} relative to one process")


# The whole run (teacher, distilled student, scratch baseline) with mixup on the students:
# each rank mixes its rows of the global batch with their partners in the global batch
# (docs/mpi.md), so the mixed batches are one process's, split. Mixing within each rank's
# shard instead would pair other images and move the students' weights by far more than
# the tolerance.
MIXUP_RUN = ["run"] + TEACHER[1:] + ["--epochs-student", "1", "--student-arch", "flatten,dense:32,relu,dense:10",
                                     "--augment", "--soft-targets", "online", "--mixup", "0.4"]


def data_parallel_mixup_matches_one_process(tmp):
    one, first, second = (os.path.join(tmp, d) for d in ("one", "first", "second"))
    run([KDTRAIN] + MIXUP_RUN + ["--out", one])
    for out in (first, second):
        run(MPIRUN + ["-np", "2", KDTRAIN] + MIXUP_RUN + ["--data-parallel", "--out", out])
    diffs = []
    for model in ("teacher.safetensors", "student.safetensors", "student_scratch.safetensors"):
        if tensors(os.path.join(first, model)) != tensors(os.path.join(second, model)):
            sys.exit(f"FAIL: two data-parallel runs on 2 ranks gave different {model}")
        diff = relative_difference(os.path.join(one, model), os.path.join(first, model))
        if not diff <= DATA_PARALLEL_TOLERANCE:
            sys.exit(f"FAIL: {model}: 2 ranks differ from one process by {diff:.3g} (relative L2), "
                     f"over {DATA_PARALLEL_TOLERANCE}")
        diffs.append(f"{model} {diff:.3g}")
    print("2 ranks vs one process, relative: " + ", ".join(diffs) + "; reruns bit-identical")


CASES = {f.__name__: f for f in (sweep_equals_one_process, sweep_resume_killed_rank, sweep_failing_rank,
                                  failing_rank_at_start, data_parallel_matches_one_process,
                                  data_parallel_resume_any_n, data_parallel_mixup_matches_one_process)}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit("usage: mpi_test.py " + "|".join(CASES))
    if not os.path.exists(os.path.join(ROOT, "data/mnist/train-images-idx3-ubyte")):
        sys.exit("FAIL: data/mnist has no MNIST: run scripts/setup.sh (or data/fetch.sh) first")
    with tempfile.TemporaryDirectory(prefix="kd_mpi_") as tmp:
        CASES[sys.argv[1]](tmp)
    print("PASS")
