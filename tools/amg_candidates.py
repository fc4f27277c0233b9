"""Why the automatic mask generator misses objects: for each object of the held-out test scenes,
the generator's best candidate with its filters off (IoU with the object, predicted IoU, stability
score), and how many objects have a candidate at IoU ≥ 0.5 passing each official filter.

    PYTHONPATH=src python tools/amg_candidates.py --checkpoint src/basam/assets/default.safetensors --n 3
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import basam
from basam.data.synth import FAMILIES
from default_model_goals import add_scene_arguments, held_out_scenes, iou  # tools/, beside this script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scene_arguments(p, n=3)
    p.add_argument("--points-per-side", type=int, default=16)
    args = p.parse_args()
    model = basam.load_model(args.model, checkpoint=args.checkpoint)
    generator = basam.AutomaticMaskGenerator(
        model,
        points_per_side=args.points_per_side,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        resolution=args.resolution,
    )
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}; filters off, "
        f"{args.points_per_side}² points, box NMS off\n"
    )
    print("| family | object px | best IoU | its predicted IoU | its stability |\n|---|---|---|---|---|")
    counts = {
        f: np.zeros(5, int) for f in FAMILIES
    }  # objects, candidate ≥0.5, + pred IoU ≥0.88, + stability ≥0.95, + both
    for family, scene in held_out_scenes(args.n, args.resolution):
        records = generator.generate(scene.image)
        for mask in (m for m in scene.masks if m.any()):
            scored = [(iou(r["segmentation"], mask), r["predicted_iou"], r["stability_score"]) for r in records]
            best = max(scored)
            good = [s for s in scored if s[0] >= 0.5]
            counts[family] += [
                1,
                bool(good),
                any(s[1] >= 0.88 for s in good),
                any(s[2] >= 0.95 for s in good),
                any(s[1] >= 0.88 and s[2] >= 0.95 for s in good),
            ]
            print(f"| {family} | {int(mask.sum())} | {best[0]:.3f} | {best[1]:.3f} | {best[2]:.3f} |")
    print(
        "\n| family | objects | a candidate at IoU ≥ 0.5 | … with predicted IoU ≥ 0.88 | … with stability ≥ 0.95 | … both |"  # noqa: E501 (a table row)
    )
    print("|---|---|---|---|---|---|")
    for family, c in [*counts.items(), ("all", sum(counts.values()))]:
        print(f"| {family} | " + " | ".join(str(int(x)) for x in c) + " |")


if __name__ == "__main__":
    main()
