"""What keeping the encoder's edges in fp32 costs dtype="bf16": the encoder whose first layer (it
reads the image) and neck (it writes the embedding) run in fp32 (basam.runtime.precision,
`encoder.boundary_layers`) against the same encoder all in bf16 (the image then rounded to bf16
first), in one process.

    python benchmarks/bench_bf16_edges.py [--repeats 5] [--threads 2] [--size 1024]

vit_b (random weights) and vit_t, both with basam.use_fused_attention() where it builds; candidates
alternate; each line is the median of the per-round time ratios, fp32 edges / all bf16.
"""

from __future__ import annotations

import argparse

import torch

import _common as C
from basam.runtime.precision import describe_cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kernel = C.fused_kernel_builds()
    C.basam.use_fused_attention(kernel)
    x = C.image(args.size)
    candidates = {}
    for name in ("vit_b", "vit_t"):
        for edges in ("fp32", "bf16"):
            encoder = C.basam.load_model(name, dtype="bf16").image_encoder
            if edges == "bf16":
                for layer in encoder.boundary_layers:
                    layer.to(torch.bfloat16)
            candidates[f"{name} {edges} edges"] = lambda e=encoder: e(x)
    print(f"torch {torch.__version__}, cpu {describe_cpu()}; {args.size} px; fused kernel {'on' if kernel else 'off'}")
    with torch.no_grad():
        for fn in candidates.values():
            fn()  # warm-up
        times = C.alternate(candidates, args.repeats)
    for name in ("vit_b", "vit_t"):
        r, lo, hi = C.ratio(times, f"{name} fp32 edges", f"{name} bf16 edges")
        print(f"{name}: time with fp32 edges / all bf16 = {r:.3f} ({lo:.3f}–{hi:.3f}); medians "
              f"{C.med(times[f'{name} fp32 edges']):.3f} s and {C.med(times[f'{name} bf16 edges']):.3f} s")


if __name__ == "__main__":
    main()
