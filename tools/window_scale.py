"""Does the resolution loss come from the windows? Plain attention with the windowed blocks'
window kept at its trained size, against windows grown with the image (8 tokens at 256 px → 16
at 512, 32 at 1024, 4 at 128), so that each window covers the same part of the picture as in
training. The windows' rel-pos tables are resized the same way the global blocks' are.

    python tools/window_scale.py OUT [--model default] [--checkpoint F] [--data synth:all] [--n 8]
                                     [--resolution 128,256,512,1024] [--prompt box,center,none] [--split test]
                                     [--attn sam]

--data takes what `basam sweep --data` takes (a dataset on disk, or synthetic scenes rendered at
each resolution). Writes OUT/sweep.md (overall, then per family for synthetic scenes), sweep.csv,
.json and .png, like `basam sweep`: the rows are "windows fixed" and "windows scaled", with the
`sam` preset, or per preset with --attn (e.g. sam,nsf,basam: does BA-SAM add to scaled windows?).
"""

import argparse
import sys
from pathlib import Path

import basam
from basam.evaluate import EvalSettings, evaluate_prompts, open_eval_data, write_sweep


def set_windows(model: basam.Sam, size: int | None) -> list[int]:
    """Give every windowed block of `model` the window that covers at `size` px what its trained
    window covered at the training size (size None: back to the trained window). → the windows."""
    encoder = model.image_encoder
    trained = model.cfg.window_size
    window = trained if size is None else max(1, round(trained * size / model.cfg.img_size))
    for block in encoder.blocks:
        if block.window_size > 0:
            block.window_size = window
    return [block.window_size for block in encoder.blocks]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--model", default="default")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--data", default="synth:all")
    parser.add_argument("--n", type=int, default=8, help="synthetic scenes per family")
    parser.add_argument("--split", default=None)
    parser.add_argument("--resolution", default="128,256,512,1024")
    parser.add_argument("--prompt", default="box,center,none")
    parser.add_argument("--attn", default="sam", help="comma-separated presets")
    args = parser.parse_args()
    presets = args.attn.split(",")
    configs = {p: basam.AttentionConfig.from_preset(p) for p in presets}  # a bad name fails here, not mid-run
    model = basam.load_model(args.model, checkpoint=args.checkpoint)
    prompts = args.prompt.split(",")
    settings = EvalSettings(prompt=prompts[0], group_by_prefix=args.data.startswith("synth"))  # per family
    records = []
    for size in (int(s) for s in args.resolution.split(",")):
        dataset = open_eval_data(args.data, args.split, size, args.n)
        for preset in presets:
            model.set_attention(configs[preset])
            for variant, scale_to in (("windows fixed", None), ("windows scaled", size)):
                windows = set_windows(model, scale_to)
                label = variant if len(presets) == 1 else f"{preset}, {variant}"
                results = evaluate_prompts(basam.Predictor(model, resolution=size), dataset, settings, prompts)
                for kind, result in results.items():
                    records.append({"preset": label, "prompt": kind, "resolution": str(size), **result.summary()})
                    print(f"{label} {windows} {kind:>6} @ {size}: mIoU {records[-1]['mIoU']:.4f}", flush=True)
                    for name, reason in result.problems:
                        print(f"not scored: {name}: {reason}", file=sys.stderr)
    set_windows(model, None)
    records.sort(key=lambda r: prompts.index(r["prompt"]))
    write_sweep(records, Path(args.out), "mIoU", title=f"{args.attn}: windows fixed or scaled ({model.cfg.name})")
    print(Path(args.out, "sweep.md").read_text())


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # a bad --data, --resolution or --prompt: one line, not a traceback
        sys.exit(f"window_scale: {e}")
