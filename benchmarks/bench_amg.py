"""Peak memory and time of "segment everything" on one large image (docs/amg.md).

    python benchmarks/bench_amg.py --make 4096x3072 big.png      # a synthetic scene, once
    /usr/bin/time -v python benchmarks/bench_amg.py big.png --resolution native
    /usr/bin/time -v python benchmarks/bench_amg.py huge.png --tile-size 1024

Run under `/usr/bin/time -v` and read "Maximum resident set size": it covers the whole process
(model, image, encoder, decoder, masks). Prints the record count, wall time and CPU capability,
and a line per encoded crop and per point batch (its time, masks kept, peak RSS so far), so a run
stopped early still says how far it got and what it used.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import basam  # noqa: E402


def make_image(size: str, path: str) -> None:
    """A synthetic scene rendered at 512 px on the long side, resized up (rendering at full size
    would itself need gigabytes)."""
    from basam.data.synth import make_scene, render

    w, h = (int(v) for v in size.split("x"))
    small = render(make_scene(1, "salient"), round(512 * h / max(h, w)), round(512 * w / max(h, w))).image
    Image.fromarray(small).resize((w, h), Image.BICUBIC).save(path)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def log_steps(gen: basam.AutomaticMaskGenerator, start: float) -> None:
    """Print a line after each crop's encoding and each point batch (wraps the two calls)."""
    set_image, process_batch = gen.predictor.set_image, gen._process_batch
    done = {"batches": 0}

    def timed_set_image(image, *args, **kwargs):
        t = time.perf_counter()
        set_image(image, *args, **kwargs)
        print(f"encoded {image.shape[1]}x{image.shape[0]} to {tuple(gen.predictor.features.shape)} in "
              f"{time.perf_counter() - t:.0f} s; peak RSS {peak_rss_gib():.2f} GiB", flush=True)

    def timed_batch(points, *args, **kwargs):
        t = time.perf_counter()
        out = process_batch(points, *args, **kwargs)
        done["batches"] += 1
        print(f"point batch {done['batches']}: {len(points)} points in {time.perf_counter() - t:.0f} s, "
              f"{len(out['rles'])} masks kept; {time.perf_counter() - start:.0f} s elapsed, "
              f"peak RSS {peak_rss_gib():.2f} GiB", flush=True)
        return out

    gen.predictor.set_image, gen._process_batch = timed_set_image, timed_batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image")
    p.add_argument("--make", metavar="WxH", help="write a synthetic WxH image to IMAGE and stop")
    p.add_argument("--resolution", default=None)
    p.add_argument("--tile-size", type=int)
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    args = p.parse_args()
    if args.make:
        make_image(args.make, args.image)
        return
    image = np.asarray(Image.open(args.image).convert("RGB"))
    model = basam.load_model("default")
    gen = basam.AutomaticMaskGenerator(model, points_per_side=args.points_per_side, resolution=args.resolution,
                                       tile_size=args.tile_size, pred_iou_thresh=args.pred_iou_thresh,
                                       stability_score_thresh=args.stability_score_thresh, output_mode="coco_rle")
    print(f"cpu {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    log_steps(gen, start)
    records = gen.generate(image)
    seconds = time.perf_counter() - start
    peak_gib = peak_rss_gib()
    print(f"{image.shape[1]}x{image.shape[0]} resolution={gen.predictor.resolution} tile_size={args.tile_size} "
          f"points={args.points_per_side}² thresholds={args.pred_iou_thresh}/{args.stability_score_thresh}: "
          f"{len(records)} records, {seconds:.0f} s, peak RSS {peak_gib:.2f} GiB, "
          f"{torch.get_num_threads()} threads, cpu {torch.backends.cpu.get_cpu_capability()}")


if __name__ == "__main__":
    main()
