"""The encoder's linear layers: nn.Linear (MKL) against oneDNN's fused linear, which basam uses in
CPU inference (`linear()` in src/basam/modeling/common.py), on the ViT-B shapes at 1024 px.

    python benchmarks/bench_linear.py [--threads 1] [--repeats 5]

Each pair alternates in one process; the speed-up is the median of the per-round ratios (min–max).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import _common as C
from basam.modeling.common import linear

# (tokens, in, out, GELU after): MLP lin1, MLP lin2, qkv with and without the window padding, proj.
SHAPES = [(4096, 768, 3072, True), (4096, 3072, 768, False), (4900, 768, 2304, False), (4096, 768, 2304, False),
          (4096, 768, 768, False)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from basam.runtime.precision import describe_cpu

    print(f"cpu: {describe_cpu()}, torch {torch.__version__}\n")
    print("| tokens × in → out | dtype | nn.Linear (+ GELU) s | oneDNN fused s | speed-up (min–max) | max abs diff |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for tokens, n_in, n_out, gelu in SHAPES:
        layer = torch.nn.Linear(n_in, n_out)
        for dtype in (torch.float32, torch.bfloat16):
            layer_d, x = layer.to(dtype), torch.randn(tokens, n_in, dtype=dtype)
            with torch.no_grad():
                def plain():
                    y = F.linear(x, layer_d.weight, layer_d.bias)
                    return F.gelu(y) if gelu else y

                def fused():
                    return linear(layer_d, x, gelu=gelu)

                outs = {}
                times = C.alternate({"plain": plain, "fused": fused}, args.repeats, log=lambda *a, **k: None,
                                    outputs=outs)
            r, lo, hi = C.ratio(times, "plain", "fused")
            diff = (outs["plain"].float() - outs["fused"].float()).abs().max().item()
            name = f"{tokens} × {n_in} → {n_out}" + (" + GELU" if gelu else "")
            print(f"| {name} | {str(dtype).replace('torch.', '')} | {C.med(times['plain']):.4f} | "
                  f"{C.med(times['fused']):.4f} | {r:.2f}× ({lo:.2f}–{hi:.2f}) | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
