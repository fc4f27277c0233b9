"""FLOPs of basam's vit_b image encoder by input size, counted on the meta device (no compute).

    python benchmarks/flops_encoder.py [--sizes 1024,2048,4096]

torch.utils.flop_counter counts matrix products and convolutions: `addmm` is the linear layers,
`bmm` the attention (on the meta device SDPA runs its math path: q kᵀ and the product with v, for
the global and the windowed blocks, plus the rel-pos einsums) and `convolution` the patch embedding
and the neck. The ratio of two sizes is the floor of their time ratio for kernels that run at the
same FLOP rate at both sizes.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import _common as C


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,2048,4096")
    sizes = [int(s) for s in p.parse_args().sizes.split(",")]
    encoder = C.basam.load_model("vit_b").image_encoder.eval().to("meta")
    totals = {}
    print("| vit_b encoder | linear (addmm) | attention (bmm) | convolutions | total TFLOP | vs first size |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            encoder(torch.empty(1, 3, size, size, device="meta"))
        ops = {str(k).removeprefix("aten."): v / 1e12 for k, v in counter.get_flop_counts()["Global"].items()}
        totals[size] = counter.get_total_flops() / 1e12
        print(
            f"| {size} px | {ops.get('addmm', 0):.3f} | {ops.get('bmm', 0):.3f} | {ops.get('convolution', 0):.3f} | "
            f"{totals[size]:.3f} | {totals[size] / totals[sizes[0]]:.2f}× |"
        )


if __name__ == "__main__":
    main()
