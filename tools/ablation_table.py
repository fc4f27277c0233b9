"""One markdown table from the ablation's sweeps (`tools/study.sh ablation`).

    python tools/ablation_table.py results/study/ablation [--metric mIoU]

Rows: every (sweep folder, preset) — the folder names the setting (`paper`, one option changed
from it, or `chosen`): `sam` first, then the paper's settings, the single changes, the choice.
Columns: each resolution × prompt cell, then their mean, the criterion the options are chosen by.
"""

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--metric", default="mIoU")
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for sweep in sorted(Path(args.folder).glob("*/sweep.json")):
        for r in json.loads(sweep.read_text()):
            label = "sam" if r["preset"] == "sam" else f"{r['preset']} ({sweep.parent.name})"
            rows.setdefault(label, {})[f"{r['resolution']} px, {r['prompt']}"] = r[args.metric]
    cells = sorted(next(iter(rows.values())), key=lambda c: (c.split(", ")[1], int(c.split(" ")[0])))
    order = sorted(rows, key=lambda label: (label != "sam", "(paper)" not in label, "(chosen)" in label, label))
    print(f"| {args.metric} (validation) | " + " | ".join(cells) + " | mean |")
    print("|---" * (len(cells) + 2) + "|")
    for label in order:
        values = [rows[label][c] for c in cells]
        print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {sum(values) / len(values):.4f} |")


if __name__ == "__main__":
    main()
