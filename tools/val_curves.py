"""Validation curves of several `basam train` runs → a markdown table (stdout) and one PNG.

    python tools/val_curves.py OUT.png [--metric val_mIoU] [--title T] LABEL=RUN_DIR [LABEL=RUN_DIR …]

Each run's `log.csv` gives the validation metric at its `--val-every` steps (step 0 is the model
before any update when the run validated there); rows are runs, columns are steps.
"""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_curve(run: str, metric: str) -> dict[int, float]:
    with open(f"{run}/log.csv") as f:
        return {int(r["step"]): float(r[metric]) for r in csv.DictReader(f) if r.get(metric)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--metric", default="val_mIoU")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    curves = {label: read_curve(run, args.metric) for label, run in (r.split("=", 1) for r in args.runs)}
    steps = sorted({s for c in curves.values() for s in c})
    print(f"| {args.metric} \\ step | " + " | ".join(map(str, steps)) + " |")
    print("|---" * (len(steps) + 1) + "|")
    for label, curve in curves.items():
        print(f"| {label} | " + " | ".join(f"{curve[s]:.4f}" if s in curve else "" for s in steps) + " |")
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (label, curve) in enumerate(curves.items()):
        xs = sorted(curve)
        ax.plot(
            xs,
            [curve[x] for x in xs],
            marker="o",
            color=f"C{k // 2}",
            linestyle="-" if k % 2 == 0 else "--",
            label=label,
        )
    ax.set(xlabel="step", ylabel=args.metric.removeprefix("val_"), title=args.title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
