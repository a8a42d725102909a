"""Tabulates bench/recipe_ingredients.sh: per step of the ladder, the distilled
and the scratch student's test accuracy at the selected epoch (median over the
seeds, and each seed's), the distilled student's gain over its scratch twin,
and the step's effect on the distilled student against the step it adds to
(BASE): the median, over seeds, of the paired differences, and each seed's.

Usage: python3 bench/recipe_ingredients.py STEP[:BASE]=RUN_DIR...   (one per step and seed, seeds in
the same order for every step)
"""
import json
import os
import statistics
import sys


def load(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    models = {m["role"]: m for m in summary["models"]}
    if "student" not in models or "scratch" not in models:
        sys.exit(f"recipe_ingredients: {run_dir}/summary.json lacks the student or the scratch student")
    return 100 * models["student"]["test_acc"], 100 * models["scratch"]["test_acc"], summary["config"].get("resolved-recipe", "")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    steps, bases = {}, {}
    for arg in sys.argv[1:]:
        step, run_dir = arg.split("=", 1)
        step, _, base = step.partition(":")
        if base:
            bases[step] = base
        steps.setdefault(step, []).append(load(run_dir))
    print("| step | distilled student, median (per seed) | scratch student, median (per seed) "
          "| distilled − scratch, median | distilled vs the step it adds to, median (per seed) |")
    print("|---|---|---|---:|---:|")
    for step, runs in steps.items():
        distilled = [r[0] for r in runs]
        scratch = [r[1] for r in runs]
        gain = statistics.median([d - s for d, s in zip(distilled, scratch)])
        median = statistics.median(distilled)
        change = ""
        if step in bases and bases[step] in steps:
            diffs = [d - b[0] for d, b in zip(distilled, steps[bases[step]])]
            change = (f"{statistics.median(diffs):+.2f} vs {bases[step]} "
                      f"({', '.join(f'{v:+.2f}' for v in diffs)})")
        print(f"| {step} | {median:.2f} ({', '.join(f'{v:.2f}' for v in distilled)}) "
              f"| {statistics.median(scratch):.2f} ({', '.join(f'{v:.2f}' for v in scratch)}) "
              f"| {gain:+.2f} | {change} |")
    for step, runs in steps.items():
        print(f"\n{step}: {runs[0][2]}")


if __name__ == "__main__":
    main()
