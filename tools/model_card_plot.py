"""Loss and validation curves of the embedded default model's training runs → one PNG.

    python tools/model_card_plot.py OUT.png RUN_DIR [RUN_DIR …]

Runs are stages trained one after the other (each continuing from the previous export); their
steps are laid end to end.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def main(out: str, runs: list[str]) -> None:
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    offset = 0
    for k, run in enumerate(runs):
        with open(f"{run}/log.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["loss"]]  # not the step-0 validation row
        steps = np.array([int(r["step"]) for r in rows]) + offset
        loss = np.array([float(r["loss"]) for r in rows])
        window = min(50, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax_loss.plot(steps, loss, alpha=0.15, color=f"C{k}")
        ax_loss.plot(steps[window - 1 :], smooth, color=f"C{k}", label=f"stage {k + 1} ({window}-step mean)")
        val = [(s, float(r["val_mIoU"])) for s, r in zip(steps, rows) if r.get("val_mIoU")]
        if val:
            ax_val.plot(*zip(*val), marker="o", color=f"C{k}", label=f"stage {k + 1}")
        offset = steps[-1]
    ax_loss.set(xlabel="step", ylabel="loss (BCE + Dice + IoU MSE)", title="training loss")
    ax_val.set(
        xlabel="step", ylabel="mIoU", title="validation: 48 held-out scenes (each stage draws its own), 256 px, box"
    )
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
