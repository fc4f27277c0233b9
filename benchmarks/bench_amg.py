"""Time of "segment everything" against the official generator; peak memory on one large image (docs/amg.md).

    python benchmarks/bench_amg.py --vs-official default --repeats 3   # embedded model, 256 px
    python benchmarks/bench_amg.py --vs-official vit_b --repeats 2     # random-weight vit_b, 1024 px

--vs-official runs basam's AutomaticMaskGenerator and segment_anything's SamAutomaticMaskGenerator
(torchvision's few functions replaced by plain-torch stand-ins, tests/official.py) on the same
weights and the same synthetic scene at the model's input side, with the official defaults and
the quality filters off (pred_iou_thresh = stability_score_thresh = 0, so that every point's three
masks go through upsampling, stability, boxes, NMS and RLE), alternating the two in one process.
It prints each round's times, the median ratio official/basam, and whether the records agree
(same count, boxes and points; IoU of the masks and score differences).

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
        print(
            f"encoded {image.shape[1]}x{image.shape[0]} to {tuple(gen.predictor.features.shape)} in "
            f"{time.perf_counter() - t:.0f} s; peak RSS {peak_rss_gib():.2f} GiB",
            flush=True,
        )

    def timed_batch(points, *args, **kwargs):
        t = time.perf_counter()
        out = process_batch(points, *args, **kwargs)
        done["batches"] += 1
        print(
            f"point batch {done['batches']}: {len(points)} points in {time.perf_counter() - t:.0f} s, "
            f"{len(out['rles'])} masks kept; {time.perf_counter() - start:.0f} s elapsed, "
            f"peak RSS {peak_rss_gib():.2f} GiB",
            flush=True,
        )
        return out

    gen.predictor.set_image, gen._process_batch = timed_set_image, timed_batch


def against_official(model_type: str, repeats: int, points_per_side: int) -> None:
    """Official SamAutomaticMaskGenerator / basam AutomaticMaskGenerator, same weights and image."""
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from basam.config import MODEL_CONFIGS
    from basam.data.synth import make_scene, render
    from official import official_predictor_and_generator, official_sam, randomize

    if model_type == "default":
        ours = basam.load_model("default")
        official = official_sam(MODEL_CONFIGS["mini"])
        official.load_state_dict(ours.state_dict())
    else:
        official = randomize(official_sam(MODEL_CONFIGS[model_type]))
        ours = basam.load_model(model_type)
        ours.load_state_dict(official.state_dict())
    side = ours.cfg.img_size
    image = render(make_scene(3, "salient"), side, side).image
    settings = dict(
        points_per_side=points_per_side, pred_iou_thresh=0.0, stability_score_thresh=0.0, output_mode="binary_mask"
    )
    _, OfficialGenerator = official_predictor_and_generator()
    generators = {
        "official": OfficialGenerator(official.eval(), **settings),
        "basam": basam.AutomaticMaskGenerator(ours, **settings),
    }
    print(
        f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads; {model_type} at {side} px, {points_per_side}² points, filters off",
        flush=True,
    )
    times, records = {n: [] for n in generators}, {}
    for r in range(repeats):
        order = list(generators) if r % 2 == 0 else list(generators)[::-1]
        for name in order:
            start = time.perf_counter()
            with torch.no_grad():
                records[name] = generators[name].generate(image)
            times[name].append(time.perf_counter() - start)
        print(
            f"  round {r + 1}: official {times['official'][-1]:.2f} s, basam {times['basam'][-1]:.2f} s, "
            f"ratio {times['official'][-1] / times['basam'][-1]:.2f}",
            flush=True,
        )
    got, expected = records["basam"], records["official"]
    same = len(got) == len(expected) and all(
        g["bbox"] == e["bbox"] and g["point_coords"] == e["point_coords"] for g, e in zip(got, expected)
    )
    ious = [
        1.0
        if not (g["segmentation"] | e["segmentation"]).any()
        else (g["segmentation"] & e["segmentation"]).sum() / (g["segmentation"] | e["segmentation"]).sum()
        for g, e in zip(got, expected)
    ]
    score = max((abs(g["predicted_iou"] - e["predicted_iou"]) for g, e in zip(got, expected)), default=0.0)
    print(
        f"records: basam {len(got)}, official {len(expected)}; boxes and points equal: {same}; "
        f"mask IoU min {min(ious, default=1):.4f}; predicted_iou max diff {score:.1e}"
    )
    ratio = statistics.median(o / b for o, b in zip(times["official"], times["basam"]))
    print(
        f"median time official/basam: {ratio:.2f}× (official {statistics.median(times['official']):.2f} s, "
        f"basam {statistics.median(times['basam']):.2f} s)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", nargs="?")
    p.add_argument(
        "--vs-official",
        choices=["default", "vit_b", "vit_l", "vit_h"],
        help="time basam against the official generator on this model (no image needed)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument("--make", metavar="WxH", help="write a synthetic WxH image to IMAGE and stop")
    p.add_argument("--resolution", default=None)
    p.add_argument("--tile-size", type=int)
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_official:
        against_official(args.vs_official, args.repeats, args.points_per_side)
        return
    if args.image is None:
        p.error("give an image (or --vs-official MODEL)")
    if args.make:
        make_image(args.make, args.image)
        return
    image = np.asarray(Image.open(args.image).convert("RGB"))
    model = basam.load_model("default")
    gen = basam.AutomaticMaskGenerator(
        model,
        points_per_side=args.points_per_side,
        resolution=args.resolution,
        tile_size=args.tile_size,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        output_mode="coco_rle",
    )
    print(f"cpu {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    log_steps(gen, start)
    records = gen.generate(image)
    seconds = time.perf_counter() - start
    peak_gib = peak_rss_gib()
    print(
        f"{image.shape[1]}x{image.shape[0]} resolution={gen.predictor.resolution} tile_size={args.tile_size} "
        f"points={args.points_per_side}² thresholds={args.pred_iou_thresh}/{args.stability_score_thresh}: "
        f"{len(records)} records, {seconds:.0f} s, peak RSS {peak_gib:.2f} GiB, "
        f"{torch.get_num_threads()} threads, cpu {torch.backends.cpu.get_cpu_capability()}"
    )


if __name__ == "__main__":
    main()
