"""Shared helpers of the benchmark scripts (not a test module).

- official_encoder(): the official segment_anything ImageEncoderViT with vit_b settings, randomly
  initialised with non-zero rel-pos tables and pos_embed.
- ours_from(): basam's vit_b image encoder carrying the same weights (strict load).
- peak_rss_subprocess(): one encoder forward in a fresh interpreter, reporting peak RSS.
- timing helpers that alternate candidates in one process and report median ratios.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import basam  # noqa: E402

VIT_B = dict(depth=12, embed_dim=768, num_heads=12, global_attn_indexes=(2, 5, 8, 11))


def official_modeling():
    from official import official_modeling as _om  # tests/official.py

    return _om()


def official_encoder(seed: int = 0, img_size: int = 1024) -> nn.Module:
    """The official ImageEncoderViT (vit_b settings), random weights, rel-pos and pos_embed non-zero."""
    modeling = official_modeling()
    torch.manual_seed(seed)
    enc = modeling.ImageEncoderViT(
        img_size=img_size,
        patch_size=16,
        embed_dim=VIT_B["embed_dim"],
        depth=VIT_B["depth"],
        num_heads=VIT_B["num_heads"],
        mlp_ratio=4.0,
        out_chans=256,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        rel_pos_zero_init=True,
        window_size=14,
        global_attn_indexes=VIT_B["global_attn_indexes"],
    )
    randomise_(enc, seed)
    return enc.eval()


def randomise_(enc: nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised parameters (pos_embed, rel_pos_*) non-zero random values."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name == "pos_embed" or "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def ours_from(official: nn.Module, attn: str = "sam", dtype: str = "fp32") -> nn.Module:
    """basam's vit_b encoder with the official encoder's weights, in precision `dtype`."""
    from basam.runtime.precision import set_precision

    model = basam.load_model("vit_b", attn=attn)
    model.image_encoder.load_state_dict(official.state_dict(), strict=True)
    set_precision(model, dtype)
    return model.image_encoder.eval()


def resize_official_pos_embed_(enc: nn.Module, grid: int) -> None:
    """The official encoder adds a fixed 64×64 pos_embed; to run it at another size, replace that
    parameter by a bicubic resize (its rel-pos tables are resized by the official code itself)."""
    with torch.no_grad():
        pe = enc.pos_embed.permute(0, 3, 1, 2)
        pe = torch.nn.functional.interpolate(pe, size=(grid, grid), mode="bicubic", align_corners=False)
        enc.pos_embed = nn.Parameter(pe.permute(0, 2, 3, 1).contiguous())


def image(size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=g)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def alternate(candidates: dict, repeats: int, log=print, outputs: dict | None = None) -> dict[str, list[float]]:
    """Run every candidate (name → zero-arg callable) once per round, `repeats` rounds, rotating
    the order each round; returns name → list of seconds. `outputs`, if given, receives each
    candidate's last result."""
    names = list(candidates)
    times = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            dt, out = timed(candidates[n])
            times[n].append(dt)
            if outputs is not None:
                outputs[n] = out
        log(f"  round {r + 1}/{repeats}: " + "  ".join(f"{n}={times[n][-1]:.2f}s" for n in names), flush=True)
    return times


def ratio(times: dict[str, list[float]], base: str, other: str) -> tuple[float, float, float]:
    """Speed-up of `other` over `base`: median over rounds of base/other (paired per round), and
    the min/max of those per-round ratios."""
    per_round = [b / o for b, o in zip(times[base], times[other])]
    return statistics.median(per_round), min(per_round), max(per_round)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


@contextlib.contextmanager
def fused_attention():
    """basam.use_fused_attention() for the block, off again after it."""
    basam.use_fused_attention()
    try:
        yield
    finally:
        basam.use_fused_attention(False)


def fused_kernel_builds() -> bool:
    """Builds the fused kernel (and leaves it off); False, with the reason printed, if it cannot be built."""
    try:
        with fused_attention():
            return True
    except basam.runtime.kernels.KernelBuildError as e:
        print(f"fused attention kernel skipped: {e}")
        return False


# ----------------------------------------------------------------------------------------------
# peak memory of one forward, in a fresh interpreter


def _rss_now_kb(field: str = "VmRSS") -> int:
    """VmRSS (now) or VmHWM (peak) of this process in KiB. VmHWM belongs to the address space,
    which exec replaces, whereas ru_maxrss carries over the peak of a large parent that forked us."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mem_child(
    impl: str, size: int, attn: str, threads: int, keep_memory: bool = False, fused: bool = False, dtype: str = "fp32"
) -> dict:
    """Body of the child process: build, record RSS, one forward under no_grad, record peak RSS.
    keep_memory: apply basam.keep_freed_memory() first; fused: basam.use_fused_attention(); dtype:
    load_model's (ours and vit_t)."""
    if keep_memory:
        basam.keep_freed_memory()
    if fused:
        basam.use_fused_attention()
    torch.set_num_threads(threads)
    if impl == "official":
        enc = official_encoder()
        if size != 1024:
            resize_official_pos_embed_(enc, size // 16)
    elif impl == "vit_t":
        enc = basam.load_model("vit_t", attn=attn, dtype=dtype).image_encoder.eval()
    else:
        enc = basam.load_model("vit_b", attn=attn, dtype=dtype).image_encoder.eval()
    x = image(size)
    build_peak = _rss_now_kb("VmHWM")
    build_now = _rss_now_kb()
    t0 = time.perf_counter()
    with torch.no_grad():
        y = enc(x)
    dt = time.perf_counter() - t0
    peak = _rss_now_kb("VmHWM")
    return {
        "impl": impl,
        "attn": attn,
        "size": size,
        "ok": True,
        "seconds": dt,
        "keep_memory": keep_memory,
        "fused": fused,
        "dtype": dtype,
        "rss_after_build_gb": build_now / 2**20,
        "peak_after_build_gb": build_peak / 2**20,
        "peak_rss_gb": peak / 2**20,
        "out_shape": list(y.shape),
        "finite": bool(torch.isfinite(y).all()),
    }


def peak_rss_subprocess(
    impl: str,
    size: int,
    attn: str = "sam",
    threads: int = 2,
    limit_gb: float | None = None,
    nice: int = 0,
    timeout: float | None = None,
    keep_memory: bool = False,
    fused: bool = False,
    dtype: str = "fp32",
) -> dict:
    """Run mem_child in a fresh interpreter. limit_gb caps the child's address space (RLIMIT_AS) so
    that a forward that does not fit fails with an allocation error instead of waking the OOM killer."""
    code = (
        f"import sys, json, resource; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        + (
            f"resource.setrlimit(resource.RLIMIT_AS, ({int(limit_gb * 2**30)}, {int(limit_gb * 2**30)}))\n"
            if limit_gb
            else ""
        )
        + "import _common\n"
        + "try:\n"
        + f"    r = _common.mem_child({impl!r}, {size}, {attn!r}, {threads}, {keep_memory}, {fused}, {dtype!r})\n"
        + "except (RuntimeError, MemoryError) as e:\n"
        + f"    r = {{'impl': {impl!r}, 'attn': {attn!r}, 'size': {size}, 'ok': False, 'error': type(e).__name__ + ': ' + str(e).splitlines()[0][:160],\n"  # noqa: E501 (one line of the child program)
        + "         'peak_rss_gb': _common._rss_now_kb('VmHWM') / 2**20}\n"
        + "print('RESULT ' + json.dumps(r), flush=True)\n"
    )
    cmd = [sys.executable, "-c", code]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "attn": attn, "size": size, "ok": False, "error": f"timeout after {timeout}s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {
        "impl": impl,
        "attn": attn,
        "size": size,
        "ok": False,
        "error": f"child exited {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1][:200]}",
    }


def mem_row(r: dict) -> str:
    name = r["impl"] + ("" if r["impl"] == "official" else f" attn={r['attn']}")
    if r.get("ok"):
        return (
            f"| {name:<18} | {r['size']:>5} | {r['rss_after_build_gb']:6.2f} | {r['peak_rss_gb']:6.2f} | "
            f"{r['seconds']:8.1f} |"
        )
    peak = r.get("peak_rss_gb")
    return f"| {name:<18} | {r['size']:>5} | {'-':>6} | {(f'{peak:.2f}' if peak else '-'):>6} | {'-':>8} | FAILED: {r['error']}"  # noqa: E501 (a table row)


MEM_HEADER = (
    "| model              |  px   | build  | peak   | fwd (s)  |\n"
    "|--------------------|-------|--------|--------|----------|"
)


def mem_cli(argv: list[str]) -> None:
    """`python _common.py IMPL SIZE [ATTN [THREADS [OPTIONS]]]`: one measurement, printed as a table
    row (for the long 4096 px runs in the background). OPTIONS, comma-separated: `keep` applies
    basam.keep_freed_memory(), `fused` basam.use_fused_attention(), `bf16` or `int8` the dtype."""
    impl, size = argv[0], int(argv[1])
    attn = argv[2] if len(argv) > 2 else "sam"
    options = argv[4].split(",") if len(argv) > 4 else []
    r = peak_rss_subprocess(
        impl,
        size,
        attn,
        threads=int(argv[3]) if len(argv) > 3 else 2,
        keep_memory="keep" in options,
        fused="fused" in options,
        dtype=next((o for o in options if o in ("bf16", "int8")), "fp32"),
    )
    print(MEM_HEADER)
    print(mem_row(r), flush=True)
    print(json.dumps(r))


if __name__ == "__main__":
    mem_cli(sys.argv[1:])
