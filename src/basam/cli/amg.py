"""`basam amg IMAGE|FOLDER --out DIR`: segment everything in one image or every image of a folder.

Per image `stem`, in DIR: `stem.json` (the records with COCO RLE segmentations, the official
scripts/amg.py --convert-to-rle output), `stem_overlay.png` (one colour per mask, the largest
painted first so small masks stay visible) and, with --masks, `stem/` holding `0.png, 1.png, …`
and `metadata.csv` as the official script writes them. Under `torchrun --nproc-per-node K` each
process takes every K-th image; rank 0 prints the summary.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
from pathlib import Path

import numpy as np

from basam.cli.common import (
    add_hq_arguments,
    add_model_arguments,
    add_progress_argument,
    add_resolution_arguments,
    check_hq_option,
    load_model_from_args,
    read_image,
)
from basam.inference.predictor import check_batch_size
from basam.inference.transforms import to_rgb_uint8
from basam.runtime import distributed

# Generator options exposed as flags; unset flags keep the generator's own defaults.
_OPTIONS = {
    "points_per_side": int,
    "points_per_batch": int,
    "pred_iou_thresh": float,
    "stability_score_thresh": float,
    "stability_score_offset": float,
    "box_nms_thresh": float,
    "crop_n_layers": int,
    "crop_nms_thresh": float,
    "crop_overlap_ratio": float,
    "crop_n_points_downscale_factor": int,
    "min_mask_region_area": int,
    "tile_size": int,
    "tile_overlap": int,
}
_METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="an image, or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    add_model_arguments(p)
    add_resolution_arguments(p)  # default here: the model's pretraining side, "auto" with --tile-size
    for name, kind in _OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, help="as AutomaticMaskGenerator's " + name)
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="encode up to N images (or crops) of the same model input size per encoder forward",
    )
    p.add_argument("--masks", action="store_true", help="also write one PNG per mask and metadata.csv")
    add_hq_arguments(p)
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from basam.inference.amg import AutomaticMaskGenerator

    check_batch_size(args.batch_size)
    images = _list_images(Path(args.input))
    rank, world = distributed.setup(args.device)
    options = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    show = not args.no_progress and rank == 0
    model = load_model_from_args(args)
    check_hq_option(args, model)
    generator = AutomaticMaskGenerator(
        model,
        resolution=args.resolution,
        max_side=args.max_side,
        output_mode="coco_rle",
        progress=show,
        batch_size=args.batch_size,
        hq_token_only=args.hq_token_only,
        **options,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done, skipped = [], []
    mine = images[rank::world]
    bar = tqdm(total=len(mine), desc="images", unit="image", disable=not show)
    for first in range(0, len(mine), args.batch_size):
        batch = []
        for path in mine[first : first + args.batch_size]:
            try:
                image = read_image(str(path))
            except ValueError as e:
                print(f"basam amg: skipped {path}: {e}", file=sys.stderr)
                skipped.append(str(path))
                continue
            rgb, note = to_rgb_uint8(image)  # 16-bit and float images scaled, as `predict` does
            if note:
                print(f"note: {path.name}: {note}", file=sys.stderr)
            batch.append((path, rgb))
        for (path, rgb), records in zip(batch, generator.generate_batch([rgb for _, rgb in batch])):
            write_outputs(records, rgb, out, path.stem, args.masks)
            done.append((str(path), len(records)))
        bar.update(min(args.batch_size, len(mine) - first))
    bar.close()
    parts = distributed.gather_to_rank0((done, skipped))
    distributed.teardown()
    if rank != 0:
        return 0
    done = [d for part in parts for d in part[0]]
    skipped = sorted(s for part in parts for s in part[1])
    print(
        f"segmented {len(done)} image(s), {sum(n for _, n in done)} masks; wrote {out}/"
        + (f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else "")
    )
    if not done and skipped:
        raise ValueError(f"no readable image in {args.input}")
    return 0


def write_outputs(records: list[dict], image: np.ndarray, out: Path, stem: str, mask_pngs: bool) -> None:
    """stem.json, stem_overlay.png and (mask_pngs) stem/{i}.png + stem/metadata.csv."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    (out / f"{stem}.json").write_text(json.dumps(records))
    tinted = image.astype(np.float32)
    for i in sorted(range(len(records)), key=lambda i: -records[i]["area"]):
        mask = mask_utils.decode(records[i]["segmentation"]).astype(bool)
        tinted[mask] = 0.45 * tinted[mask] + 0.55 * _colour(i)
    Image.fromarray(tinted.astype(np.uint8)).save(out / f"{stem}_overlay.png")
    if mask_pngs:
        folder = out / stem
        folder.mkdir(exist_ok=True)
        rows = [_METADATA_HEADER]
        for i, r in enumerate(records):
            mask = mask_utils.decode(r["segmentation"])
            Image.fromarray(mask * 255).save(folder / f"{i}.png")
            rows.append(
                ",".join(
                    str(v)
                    for v in [
                        i,
                        r["area"],
                        *r["bbox"],
                        *r["point_coords"][0],
                        r["predicted_iou"],
                        r["stability_score"],
                        *r["crop_box"],
                    ]
                )
            )
        (folder / "metadata.csv").write_text("\n".join(rows))


def _colour(i: int) -> np.ndarray:
    """Well-separated colours: hues stepped by the golden ratio."""
    return np.array(colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 1.0), dtype=np.float32) * 255


def _list_images(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"no files in folder {path}")
        return files
    if not path.exists():
        raise ValueError(f"image or folder not found: {path}")
    return [path]
