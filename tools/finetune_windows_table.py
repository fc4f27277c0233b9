"""The table of `tools/study.sh finetune-windows`: each setting untuned and fine-tuned, scored at
one resolution on the same test scenes, from the sweeps' sweep.json files.

    python tools/finetune_windows_table.py UNTUNED_SWEEP TUNED_SWEEPS [--resolution 1024]

UNTUNED_SWEEP: a sweep over --attn sam,basam --windows fixed,scaled (rows "sam, windows fixed", …).
TUNED_SWEEPS: a folder of sweeps named ATTN-WINDOWS (e.g. basam-scaled), each `--attn checkpoint`
on that run's model.safetensors with its own --windows.
"""

import argparse
import json
from pathlib import Path

CELLS = [
    ("box", None),
    ("none", None),
    ("box", "camouflaged"),
    ("none", "camouflaged"),
    ("box", "thin"),
    ("none", "thin"),
]


def score(records: list[dict], preset: str, prompt: str, group: str | None, resolution: str) -> float:
    r = next(r for r in records if (r["preset"], r["prompt"], r["resolution"]) == (preset, prompt, resolution))
    return r["mIoU"] if group is None else r["groups"][group]["mIoU"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("untuned")
    parser.add_argument("tuned")
    parser.add_argument("--resolution", default="1024")
    args = parser.parse_args()
    untuned = json.loads((Path(args.untuned) / "sweep.json").read_text())
    header = [f"{prompt}" + (f", {group}" if group else ", all") for prompt, group in CELLS]
    print(f"| mIoU at {args.resolution} px | " + " | ".join(header) + " |")
    print("|---" * (len(CELLS) + 1) + "|")
    for attn, label in (("sam", "sam"), ("basam", "basam+slopes")):
        for windows in ("fixed", "scaled"):
            before = [score(untuned, f"{attn}, windows {windows}", p, g, args.resolution) for p, g in CELLS]
            tuned = json.loads((Path(args.tuned) / f"{attn}-{windows}" / "sweep.json").read_text())
            after = [score(tuned, "checkpoint", p, g, args.resolution) for p, g in CELLS]
            print(f"| {label}, windows {windows}: untuned | " + " | ".join(f"{v:.4f}" for v in before) + " |")
            print(
                f"| {label}, windows {windows}: tuned | "
                + " | ".join(f"{a:.4f} ({a - b:+.3f})" for a, b in zip(after, before))
                + " |"
            )


if __name__ == "__main__":
    main()
