"""Sections of the `encoder` suite that time one part alone: the linear layers (nn.Linear against
oneDNN's fused linear, which basam uses in CPU inference) and the fused attention kernel
(basam.use_fused_attention) on one global block's 12 heads."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import _common as C
from benchmarks.record import Result, ratio_cell

# (tokens, in, out, GELU after): vit_b's MLP lin1, MLP lin2, qkv with and without the window
# padding, proj, at 1024 px.
VIT_B_SHAPES = [
    (4096, 768, 3072, True),
    (4096, 3072, 768, False),
    (4900, 768, 2304, False),
    (4096, 768, 2304, False),
    (4096, 768, 768, False),
]
QUICK_SHAPES = [(256, 64, 256, True), (256, 256, 64, False)]


def linear_layers(result: Result, quick: bool, rounds: int) -> None:
    from basam.modeling.common import linear

    s = result.section(
        "linear",
        "The encoder's linear layers: nn.Linear (+ GELU) against oneDNN's fused linear",
        ["tokens × in → out", "dtype", "nn.Linear s", "oneDNN fused s", "speed-up (min–max)", "max abs diff"],
    )
    torch.manual_seed(0)
    for tokens, n_in, n_out, gelu in QUICK_SHAPES if quick else VIT_B_SHAPES:
        layer = torch.nn.Linear(n_in, n_out)
        for dtype in (torch.float32, torch.bfloat16):
            layer_d, x = layer.to(dtype), torch.randn(tokens, n_in, dtype=dtype)

            def plain(x=x, layer_d=layer_d, gelu=gelu):
                y = F.linear(x, layer_d.weight, layer_d.bias)
                return F.gelu(y) if gelu else y

            def fused(x=x, layer_d=layer_d, gelu=gelu):
                return linear(layer_d, x, gelu=gelu)

            outs = {}
            plain(), fused()  # warm-up: the first oneDNN call creates its primitive
            times = C.alternate({"plain": plain, "fused": fused}, rounds, log=lambda *a, **k: None, outputs=outs)
            r = C.ratio(times, "plain", "fused")
            name = f"{tokens} × {n_in} → {n_out}" + (" + GELU" if gelu else "")
            dname = str(dtype).replace("torch.", "")
            s.row(
                name,
                dname,
                f"{C.med(times['plain']):.4f}",
                f"{C.med(times['fused']):.4f}",
                ratio_cell(r),
                f"{(outs['plain'].float() - outs['fused'].float()).abs().max().item():.1e}",
            )
            result.figure(s, f"{tokens}x{n_in}x{n_out}_{dname}_fused_vs_plain", r[0])


def kernel(result: Result, rounds: int, size: int = 1024, attn: str = "basam") -> None:
    """q, k, v and SAM's rel-pos terms random, (1, 12, N, 64) on the (size/16)² grid: float32
    inputs, bf16 inputs cast to float32 (what a CPU without AVX512-BF16 runs), and bf16 products
    where the CPU has them; GFLOP/s counts the two products (4·heads·N²·64)."""
    from basam.config import AttentionConfig
    from basam.modeling.attention import _KERNEL_DISTANCES, BlockAttentionMode
    from basam.modeling.image_encoder import decomposed_rel_pos
    from basam.runtime.kernels import fused_kernel

    side, heads, d = size // 16, 12, 64
    grid, n = (side, side), side * side
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, d, generator=g) for _ in range(3))
    tables = [torch.randn(2 * side - 1, d, generator=g) * 0.1 for _ in range(2)]
    mode = BlockAttentionMode(AttentionConfig.from_preset(attn, bm_offset="0"), heads, d, True, grid, grid)
    slopes = -mode.slopes.detach().float() if mode.use_bias else torch.empty(0)
    rel_h, rel_w = (t.float().contiguous() for t in decomposed_rel_pos(q, grid, *tables)(slice(0, n)))
    with C.fused_attention():
        kern = fused_kernel()

        def call(q, k, v):
            out = q.new_empty(q.shape)
            kern.relpos_attention(
                q,
                k,
                v,
                rel_h,
                rel_w,
                out,
                0,
                mode.scale(n),
                slopes,
                mode.bias_offset(grid),
                _KERNEL_DISTANCES.index(mode.distance),
            )
            return out

        bf16 = [t.bfloat16() for t in (q, k, v)]
        cands = {
            "float32": lambda: call(q, k, v),
            "bf16 cast to float32": lambda: call(*(t.float() for t in bf16)).bfloat16(),
        }
        if kern.bf16_native():
            cands["bf16 products"] = lambda: call(*bf16)
        outs = {}
        for fn in cands.values():
            fn()
        times = C.alternate(cands, rounds, log=lambda *a, **k: None, outputs=outs)
    s = result.section(
        "kernel",
        f"The fused attention kernel alone: one vit_b global block at {size} px, attn {attn}",
        ["kernel input", "median s", "GFLOP/s", "speed vs float32 (min–max)", "max abs diff vs float32"],
    )
    flops = 4 * heads * n * n * d
    for name in cands:
        r = C.ratio(times, "float32", name)
        s.row(
            name,
            f"{C.med(times[name]):.3f}",
            f"{flops / C.med(times[name]) / 1e9:.0f}",
            ratio_cell(r),
            f"{(outs[name].float() - outs['float32']).abs().max().item():.1e}",
        )
        result.figure(s, f"{name.replace(' ', '_')}_gflops", flops / C.med(times[name]) / 1e9)
    a = torch.randn(2048, 2048)
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        torch.mm(x, x)
        start = time.perf_counter()
        torch.mm(x, x)
        gflops = 2 * 2048**3 / (time.perf_counter() - start) / 1e9
        result.figure(s, f"gemm_{str(dtype).replace('torch.', '')}_gflops", gflops)
    f = result.figures
    result.note(
        s,
        f"For scale, one 2048³ torch.mm: float32 {f['kernel.gemm_float32_gflops']:.0f} GFLOP/s, "
        f"bf16 {f['kernel.gemm_bfloat16_gflops']:.0f} GFLOP/s.",
    )
