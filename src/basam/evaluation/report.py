"""Report writers of `basam sweep` and `demo`: the markdown table, CSV, JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path


def _row_label(record: dict, several_prompts: bool) -> str:
    return f"{record['preset']}, {record['prompt']}" if several_prompts else record["preset"]


def sweep_table(records: list[dict], metric: str, group: str | None = None) -> str:
    """Markdown: one row per preset (per preset and prompt kind when there are several), one column
    per resolution; of the per-prefix group `group` if given."""
    resolutions = list(dict.fromkeys(r["resolution"] for r in records))
    several = len({r["prompt"] for r in records}) > 1
    rows: dict[str, dict[str, float]] = {}
    for r in records:
        scores = r["groups"][group] if group else r
        rows.setdefault(_row_label(r, several), {})[r["resolution"]] = scores[metric]
    head = f"{metric}, {group}" if group else metric
    lines = [f"| {head} | " + " | ".join(resolutions) + " |", "|---" * (len(resolutions) + 1) + "|"]
    for label, value in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{value[res]:.4f}" for res in resolutions) + " |")
    return "\n".join(lines)


def write_sweep(records: list[dict], out: Path, metric: str, title: str = "") -> None:
    """sweep.md (the table, then one per group if there are groups), sweep.csv (every metric),
    sweep.json (with per-group results), sweep.png (one colour per preset, one line style per prompt)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups = list(records[0].get("groups", {}))
    tables = [sweep_table(records, metric)] + [sweep_table(records, metric, g) for g in groups]
    (out / "sweep.md").write_text("\n\n".join(tables) + "\n")
    flat = [{k: v for k, v in r.items() if k != "groups"} for r in records]
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    (out / "sweep.json").write_text(json.dumps(records, indent=1, default=float))
    resolutions = list(dict.fromkeys(r["resolution"] for r in records))
    presets = list(dict.fromkeys(r["preset"] for r in records))
    prompts = list(dict.fromkeys(r["prompt"] for r in records))
    fig, ax = plt.subplots(figsize=(6, 4))
    for preset, kind in ((p, k) for k in prompts for p in presets):
        ys = [
            next(r[metric] for r in records if r["preset"] == preset and r["prompt"] == kind and r["resolution"] == res)
            for res in resolutions
        ]
        # Later presets are drawn thinner, so one that coincides with an earlier one (e.g. `auto`
        # and scaled windows above the training size) leaves the earlier visible around it.
        wider = len(presets) - 1 - presets.index(preset)
        ax.plot(
            range(len(resolutions)),
            ys,
            marker="o",
            color=f"C{presets.index(preset)}",
            linewidth=1.2 + 0.8 * wider,
            markersize=4 + 1.5 * wider,
            linestyle=("-", "--", ":", "-.")[prompts.index(kind) % 4],
            label=_row_label({"preset": preset, "prompt": kind}, len(prompts) > 1),
        )
    ax.set_xticks(range(len(resolutions)), resolutions)
    ax.set_xlabel("input resolution (long side, px)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=len(prompts))
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=120)
    plt.close(fig)
