"""Achieved FLOP rates: vit_t against vit_b, vit_b across input sizes, both against a large matrix product.

    python benchmarks/bench_rates.py [--repeats 3] [--sizes 1024,2048] [--threads 2]

FLOPs are counted by torch.utils.flop_counter on the meta device (no compute; on meta, SDPA runs
its math path, so attention counts as its two products); times are measured on the CPU, with the
candidates of one size run in alternation, `--repeats` rounds, median per candidate. A rate is
FLOPs / median time. Printed:

1. at 1024 px: vit_t (MobileSAM's TinyViT, random weights) as basam runs it (channels-last,
   BatchNorm folded) and as its modules are written (NCHW, convolution then BatchNorm), vit_b in
   fp32 and with bf16 weights; time ratios vit_b fp32 / vit_t, and each one's GFLOP/s;
2. vit_b's rate at every size of --sizes against its rate at the first one, fp32 and bf16 (the
   larger sizes without a warm-up run: one forward there takes minutes on a small CPU);
3. the rate of a 4096×4096 by 4096×4096 torch.mm (fp32 and bf16) for reference, the practical
   ceiling of this CPU, and each encoder's rate as a fraction of it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import _common as C
from basam.modeling.tiny_vit import ConvBN, TinyViT
from basam.runtime.precision import set_precision


def flops(encoder: torch.nn.Module, size: int) -> float:
    meta = copy.deepcopy(encoder).to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops()


class Written:
    """vit_t with its modules run as written: NCHW, convolution then BatchNorm."""

    def __init__(self, encoder):
        self.encoder = encoder

    def __call__(self, x):
        ConvBN.fold, TinyViT.channels_last = False, False
        try:
            return self.encoder(x)
        finally:
            ConvBN.fold, TinyViT.channels_last = True, True


def alternate(candidates: dict, x: torch.Tensor, repeats: int, warm_up: bool = True) -> dict[str, float]:
    times = {name: [] for name in candidates}
    with torch.no_grad():
        for fn in candidates.values() if warm_up else ():  # oneDNN primitives, allocator
            fn(x)
        for r in range(repeats):
            names = list(candidates)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                candidates[name](x)
                times[name].append(time.perf_counter() - start)
            print(
                f"  {x.shape[-1]} px round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
                flush=True,
            )
    return {name: statistics.median(t) for name, t in times.items()}


def mm_rate(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = min(C.timed(lambda: torch.mm(a, b))[0] for _ in range(repeats))
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", default="1024,2048", help="vit_b input sides; the first is the reference")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}, {args.threads} threads")
    vit_t = C.basam.load_model("vit_t").image_encoder.eval()
    vit_b = C.basam.load_model("vit_b").image_encoder.eval()
    vit_b_bf16 = C.basam.load_model("vit_b")
    set_precision(vit_b_bf16, "bf16")
    vit_b_bf16 = vit_b_bf16.image_encoder.eval()
    vit_t_bf16 = C.basam.load_model("vit_t")
    set_precision(vit_t_bf16, "bf16")
    vit_t_bf16 = vit_t_bf16.image_encoder.eval()
    peak = {"fp32": mm_rate(torch.float32), "bf16": mm_rate(torch.bfloat16)}
    print(f"4096² torch.mm: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s")

    side = sizes[0]
    work = {"vit_t": flops(vit_t, side), "vit_b": flops(vit_b, side)}
    x = C.image(side)
    t = alternate(
        {
            "vit_t": vit_t,
            "vit_t written": Written(vit_t),
            "vit_t bf16": vit_t_bf16,
            "vit_b": vit_b,
            "vit_b bf16": vit_b_bf16,
        },
        x,
        args.repeats,
    )
    print(
        f"\n{side} px: vit_t {work['vit_t'] / 1e9:.1f} GFLOP, vit_b {work['vit_b'] / 1e9:.1f} GFLOP "
        f"(work ratio {work['vit_b'] / work['vit_t']:.1f}×)"
    )
    for name in t:
        model = name.split()[0]
        dtype = "bf16" if "bf16" in name else "fp32"
        rate = work[model] / t[name]
        print(f"  {name:14s} {t[name]:7.2f} s  {rate / 1e9:6.1f} GFLOP/s  ({rate / peak[dtype]:.0%} of {dtype} mm)")
    print(
        f"  vit_b fp32 / vit_t fp32: {t['vit_b'] / t['vit_t']:.2f}×; vit_b bf16 / vit_t bf16: "
        f"{t['vit_b bf16'] / t['vit_t bf16']:.2f}×; vit_t written / vit_t: {t['vit_t written'] / t['vit_t']:.2f}×"
    )

    rates = {}
    for size in sizes:
        work_b = flops(vit_b, size)
        times = (
            t
            if size == side
            else alternate({"vit_b": vit_b, "vit_b bf16": vit_b_bf16}, C.image(size), args.repeats, warm_up=False)
        )
        rates[size] = {d: work_b / times[n] for d, n in (("fp32", "vit_b"), ("bf16", "vit_b bf16"))}
        print(
            f"vit_b {size} px: {work_b / 1e12:.2f} TFLOP; fp32 {times['vit_b']:.1f} s "
            f"{rates[size]['fp32'] / 1e9:.1f} "
            f"GFLOP/s ({rates[size]['fp32'] / rates[side]['fp32']:.0%} of {side} px's rate); bf16 "
            f"{times['vit_b bf16']:.1f} s {rates[size]['bf16'] / 1e9:.1f} GFLOP/s "
            f"({rates[size]['bf16'] / rates[side]['bf16']:.0%})",
            flush=True,
        )


if __name__ == "__main__":
    main()
