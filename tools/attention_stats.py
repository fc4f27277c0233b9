"""How far and how sharply the global blocks of a model attend, per resolution and preset.

    python tools/attention_stats.py [--model default] [--n 2] [--resolution 128,256,512,1024]
                                    [--attn sam,nsf,bm,basam] [--split test]

For each global block: the mean attention entropy (nats; ln N would be uniform attention) and the
mean attention distance, in tokens and as a fraction of the grid's side (how much of the image a
query reads). Every attention call of the real model is observed: `basam.modeling.attention` calls
`F.scaled_dot_product_attention`, which this tool replaces by an explicit softmax that records the
probabilities before multiplying by v. The encoder runs on held-out synthetic scenes (all
families), so the numbers are those of the model as evaluated.
"""

import argparse
import math
import types

import torch

import basam
from basam.data.specs import SynthDataset
from basam.data.synth import FAMILIES
from basam.modeling import attention


class Recorder:
    """Replaces attention.F: calls made inside a global block (`self.block` is set by that block's
    hooks) are computed explicitly and their statistics accumulated per block."""

    def __init__(self, grid_hw: tuple[int, int]):
        self.n = grid_hw[0] * grid_hw[1]
        ys, xs = torch.meshgrid(torch.arange(grid_hw[0]), torch.arange(grid_hw[1]), indexing="ij")
        self.pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()
        self.block, self.row = None, 0
        self.stats: dict[int, list[float]] = {}  # block → [entropy sum, distance sum, queries]

    def scaled_dot_product_attention(self, q, k, v, attn_mask=None, scale=None):
        if self.block is None:  # a windowed block: not what this measures
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        scores = (q @ k.transpose(-2, -1)) * scale
        if attn_mask is not None:
            scores = scores + attn_mask
        p = scores.softmax(-1)  # B, heads, rows, N
        rows = torch.arange(self.row, self.row + q.shape[2])
        distance = torch.cdist(self.pos[rows], self.pos)  # rows, N
        s = self.stats.setdefault(self.block, [0.0, 0.0, 0])
        s[0] += float(-(p * p.clamp_min(1e-30).log()).sum())
        s[1] += float((p * distance).sum())
        s[2] += p.shape[0] * p.shape[1] * p.shape[2]
        self.row = (self.row + q.shape[2]) % self.n
        return p @ v


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--n", type=int, default=2, help="scenes per family")
    parser.add_argument("--split", default="test")
    parser.add_argument("--resolution", default="128,256,512,1024")
    parser.add_argument("--attn", default="sam,nsf,bm,basam")
    args = parser.parse_args()
    model = basam.load_model(args.model, checkpoint=args.checkpoint)
    print("| preset | px | tokens | block | entropy (nats) | ln N | distance (tokens) | distance / grid side |")
    print("|---|---|---|---|---|---|---|---|")
    summary: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for size in (int(s) for s in args.resolution.split(",")):
        scenes = SynthDataset(FAMILIES, args.n, size, split=args.split)
        grid = (size // model.image_encoder.patch_size,) * 2
        for preset in args.attn.split(","):
            model.set_attention(basam.AttentionConfig.from_preset(preset))
            recorder, predictor = Recorder(grid), basam.Predictor(model, resolution=size)
            hooks = [
                h
                for i, blk in enumerate(model.image_encoder.blocks)
                if blk.window_size == 0
                for h in (
                    blk.attn.register_forward_pre_hook(lambda *_, i=i: setattr(recorder, "block", i)),
                    blk.attn.register_forward_hook(lambda *_: setattr(recorder, "block", None)),
                )
            ]
            for i in range(len(scenes)):
                image, _ = scenes[i].load()
                attention.F = types.SimpleNamespace(scaled_dot_product_attention=recorder.scaled_dot_product_attention)
                try:
                    predictor.set_image(image)
                finally:
                    attention.F = torch.nn.functional
            for h in hooks:
                h.remove()
            ln_n = math.log(recorder.n)
            for block, (entropy, distance, count) in recorder.stats.items():
                print(
                    f"| {preset} | {size} | {recorder.n} | {block} | {entropy / count:.3f} | {ln_n:.3f} | "
                    f"{distance / count:.2f} | {distance / count / max(grid):.3f} |"
                )
                summary.setdefault(preset, {}).setdefault(size, []).append(
                    (entropy / count - ln_n, distance / count / max(grid))
                )
    print_summary(summary)


def print_summary(summary: dict[str, dict[int, list[tuple[float, float]]]]) -> None:
    """Means over the global blocks: entropy − ln N, and reach (mean distance / grid side)."""
    sizes = sorted({size for per_size in summary.values() for size in per_size})
    print()
    print("| global blocks, mean | " + " | ".join(f"{s} px" for s in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for k, what in enumerate(("entropy − ln N (nats)", "reach (mean distance / grid side)")):
        for preset, per_size in summary.items():
            cells = [sum(v[k] for v in per_size[s]) / len(per_size[s]) for s in sizes]
            print(f"| {preset}: {what} | " + " | ".join(f"{c:.3f}" if k else f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
