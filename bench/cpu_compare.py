#!/usr/bin/env python3
"""Teacher training throughput of PyTorch on the CPU, the twin of one
`kdtrain train-teacher --device cpu --epochs-teacher 1 --train-limit N` run.

Same data (the first N training images, normalised once and held in memory,
as kdtrain holds them), architecture and PyTorch-default init (the Teacher of
bench/pytorch_reference.py), Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8),
batch 64 with the last partial batch trained on, a fresh shuffle, dropout on,
cross-entropy loss. Times the training steps of one epoch only (no data
loading, no evaluation), as kdtrain's samples_per_s column does.

Prints one line: "samples_per_s X". bench/cpu_compare.sh runs it interleaved
with kdtrain and reports the medians and their ratio.

Usage: python3 bench/cpu_compare.py --data data/mnist --threads 2 --train-limit 6400
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import MEAN, STD, Teacher, read_idx  # noqa: E402  (the shared model definitions)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--threads", type=int, required=True, help="torch.set_num_threads (match kdtrain --threads)")
    p.add_argument("--train-limit", type=int, default=6400, help="train on the first N training images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte"))[: args.train_limit]
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte"))[: args.train_limit].long()
    x = ((images.float() / 255 - MEAN) / STD).unsqueeze(1).contiguous()  # (N, 1, 28, 28)

    model = Teacher(classes=10)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    n = x.shape[0]
    perm = torch.randperm(n)
    t0 = time.perf_counter()
    for begin in range(0, n, args.batch_size):
        idx = perm[begin:begin + args.batch_size]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), labels[idx])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    if not torch.isfinite(loss):
        sys.exit("cpu_compare.py: non-finite loss; the comparison would be meaningless")
    print(f"samples_per_s {n / seconds:.1f}")


if __name__ == "__main__":
    main()
