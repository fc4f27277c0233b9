"""Suite `amg`: segment everything. (1) basam's AutomaticMaskGenerator against the official
SamAutomaticMaskGenerator, the embedded default model in both (the official Sam built with its
sizes, the same weights), on one synthetic scene, alternating in one process; thresholds low
enough (as in tests/test_amg.py) that both keep many records. (2) One large image at its native
resolution through benchmarks/bench_amg.py in a fresh interpreter: records, time, peak RSS.
Full: a 768×1024 scene with 32×32 points; a 4096×3072 image natively with 8×8 points.
Quick: a 192×256 scene with 4×4 points; a 512×384 image with 4×4 points.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C
import bench_amg
from benchmarks.record import Result, ratio_cell

LOW = dict(pred_iou_thresh=0.05, stability_score_thresh=0.3, stability_score_offset=0.05)


def against_official(result: Result, quick: bool, rounds: int) -> None:
    import torch

    from basam.config import MODEL_CONFIGS
    from basam.data.synth import make_scene, render
    from official import official_predictor_and_generator, official_sam  # tests/official.py

    h, w, points = (192, 256, 4) if quick else (768, 1024, 32)
    ours = C.basam.load_model("default")
    official = official_sam(MODEL_CONFIGS["mini"])
    official.load_state_dict(ours.state_dict())
    _, OfficialGenerator = official_predictor_and_generator()
    image = render(make_scene(3, "salient"), h, w).image
    settings = dict(LOW, points_per_side=points)
    generators = {
        "official": OfficialGenerator(official, **settings),
        "ours": C.basam.AutomaticMaskGenerator(ours, resolution=256, **settings),
    }
    outs = {}
    with torch.no_grad():
        times = C.alternate({k: (lambda g=g: g.generate(image)) for k, g in generators.items()}, rounds, outputs=outs)
    s = result.section(
        "against_official",
        f"Segment everything, default model, {w}×{h} scene, {points}×{points} "
        "points: ours against the official generator",
        ["generator", "median s", "records", "speed-up vs official (min–max)"],
    )
    s.row("official", f"{C.med(times['official']):.2f}", len(outs["official"]), "1.00")
    r = C.ratio(times, "official", "ours")
    s.row("ours", f"{C.med(times['ours']):.2f}", len(outs["ours"]), ratio_cell(r))
    result.figure(s, "ours_vs_official", r[0])
    result.figure(s, "official_records", len(outs["official"]))
    result.figure(s, "ours_records", len(outs["ours"]))
    result.note(
        s,
        f"{rounds} alternating rounds; thresholds pred_iou 0.05, stability 0.3 (offset 0.05) so that "
        "both keep many records; tests/test_amg.py checks that the records agree.",
    )


def large_image(result: Result, quick: bool) -> None:
    size, points = ("512x384", 4) if quick else ("4096x3072", 8)
    s = result.section(
        "large_image",
        f"Segment everything on one {size.replace('x', '×')} image at its native "
        f"resolution, {points}×{points} points (fresh interpreter)",
        ["image", "records", "seconds", "peak RSS (GiB)"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        bench_amg.make_image(size, str(path))
        cmd = [
            sys.executable,
            bench_amg.__file__,
            str(path),
            "--resolution",
            "native",
            "--points-per-side",
            str(points),
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    m = re.search(r"(\d+) records, (\d+) s, peak RSS ([\d.]+) GiB", p.stdout)
    if p.returncode or m is None:
        raise RuntimeError(f"bench_amg.py exited {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
    records, seconds, peak = int(m[1]), float(m[2]), float(m[3])
    s.row(size.replace("x", "×"), records, f"{seconds:.0f}", f"{peak:.2f}")
    result.figure(s, "records", records)
    result.figure(s, "seconds", seconds)
    result.figure(s, "peak_rss_gib", peak)
    result.note(
        s,
        f"`python benchmarks/bench_amg.py IMAGE --resolution native --points-per-side {points}`, on an "
        f"image made by `bench_amg.py --make {size} IMAGE`; official thresholds (0.88 / 0.95).",
    )


def run(result: Result, quick: bool) -> None:
    against_official(result, quick, 2 if quick else 3)
    large_image(result, quick)
