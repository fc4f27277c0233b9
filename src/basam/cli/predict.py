"""`basam predict`: segment one image from points, a box, or no prompt."""

from __future__ import annotations

import argparse
import sys

from basam.cli.common import (
    add_hq_arguments,
    add_model_arguments,
    add_resolution_arguments,
    check_hq_option,
    load_model_from_args,
    overlay,
    parse_floats,
    read_image,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    add_model_arguments(p)
    p.add_argument("--point", action="append", default=[], help="X,Y[,label] (label 1 = foreground, 0 = background)")
    p.add_argument("--box", help="X0,Y0,X1,Y1")
    add_resolution_arguments(p)
    p.add_argument("--multimask", action="store_true", help="keep the best of SAM's three masks")
    add_hq_arguments(p)
    p.add_argument("--out", default="basam-out")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from basam import Predictor

    coords, labels = [], []
    for spec in args.point:
        values = parse_floats(spec, "--point", (2, 3))
        coords.append(values[:2])
        if len(values) == 3 and values[2] not in (0, 1):
            raise ValueError(f"--point {spec!r}: the label must be 1 (foreground) or 0 (background)")
        labels.append(int(values[2]) if len(values) == 3 else 1)
    box = parse_floats(args.box, "--box", (4,)) if args.box else None
    image = read_image(args.image)
    for x, y in coords + ([box[:2], box[2:]] if box else []):
        if not (0 <= x <= image.width and 0 <= y <= image.height):
            raise ValueError(f"point {x:g},{y:g} lies outside the {image.width}×{image.height} image")
    model = load_model_from_args(args)
    check_hq_option(args, model)
    predictor = Predictor(model, resolution=args.resolution, max_side=args.max_side)
    predictor.set_image(image)
    if predictor.note:
        print(f"note: {predictor.note}", file=sys.stderr)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(coords) if coords else None,
        point_labels=np.array(labels) if labels else None,
        box=np.array(box) if box else None,
        multimask_output=args.multimask,
        hq_token_only=args.hq_token_only,
    )
    best = int(np.argmax(scores))
    mask = masks[best]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / f"{stem}_mask.png")
    Image.fromarray(overlay(np.asarray(image.convert("RGB")), mask)).save(out / f"{stem}_overlay.png")
    hq = (", HQ token only" if args.hq_token_only else ", SAM + HQ mask") if model.is_hq else ""
    print(
        f"model {model.cfg.name}{hq}, attention {model.attn_cfg.describe()}, resolution {predictor.resolution} "
        f"→ input {predictor.padded_hw[1]}×{predictor.padded_hw[0]}, "
        f"windows {predictor.windows or model.attn_cfg.windows}; "
        f"predicted IoU {scores[best]:.3f}; "
        f"mask area {mask.mean():.1%}; wrote {out}/{stem}_mask.png and {stem}_overlay.png"
    )
    return 0
