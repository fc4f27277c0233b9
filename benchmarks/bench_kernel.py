"""The fused attention kernel alone (basam.use_fused_attention), on the 12 heads of one vit_b
global block: float32 products (MKL) against bf16 products (AVX512-BF16), in one process.

    python benchmarks/bench_kernel.py [--size 1024] [--threads 2] [--repeats 5] [--attn basam]

q, k, v and SAM's rel-pos terms are random, (1, 12, N, 64) on the (size/16)² grid. The candidates:
float32 inputs; bf16 inputs cast to float32 (what a CPU without AVX512-BF16 runs); bf16 inputs
as bf16 products (only where the CPU has them). Each prints its median time of --repeats calls
(candidates alternated), GFLOP/s counting the two products (4·heads·N²·64), and its largest
difference from the float32 output (for bf16, mostly the rounding of the inputs and the output).
First, for reference, the GFLOP/s of one large float32 and bf16 matrix product.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import _common as C
from basam.modeling.attention import BlockAttentionMode, _KERNEL_DISTANCES
from basam.config import AttentionConfig
from basam.runtime.kernels import fused_kernel
from basam.modeling.image_encoder import decomposed_rel_pos
from basam.runtime.precision import describe_cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--attn", default="basam",
                   help="attention preset: its bias (offset 0, so that it acts at any size) and distance")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        C.basam.use_fused_attention()
    except C.basam.runtime.kernels.KernelBuildError as e:
        sys.exit(f"bench_kernel: {e}")
    kernel = fused_kernel()
    side, heads, d = args.size // 16, 12, 64
    grid, n = (side, side), side * side
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, d, generator=g) for _ in range(3))
    tables = [torch.randn(2 * side - 1, d, generator=g) * 0.1 for _ in range(2)]
    mode = BlockAttentionMode(AttentionConfig.from_preset(args.attn, bm_offset="0"), heads, d, True, grid, grid)
    slopes = -mode.slopes.detach().float() if mode.use_bias else torch.empty(0)
    rel_h, rel_w = (t.float().contiguous() for t in decomposed_rel_pos(q, grid, *tables)(slice(0, n)))
    print(f"torch {torch.__version__}, cpu {describe_cpu()}; {args.size} px: {heads} heads "
          f"× {n} tokens, head dim {d}, attn {args.attn} (bias {'on' if mode.use_bias else 'off'}); bf16 products "
          f"here: {kernel.bf16_native()}")

    def call(q, k, v):
        out = q.new_empty(q.shape)
        kernel.relpos_attention(q, k, v, rel_h, rel_w, out, 0, mode.scale(n), slopes, mode.bias_offset(grid),
                                _KERNEL_DISTANCES.index(mode.distance))
        return out

    bf16 = [t.bfloat16() for t in (q, k, v)]
    candidates = {"float32": lambda: call(q, k, v),
                  "bf16 cast to float32": lambda: call(*(t.float() for t in bf16)).bfloat16()}
    if kernel.bf16_native():
        candidates["bf16 products"] = lambda: call(*bf16)
    times = {name: [] for name in candidates}
    outputs = {}
    with torch.no_grad():
        for name, fn in candidates.items():
            outputs[name] = fn()  # warm-up
        for r in range(args.repeats):
            for name in (list(candidates) if r % 2 == 0 else list(candidates)[::-1]):
                start = time.perf_counter()
                candidates[name]()
                times[name].append(time.perf_counter() - start)
    flops = 4 * heads * n * n * d
    print(f"\nreference, a large matrix product (torch.mm, 2048³, median of {args.repeats}): "
          + ", ".join(f"{name} {gemm_gflops(dtype, args.repeats):.0f} GFLOP/s"
                      for name, dtype in (("float32", torch.float32), ("bf16", torch.bfloat16))))
    print("\n| kernel input | median s (min–max) | GFLOP/s | speed vs float32 | max abs diff vs float32 |")
    print("|---|---|---|---|---|")
    base = C.med(times["float32"])
    for name, ts in times.items():
        diff = (outputs[name].float() - outputs["float32"]).abs().max().item()
        print(f"| {name} | {C.med(ts):.3f} ({min(ts):.3f}–{max(ts):.3f}) | {flops / C.med(ts) / 1e9:.0f} | "
              f"{base / C.med(ts):.2f}× | {diff:.1e} |")


def gemm_gflops(dtype: torch.dtype, repeats: int, size: int = 2048) -> float:
    """What this CPU's BLAS (MKL for float32, oneDNN for bf16) reaches on a large product: the
    practical peak the kernel's GFLOP/s compare with."""
    a, b = (torch.randn(size, size).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / C.med(seconds) / 1e9


if __name__ == "__main__":
    main()
