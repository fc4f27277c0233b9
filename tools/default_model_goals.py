"""The default model's goals on held-out synthetic test scenes (the scenes of `basam eval --data
synth:all --split test`), each rendered at R×R:

- box: the tight box, single-mask output (what `basam eval --prompt box` scores, as mean IoU);
- centre point, multimask: the best of the three masks (best-of-3) and the one the IoU head ranks
  first (IoU-head pick); the single-mask output for the same click, for reference;
- clicks: interactive refinement as a user would do it. Click 1 is the centre point (multimask,
  the IoU head's pick); each further click goes to the error pixel farthest from the error
  region's boundary (a missed pixel → foreground click, a wrongly covered one → background),
  with the previous low-res logits as mask_input; mean IoU after each click;
- with --amg, when basam has the AutomaticMaskGenerator: its recall of the scene's objects (every
  object with a visible mask) at IoU ≥ 0.5, the generator at its official defaults.

    PYTHONPATH=src python tools/default_model_goals.py --checkpoint src/basam/assets/default.safetensors \
        --n 25 --resolution 256 --clicks 3 --amg
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

import basam
from basam.data.prompts import center_point, tight_box
from basam.data.synth import FAMILIES, make_scene, render, scene_seed


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int]:
    """The error pixel deepest inside its error region → (xy (2,), label 1 | 0)."""
    best = None
    for region, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        depth = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        if best is None or depth.max() > best[0]:
            best = (depth.max(), np.unravel_index(int(depth.argmax()), depth.shape), label)
    _, (r, c), label = best
    return np.array([c, r], dtype=np.float64), label


def scene_scores(predictor, scene, clicks: int) -> dict:
    gt = scene.mask
    predictor.set_image(scene.image)
    out = {"box": iou(predictor.predict(box=tight_box(gt), multimask_output=False)[0][0], gt)}
    point = center_point(gt)[None]
    masks, scores, low = predictor.predict(point_coords=point, point_labels=np.ones(1), multimask_output=True)
    ious = [iou(m, gt) for m in masks]
    out.update(
        best_of_3=max(ious),
        iou_head_pick=ious[int(np.argmax(scores))],
        single_mask=iou(
            predictor.predict(point_coords=point, point_labels=np.ones(1), multimask_output=False)[0][0], gt
        ),
    )
    pred, logits, coords, labels = masks[int(np.argmax(scores))], low[int(np.argmax(scores))], point, np.ones(1)
    out["click_1"] = iou(pred, gt)
    for k in range(2, clicks + 1):
        xy, label = next_click(pred, gt)
        coords, labels = np.concatenate([coords, xy[None]]), np.append(labels, label)
        m, _, low = predictor.predict(
            point_coords=coords, point_labels=labels, mask_input=logits[None], multimask_output=False
        )
        pred, logits = m[0], low[0]
        out[f"click_{k}"] = iou(pred, gt)
    return out


def add_scene_arguments(p: argparse.ArgumentParser, n: int) -> None:
    """The model and the held-out test scenes, shared by the tools that score the default model."""
    p.add_argument("--model", default="default")
    p.add_argument("--checkpoint")
    p.add_argument("--n", type=int, default=n, help="test scenes per family")
    p.add_argument("--resolution", type=int, default=256)


def held_out_scenes(n: int, resolution: int):
    """→ (family, scene) for the first n test scenes of each family, rendered at resolution²."""
    for family in FAMILIES:
        for i in range(n):
            yield family, render(make_scene(scene_seed(0, "test", i), family), resolution, resolution)


def amg_recall(generator, scene) -> tuple[int, int]:
    """→ (objects found at IoU ≥ 0.5, objects with a visible mask)."""
    found = [r["segmentation"] for r in generator.generate(scene.image)]
    objects = [m for m in scene.masks if m.any()]
    hits = sum(any(iou(f, m) >= 0.5 for f in found) for m in objects)
    return hits, len(objects)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scene_arguments(p, n=25)
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--amg", action="store_true", help="also the automatic mask generator's object recall")
    args = p.parse_args(argv)
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)")
    model = basam.load_model(args.model, checkpoint=args.checkpoint)
    predictor = basam.Predictor(model, resolution=args.resolution)
    generator = None
    if args.amg:
        if not hasattr(basam, "AutomaticMaskGenerator"):
            print("--amg: this basam has no AutomaticMaskGenerator", file=sys.stderr)
            return 2
        generator = basam.AutomaticMaskGenerator(model, resolution=args.resolution)
    rows, t0 = {}, time.time()
    for family, scene in held_out_scenes(args.n, args.resolution):
        row = scene_scores(predictor, scene, args.clicks)
        if generator is not None:
            row["amg_found"], row["amg_objects"] = amg_recall(generator, scene)
        rows.setdefault(family, []).append(row)
    keys = [k for k in rows[FAMILIES[0]][0] if not k.startswith("amg_")]
    print(f"mean IoU on {args.n} held-out test scenes per family at {args.resolution} px ({time.time() - t0:.0f} s)\n")
    print("| scenes | " + " | ".join(keys) + (" | AMG recall @0.5 |" if generator else " |"))
    print("|---" * (len(keys) + 1 + bool(generator)) + "|")
    for name, group in [("all", [r for f in FAMILIES for r in rows[f]]), *rows.items()]:
        cells = [f"{np.mean([r[k] for r in group]):.3f}" for k in keys]
        if generator:
            found, total = (sum(r[k] for r in group) for k in ("amg_found", "amg_objects"))
            cells.append(f"{found / max(total, 1):.1%} ({found}/{total})")
        print(f"| {name} ({len(group)}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
