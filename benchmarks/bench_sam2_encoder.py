"""SAM 2 image encoder: basam against the official sam2 code on the same random weights, in one run.

1. Speed at 1024 px: the official `forward_image` (trunk, neck, conv_s0/conv_s1) against basam's
   `Sam2.encode` (the same, plus no_mem_embed), alternating, median of per-round ratios; fp32, and
   bf16 where this CPU has native bf16 (basam's bf16 keeps the patch embedding and neck fp32).
2. Peak RSS of one basam encode at larger sizes (`--rss-sizes`, default 2048 4096), each in a
   fresh interpreter.

    python benchmarks/bench_sam2_encoder.py --models sam2.1_hiera_t sam2.1_hiera_b+ --repeats 3

Prints the CPU capability and versions with every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import basam  # noqa: E402
from _common import _rss_now_kb, alternate, image, ratio  # importing _common puts src/ and tests/ on the path
from basam.runtime.precision import native_bf16, set_precision  # noqa: E402

CONFIGS = {f"sam2.1_hiera_{s}": f"configs/sam2.1/sam2.1_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")}


def pair(model_type: str, dtype: str = "fp32"):
    """The official SAM2Base with random weights and basam's model with the same weights (bf16:
    basam's set_precision; the official model under CPU autocast, how it runs in bf16)."""
    from official_sam2 import official_sam2, release_state_dict

    official = official_sam2(CONFIGS[model_type])
    ours = basam.load_model(model_type)
    own = ours.state_dict()
    ours.load_state_dict({k: v for k, v in release_state_dict(official)["model"].items() if k in own})
    if dtype == "bf16":
        set_precision(ours, "bf16")
    return official, ours


def speed(model_type: str, dtype: str, repeats: int, size: int = 1024) -> None:
    official, ours = pair(model_type, dtype)
    x = image(size)

    def run_official():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            return official.forward_image(x)

    with torch.no_grad():
        times = alternate({"official": run_official, "basam": lambda: ours.encode(x)}, repeats)
    r, lo, hi = ratio(times, "official", "basam")
    print(
        f"{model_type} {dtype} {size} px: official {min(times['official']):.2f} s, basam {min(times['basam']):.2f} s "
        f"(best of {repeats}); basam speed-up {r:.2f}× (rounds {lo:.2f}–{hi:.2f})",
        flush=True,
    )


def rss_child(model_type: str, size: int, attn: str, windows: str) -> None:
    torch.set_num_threads(2)
    model = basam.load_model(model_type, attn=attn, windows=windows)
    build = _rss_now_kb("VmHWM")
    t0 = time.perf_counter()
    with torch.no_grad():
        embed, _ = model.encode(image(size))
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "build_gb": build / 2**20,
                "peak_gb": _rss_now_kb("VmHWM") / 2**20,
                "shape": list(embed.shape),
            }
        )
    )


def rss(model_type: str, size: int, attn: str, windows: str, timeout: float) -> None:
    cmd = [sys.executable, __file__, "--child", model_type, str(size), attn, windows]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{model_type} {size} px, {attn}/{windows}: peak RSS {r['peak_gb']:.2f} GiB (after build "
            f"{r['build_gb']:.2f}), {r['seconds']:.1f} s, embedding {r['shape']}",
            flush=True,
        )
    except subprocess.TimeoutExpired:
        print(f"{model_type} {size} px, {attn}/{windows}: did not finish in {timeout:.0f} s", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model_type, size, attn, windows = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        return rss_child(model_type, size, attn, windows)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_b+"], choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rss-sizes", nargs="*", type=int, default=[2048, 4096])
    p.add_argument("--rss-attn", default="basam")
    p.add_argument("--rss-windows", default="fixed")
    p.add_argument("--rss-timeout", type=float, default=3600)
    args = p.parse_args()
    torch.set_num_threads(2)
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, basam "
        f"{basam.__version__}, native bf16 {native_bf16()}, threads {torch.get_num_threads()}",
        flush=True,
    )
    for model_type in args.models if args.repeats > 0 else []:  # --repeats 0: the RSS section only
        speed(model_type, "fp32", args.repeats)
        if native_bf16():
            speed(model_type, "bf16", args.repeats)
        else:
            print(f"{model_type} bf16: skipped, this CPU has no native bf16", flush=True)
    for size in args.rss_sizes:
        rss(args.models[0], size, args.rss_attn, args.rss_windows, args.rss_timeout)


if __name__ == "__main__":
    main()
