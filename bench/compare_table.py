#!/usr/bin/env python3
"""Side-by-side markdown table of a kdtrain summary.json and pytorch_reference.py's JSON.

Usage: compare_table.py KDTRAIN_SUMMARY_JSON PYTORCH_JSON
"""
import json
import sys


def main():
    kd = json.load(open(sys.argv[1]))
    torch_runs = json.load(open(sys.argv[2]))
    models = {m["role"]: m for m in kd["models"]}
    phases = {p["phase"]: p["seconds"] for p in kd["phases"]}
    cols = ["kdtrain"] + [f"PyTorch {r['mode']}" for r in torch_runs]
    print(f"Device: {kd['device']}  \nkdtrain: {kd['versions']}  \n"
          + "  \n".join(f"PyTorch {r['torch']} ({r['mode']}), CUDA {r['cuda']}" for r in torch_runs) + "\n")
    print("| | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))

    def row(name, kd_value, torch_values):
        print(f"| {name} | {kd_value} | " + " | ".join(torch_values) + " |")

    for ph in ("teacher training", "soft targets", "student training", "scratch training"):
        row(f"{ph} (s)", f"{phases.get(ph, float('nan')):.2f}",
            [f"{r['phases'].get(ph, float('nan')):.2f}" for r in torch_runs])
    total_kd = sum(phases.get(p, 0) for p in ("teacher training", "soft targets", "student training", "scratch training"))
    totals = [sum(r["phases"].get(p, 0) for p in ("teacher training", "soft targets", "student training",
                                                   "scratch training")) for r in torch_runs]
    row("training total (s)", f"{total_kd:.2f}", [f"{t:.2f}" for t in totals])
    row("speed-up of kdtrain", "1.00x", [f"{t / total_kd:.2f}x" for t in totals])
    for role in ("teacher", "student"):
        curve = models[role]["curve"]
        kd_rate = sum(e["samples_per_s"] for e in curve) / max(len(curve), 1)
        row(f"{role} samples/s", f"{kd_rate:,.0f}", [f"{r['samples_per_s'][role]:,.0f}" for r in torch_runs])
    for role in ("teacher", "student", "scratch"):
        row(f"{role} test acc (%)", f"{100 * models[role]['test_acc']:.2f}",
            [f"{100 * r['models'][role]['test_acc']:.2f}" for r in torch_runs])
    for role in ("teacher", "student"):
        for lat in models[role]["latency"]:
            b = lat["batch"]
            row(f"{role} latency b={b} (ms, median)", f"{lat['median_ms']:.4f}",
                [f"{r['models'][role]['latency'][str(b)]['median_ms']:.4f}" for r in torch_runs])


if __name__ == "__main__":
    main()
