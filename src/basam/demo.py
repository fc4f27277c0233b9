"""`basam demo`: BA-SAM against plain SAM across resolutions, offline, on the embedded model.

The embedded model was trained at one size only (256 px, a 16×16 token grid), as SAM was at
1024 px. The demo renders held-out synthetic scenes at 0.5× to 4× that size — each at its own
resolution, with the detail that resolution holds — prompts each with the box of its target, and
scores every attention preset at every size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cli import add_model_arguments, attention_overrides, load_model_from_args, overlay
from .config import AttentionConfig
from .data.synth import FAMILIES
from .evaluate import EvalSettings, SynthDataset, evaluate, prompt_for, sweep_table, write_sweep
from .predictor import Predictor

SCALES = (0.5, 1, 2, 3, 4)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", default="basam-demo")
    p.add_argument("--n", type=int, default=3, help="held-out scenes per family")
    p.add_argument("--resolutions", default=None, help="comma-separated sizes (default: 0.5×–4× the training size)")
    p.add_argument("--presets", default="sam,nsf,bm,basam")
    p.add_argument("--prompt", default="box", help="box | center | points | box+center | none")
    p.add_argument("--quick", action="store_true", help="one scene per family, three sizes (for tests)")


def run(args: argparse.Namespace) -> int:
    model = load_model_from_args(args, attn="sam")
    train_side = model.cfg.img_size
    if args.resolutions:
        sizes = [int(s) for s in args.resolutions.split(",")]
    else:
        sizes = [int(train_side * s) for s in ((0.5, 1, 2) if args.quick else SCALES)]
    n = 1 if args.quick else args.n
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    configs = {p: AttentionConfig.from_preset(p, **attention_overrides(args)) for p in presets}
    settings = EvalSettings(prompt=args.prompt, group_by_prefix=True)
    out = Path(args.out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    print(f"model {model.cfg.name} (trained at {train_side} px); {n} held-out scenes × {len(FAMILIES)} families; "
          f"prompt {args.prompt}; sizes {', '.join(map(str, sizes))} px")
    records = []
    for size in sizes:
        scenes = SynthDataset(FAMILIES, n, size)
        for preset in presets:
            model.set_attention(configs[preset])
            predictor = Predictor(model, resolution=size)
            result = evaluate(predictor, scenes, settings, progress=False)
            records.append({"preset": preset, "prompt": args.prompt, "resolution": str(size), **result.summary()})
            print(f"  {preset:>6} @ {size:>4} px: mIoU {records[-1]['mIoU']:.3f}")
            _save_overlay(predictor, scenes[0], out / "overlays" / f"{preset}_{size}.png", settings)
    records.sort(key=lambda r: presets.index(r["preset"]))
    write_sweep(records, out, "mIoU", title=f"basam demo: {model.cfg.name} trained at {train_side} px, {args.prompt} prompts")
    _overlay_grid(out, presets, sizes)
    print()
    print(sweep_table(records, "mIoU"))
    print(f"\nwrote {out}/sweep.md, sweep.csv, sweep.png, overlays.png and overlays/")
    return 0


def _save_overlay(predictor: Predictor, sample, path: Path, settings: EvalSettings) -> None:
    from PIL import Image

    image, gt = sample.load()
    prompt = prompt_for(sample, gt, settings)
    predictor.set_image(image)
    mask = predictor.predict_proba(**prompt.as_kwargs()) >= 0.5
    Image.fromarray(overlay(image, mask)).save(path)


def _overlay_grid(out: Path, presets: list[str], sizes: list[int]) -> None:
    """overlays.png: rows = presets, columns = sizes, every tile shown at the same display size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(len(presets), len(sizes), figsize=(2.2 * len(sizes), 2.3 * len(presets)), squeeze=False)
    for i, preset in enumerate(presets):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            ax.imshow(np.asarray(Image.open(out / "overlays" / f"{preset}_{size}.png")))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{size} px", fontsize=9)
            if j == 0:
                ax.set_ylabel(preset, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "overlays.png", dpi=100)
    plt.close(fig)
