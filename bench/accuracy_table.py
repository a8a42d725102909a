"""Tabulates the test accuracies of kdtrain runs (their summary.json): per run
and model, the selected epoch's and the last epoch's, then the mean, standard
deviation and range over the runs, and how many runs meet the fast CPU
engine's targets (issue #11: teacher >= 99.0 %, distilled student >= 98.3 %
and >= the scratch student, all at the selected epoch).

Usage: python3 bench/accuracy_table.py RUN_DIR...   (bench/accuracy_seeds.sh calls it)
"""
import json
import os
import statistics
import sys

ROLES = ("teacher", "student", "scratch")


def load(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    models = {m["role"]: m for m in summary["models"]}
    missing = [r for r in ROLES if r not in models]
    if missing:
        sys.exit(f"accuracy_table: {run_dir}/summary.json has no {', '.join(missing)} (run without --no-baseline)")
    return summary["config"]["seed"], models


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [load(d) for d in sys.argv[1:]]
    print("| seed | teacher: selected epoch, test % (last epoch %) | distilled student | scratch student |")
    print("|---:|---|---|---|")
    for seed, models in runs:
        cells = [f"{models[r]['selected_epoch']}: {100 * models[r]['test_acc']:.2f} "
                 f"({100 * models[r]['last_epoch_test_acc']:.2f})" for r in ROLES]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    for key, label in (("test_acc", "selected"), ("last_epoch_test_acc", "last")):
        cells = []
        for r in ROLES:
            v = [100 * m[r][key] for _, m in runs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.2f} ± {sd:.2f} ({min(v):.2f}-{max(v):.2f})")
        print(f"| mean ± sd (range), {label} | " + " | ".join(cells) + " |")
    met = sum(1 for _, m in runs
              if m["teacher"]["test_acc"] >= 0.990 and m["student"]["test_acc"] >= 0.983
              and m["student"]["test_acc"] >= m["scratch"]["test_acc"])
    print(f"\nruns meeting teacher >= 99.0 %, distilled >= 98.3 % and >= scratch (selected epochs): {met} of {len(runs)}")


if __name__ == "__main__":
    main()
