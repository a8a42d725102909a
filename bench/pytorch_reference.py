#!/usr/bin/env python3
"""The kdtrain default pipeline in PyTorch, for a side-by-side timing on one GPU.

Same data split (last 5,000 training images for validation), normalisation,
architectures, PyTorch-default init, Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8),
batch 64 with the last partial batch trained on, a fresh shuffle per epoch,
teacher and student epochs, T and alpha, soft targets precomputed once in
inference mode and kept on the GPU, and the scratch baseline. All data is on
the GPU before timing starts, as in kdtrain. Prints one table per mode
(eager and torch.compile) and writes JSON with --json.

torch.compile: the compiled modules are the ones trained, evaluated and timed
for latency; compilation (one warm-up forward and backward per batch shape,
the weights restored afterwards) is its own phase, "compile warm-up", and
not part of any epoch. It needs PyTorch 2.0 or later.

--device cpu runs anywhere; --quick makes it a CI-sized smoke run (a small
subset, one epoch each, latency at batch 1 and 64 only), as
tests/gpu_check_test.py runs it with Debian's CPU-only torch.

Usage: python3 bench/pytorch_reference.py --data data/mnist [--mode eager|compile|both] [--json out.json]
       [--device cuda|cpu] [--quick] [--train-limit N] [--test-limit N] [--epochs-teacher N]
       [--epochs-student N] [--latency-batches LIST] [--latency-budget SECONDS] [--lr-schedule constant|cosine]

--lr-schedule cosine is not kdtrain's recipe: it decays every model's learning
rate along a half cosine to 0 over its steps, to measure what a schedule would
buy the recipe in SPEC.md (bench/RESULTS.md). The default, constant, is the twin.
"""
import argparse
import gzip
import json
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081


def read_idx(path):
    """IDX file (plain or .gz) -> uint8 tensor of the header's shape."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    rank = magic & 0xFF
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    data = torch.frombuffer(bytearray(raw[4 + 4 * rank:]), dtype=torch.uint8)
    return data.reshape(dims)


class Teacher(nn.Module):
    """conv 3x3 1->32 + ReLU, conv 3x3 32->64 + ReLU, maxpool 2, dropout .25, dense 9216->128 + ReLU, dropout .5, dense 128->10."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.dropout(F.max_pool2d(x, 2), 0.25, self.training)
        x = F.dropout(F.relu(self.fc1(torch.flatten(x, 1))), 0.5, self.training)
        return self.fc2(x)


class Student(nn.Module):
    """flatten 784 -> dense 256 + ReLU -> dense 128 + ReLU -> dense 10 (no convolution)."""

    def __init__(self, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def distill_loss(s, t, y, temperature, alpha):
    """alpha*T^2*KL(softmax(t/T) || softmax(s/T)) (batchmean) + (1-alpha)*CE(s, y)."""
    kl = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1),
                  reduction="batchmean", log_target=True)
    return alpha * temperature * temperature * kl + (1 - alpha) * F.cross_entropy(s, y)


def sync(dev):
    """Waits for the device's queued work (a no-op on the CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def train(model, step_fn, x, y, soft, epochs, batch, gen):
    """Trains for `epochs`; returns per-epoch seconds (wall, synchronised at epoch end)."""
    n = x.shape[0]
    times = []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, device=x.device, generator=gen)
        sync(x.device)
        t0 = time.perf_counter()
        for begin in range(0, n, batch):
            idx = perm[begin:begin + batch]
            step_fn(x[idx], y[idx], None if soft is None else soft[idx])
        sync(x.device)
        times.append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def logits_of(model, x, batch=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def accuracy(model, x, y):
    return (logits_of(model, x).argmax(1) == y).float().mean().item()


def latency(model, x, batches, budget_s, max_repeats=50):
    """Forward-only latency (ms): median and p90 after warm-up (which also
    compiles a compiled model for the shape); CUDA events on a GPU, the wall
    clock on the CPU. Batches larger than x are timed at x's size.

    Each batch size gets about `budget_s` seconds: up to `max_repeats` timed
    forwards, at least 5. On a GPU the budget never binds (50 forwards take
    milliseconds); on a 2-core CPU one teacher forward at batch 10,000 takes
    seconds, and 55 of them were what kept --device cpu from finishing."""
    model.eval()
    out = {}
    with torch.no_grad():
        for b in batches:
            xb = x[:b]
            model(xb)  # the first call may compile or allocate: not timed
            t0 = time.perf_counter()
            model(xb)
            sync(x.device)
            one = max(time.perf_counter() - t0, 1e-9)
            for _ in range(3 if 5 * one < budget_s / 4 else 0):
                model(xb)
            ms = []
            for _ in range(max(5, min(max_repeats, int(budget_s / one)))):
                if x.device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    model(xb)
                    end.record()
                    end.synchronize()
                    ms.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    model(xb)
                    ms.append(1e3 * (time.perf_counter() - t0))
            ms.sort()
            out[xb.shape[0]] = {"median_ms": ms[len(ms) // 2], "p90_ms": ms[max(0, int(0.9 * len(ms)) - 1)]}
    return out


def compile_warmup(compiled, module, shapes_train, shapes_eval, x, classes, loss_fn):
    """Compiles `compiled` for every batch shape it will see (training forward
    and backward, inference forward) before any timing, then restores the
    module's weights and clears its gradients, so the run trains from the
    same initial weights as without the warm-up."""
    saved = {k: v.clone() for k, v in module.state_dict().items()}
    y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    soft = torch.zeros(x.shape[0], classes, device=x.device)
    compiled.train()
    for b in shapes_train:
        loss_fn(compiled(x[:b]), y[:b], soft[:b]).backward()
    compiled.eval()
    with torch.no_grad():
        for b in shapes_eval:
            compiled(x[:b])
    module.load_state_dict(saved)
    module.zero_grad(set_to_none=True)


def eval_shapes(n, batch=1000):
    """The batch sizes logits_of uses for n samples."""
    return sorted({min(batch, n - i) for i in range(0, n, batch)})


def run(args, mode):
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    t_load = time.perf_counter()
    tr_x = read_idx(os.path.join(args.data, "train-images-idx3-ubyte"))
    tr_y = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte")).long()
    te_x = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte"))
    te_y = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte")).long()
    norm = lambda u8: ((u8.float() / 255 - MEAN) / STD).unsqueeze(1).to(dev)
    n_train = tr_x.shape[0] - args.val_size
    n_fit = min(n_train, args.train_limit) if args.train_limit > 0 else n_train  # kdtrain's --train-limit
    n_test = min(te_x.shape[0], args.test_limit) if args.test_limit > 0 else te_x.shape[0]
    x, y = norm(tr_x[:n_fit]), tr_y[:n_fit].to(dev)
    vx, vy = norm(tr_x[n_train:]), tr_y[n_train:].to(dev)
    tx, ty = norm(te_x[:n_test]), te_y[:n_test].to(dev)
    classes = int(max(tr_y.max(), te_y.max())) + 1
    sync(dev)
    phases = {"load data": time.perf_counter() - t_load}

    def make_step(model, loss_fn, epochs):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        # --lr-schedule cosine (not kdtrain's recipe, an experiment for SPEC.md): the
        # learning rate follows a half cosine from 1e-3 to 0 over the model's steps.
        steps = epochs * ((x.shape[0] + args.batch_size - 1) // args.batch_size)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                 if args.lr_schedule == "cosine" else None)

        def step(xb, yb, tb):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb, tb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        return step

    n = x.shape[0]
    train_shapes = sorted({min(args.batch_size, n - i) for i in range(0, n, args.batch_size)})
    inference_shapes = sorted(set(eval_shapes(n) + eval_shapes(vx.shape[0]) + eval_shapes(tx.shape[0])))

    def prepare(module, loss_fn):
        """The module the run uses: itself (eager), or compiled and warmed up
        for every shape, the compilation timed as its own phase."""
        if mode != "compile":
            return module
        compiled = torch.compile(module)
        sync(dev)
        t0 = time.perf_counter()
        compile_warmup(compiled, module, train_shapes, inference_shapes, x, classes, loss_fn)
        sync(dev)
        phases["compile warm-up"] = phases.get("compile warm-up", 0.0) + time.perf_counter() - t0
        return compiled

    ce = lambda s, yb, tb: F.cross_entropy(s, yb)
    results = {}
    teacher_module = Teacher(classes).to(dev)
    teacher = prepare(teacher_module, ce)
    ep = train(teacher, make_step(teacher, ce, args.epochs_teacher), x, y, None, args.epochs_teacher, args.batch_size,
               gen)
    phases["teacher training"] = sum(ep)
    results["teacher"] = {"epoch_s": ep, "val_acc": accuracy(teacher, vx, vy), "test_acc": accuracy(teacher, tx, ty)}

    sync(dev)
    t0 = time.perf_counter()
    soft = logits_of(teacher, x)
    sync(dev)
    phases["soft targets"] = time.perf_counter() - t0

    for role, alpha in (("student", args.alpha), ("scratch", 0.0)):
        loss = (lambda s, yb, tb: distill_loss(s, tb, yb, args.temperature, args.alpha)) if alpha > 0 else ce
        student = prepare(Student(classes).to(dev), loss)
        ep = train(student, make_step(student, loss, args.epochs_student), x, y, soft if alpha > 0 else None,
                   args.epochs_student, args.batch_size, gen)
        phases[role + " training"] = sum(ep)
        results[role] = {"epoch_s": ep, "val_acc": accuracy(student, vx, vy), "test_acc": accuracy(student, tx, ty)}
        if role == "student":
            results[role]["latency"] = latency(student, tx, args.latency_batches, args.latency_budget)
    results["teacher"]["latency"] = latency(teacher, tx, args.latency_batches, args.latency_budget)
    rate = lambda epochs, seconds: n * epochs / seconds if seconds > 0 else float("nan")
    device_name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU"
    return {"mode": mode, "lr_schedule": args.lr_schedule, "device": device_name, "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "train_samples": n, "test_samples": tx.shape[0], "phases": phases, "models": results,
            "samples_per_s": {"teacher": rate(args.epochs_teacher, phases["teacher training"]),
                              "student": rate(args.epochs_student, phases["student training"])}}


def print_table(r):
    print(f"\nPyTorch {r['torch']} ({r['mode']}) on {r['device']}, CUDA {r['cuda']}")
    for name, s in r["phases"].items():
        print(f"  {name:<18} {s:9.2f} s")
    for role in ("teacher", "student", "scratch"):
        m = r["models"][role]
        print(f"  {role:<8} test acc {100 * m['test_acc']:.2f} %   val acc {100 * m['val_acc']:.2f} %")
    for role, v in r["samples_per_s"].items():
        print(f"  {role} training: {v:,.0f} samples/s")
    for role in ("teacher", "student"):
        for b, l in r["models"][role]["latency"].items():
            print(f"  {role} latency batch {b:>5}: median {l['median_ms']:.4f} ms  p90 {l['p90_ms']:.4f} ms")


# --quick: a smoke run that finishes in about a minute on a 2-core CPU (CI);
# flags given explicitly override these.
QUICK = {"train_limit": 1000, "test_limit": 500, "val_size": 200, "epochs_teacher": 1, "epochs_student": 1,
         "latency_batches": [1, 64], "latency_budget": 1.0}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--mode", choices=["eager", "compile", "both"], default="eager")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run for CI, about a minute on a 2-core CPU: " +
                        ", ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                                  for k, v in QUICK.items()) + " (flags given explicitly win)")
    p.add_argument("--train-limit", type=int, default=0, help="train on the first N training images; 0 = all")
    p.add_argument("--test-limit", type=int, default=0, help="test on the first N test images; 0 = all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs-teacher", type=int, default=5)
    p.add_argument("--epochs-student", type=int, default=5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--latency-batches", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="comma-separated batch sizes to time inference at (default: 1,64,1024,10000 on cuda; "
                        "1,64,1024 on cpu, where one teacher forward at 10000 takes seconds: ask for it by name)")
    p.add_argument("--latency-budget", type=float, default=10.0, metavar="SECONDS",
                   help="about this many seconds of timed forwards per model and batch size: up to 50, at least 5 "
                        "(default 10; binds only on the CPU)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="constant: kdtrain's recipe (SPEC.md); cosine: a half-cosine decay to 0 over each model's "
                        "steps, an experiment on the recipe, not a twin of any kdtrain run")
    p.add_argument("--json", help="write the results here")
    if p.parse_known_args()[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args()
    if args.latency_batches is None:
        args.latency_batches = [1, 64, 1024, 10000] if args.device == "cuda" else [1, 64, 1024]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("pytorch_reference.py: no CUDA device visible to PyTorch (--device cpu runs on the CPU)")
    if args.mode != "eager" and not hasattr(torch, "compile"):
        raise SystemExit(f"pytorch_reference.py: --mode {args.mode} needs torch.compile (PyTorch 2.0 or later); "
                         f"this is PyTorch {torch.__version__}: use --mode eager")
    if args.device == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # fp32 like kdtrain
        torch.backends.cuda.matmul.allow_tf32 = False
    modes = ["eager", "compile"] if args.mode == "both" else [args.mode]
    out = [run(args, m) for m in modes]
    for r in out:
        print_table(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
