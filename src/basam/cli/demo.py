"""`basam demo`: where SAM degrades away from its training size, and what fixes it. Offline, on
the embedded model, through the sweep's one evaluation loop.

The embedded model was trained at one size only (256 px, a 16×16 token grid), as SAM was at
1024 px. The demo renders held-out synthetic scenes of every family at 0.5× to 4× that size —
each at its own resolution, with the detail that resolution holds — prompts each with the box
of its target, and scores four settings at every size: plain SAM, BA-SAM, SAM with windows grown
with the image, and the `auto` policy (small images resized up to the training size, large ones
native with grown windows). An overlay sheet shows the camouflaged scene at 4× that the grown
windows change most, with fixed and grown windows, and a small scene at its own size and under
`auto`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from basam.cli.common import add_model_arguments, load_model_from_args, overlay
from basam.config import AttentionConfig
from basam.data.specs import SynthDataset
from basam.data.synth import FAMILIES
from basam.evaluation.evaluate import EvalSettings, prompt_for
from basam.evaluation.metrics import iou_dice
from basam.evaluation.report import sweep_table
from basam.evaluation.sweep import Column, Row, run_sweep
from basam.inference.predictor import Predictor

SCALES = (0.5, 1, 2, 4)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", default="basam-demo")
    p.add_argument("--n", type=int, default=3, help="held-out scenes per family")
    p.add_argument("--resolutions", default=None, help="comma-separated sizes (default: 0.5×–4× the training size)")
    p.add_argument("--prompt", default="box", help="box | center | points | box+center | none")
    p.add_argument("--quick", action="store_true", help="one scene per family, three sizes (for tests)")


def demo_rows() -> list[Row]:
    sam, basam = AttentionConfig.from_preset("sam"), AttentionConfig.from_preset("basam")
    return [
        Row("sam", sam),
        Row("basam", basam),
        Row("sam + scaled windows", sam, "scaled"),
        Row("auto", sam, "scaled", policy="auto"),
    ]


def run(args: argparse.Namespace) -> int:
    settings = EvalSettings(prompt=args.prompt, group_by_prefix=True)  # checks the prompt kind first
    if args.n < 1:
        raise ValueError(f"--n {args.n}: give at least one scene per family")
    model = load_model_from_args(args, attn="sam")
    train_side = model.cfg.img_size
    if args.resolutions:
        sizes = [int(s) for s in args.resolutions.split(",")]
    else:
        sizes = [int(train_side * s) for s in ((0.5, 1, 2) if args.quick else SCALES)]
    n = 1 if args.quick else args.n
    out = Path(args.out)
    print(
        f"model {model.cfg.name} (trained at {train_side} px); {n} held-out scenes × {len(FAMILIES)} families; "
        f"prompt {args.prompt}; sizes {', '.join(map(str, sizes))} px"
    )
    records, _ = run_sweep(
        model,
        demo_rows(),
        [Column(str(s), s, s) for s in sizes],
        [args.prompt],
        lambda column: SynthDataset(FAMILIES, n, column.render_size),
        settings,
        out,
        title=f"basam demo: {model.cfg.name} trained at {train_side} px, {args.prompt} prompts",
        log=lambda line: print("  " + line.strip()),
        progress=False,
    )
    _overlay_sheet(model, out, settings, small=min(sizes), large=max(sizes), n=n)
    print()
    print(sweep_table(records, "mIoU"))
    print(f"\nwrote {out}/sweep.md, sweep.csv, sweep.json, sweep.png and overlays.png")
    return 0


def _overlay_sheet(model, out: Path, settings: EvalSettings, small: int, large: int, n: int) -> None:
    """overlays.png, 2×2: the demo's camouflaged scene at `large` px whose IoU the scaled windows
    change most, with fixed / scaled windows; a scene at `small` px at its own size / under auto."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.set_attention(AttentionConfig.from_preset("sam"))
    fixed, scaled = Predictor(model, large, windows="fixed"), Predictor(model, large, windows="scaled")
    candidates = [
        [(sample, p, *_segment(p, sample, settings)) for p in (fixed, scaled)]
        for sample in SynthDataset(("camouflaged",), n, large)
    ]
    pair = max(candidates, key=lambda c: c[1][3] - c[0][3])
    small_scene = SynthDataset(("salient",), 1, small)[0]
    pair += [
        (small_scene, p, *_segment(p, small_scene, settings))
        for p in (Predictor(model, small), Predictor(model, "auto"))
    ]
    titles = [
        f"{large} px, windows fixed",
        f"{large} px, windows scaled",
        f"{small} px image at {small} px (native)",
        f"{small} px image, auto (→ {model.cfg.img_size} px)",
    ]
    fig, axes = plt.subplots(2, 2, figsize=(7, 7.4))
    for ax, title, (_, _, picture, iou) in zip(axes.flat, titles, pair):
        ax.imshow(picture)
        ax.set_title(f"{title}\nIoU {iou:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "overlays.png", dpi=100)
    plt.close(fig)


def _segment(predictor: Predictor, sample, settings: EvalSettings) -> tuple[np.ndarray, float]:
    """→ (the image with the predicted mask overlaid, the mask's IoU with the ground truth)."""
    image, gt = sample.load()
    predictor.set_image(image)
    mask = predictor.predict_proba(**prompt_for(sample, gt, settings).as_kwargs()) >= 0.5
    return overlay(image, mask), iou_dice(mask, gt > 127)[0]
