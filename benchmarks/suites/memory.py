"""Suite `memory`: peak RSS of one image-encoder forward under no_grad, each in a fresh interpreter
(_common.peak_rss_subprocess), ours (attn=sam and basam) and vit_t against the official code; then
what glibc malloc's page faults cost a forward and what basam.keep_freed_memory() saves in time and
costs in peak memory.

Full: vit_b at 1024, 2048 and 4096 px (the 4096 px forwards take many minutes on 2 cores), the
official code at 1024 and 2048 px with its address space capped at 16 GB so that a forward that does
not fit fails with an allocation error instead of waking the OOM killer (above 1024 px its fixed
64×64 pos_embed is bicubic-resized to the token grid). Quick: 256 px.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import torch

import _common as C
from benchmarks.record import ROOT, Result

FULL = [
    ("ours", 1024, "sam"),
    ("ours", 2048, "sam"),
    ("ours", 2048, "basam"),
    ("ours", 4096, "sam"),
    ("ours", 4096, "basam"),
    ("vit_t", 1024, "sam"),
    ("vit_t", 2048, "sam"),
    ("official", 1024, "sam"),
    ("official", 2048, "sam"),
]
QUICK = [("ours", 256, "basam"), ("official", 256, "sam")]
OFFICIAL_CAP_GB = 16.0


def peak_rss(result: Result, quick: bool, threads: int) -> None:
    s = result.section(
        "peak_rss",
        "Peak RSS of one encoder forward (fresh interpreter each, no_grad, batch 1)",
        ["model", "px", "RSS after build (GB)", "peak RSS (GB)", "forward (s)", "note"],
    )
    for impl, size, attn in QUICK if quick else FULL:
        r = C.peak_rss_subprocess(impl, size, attn, threads, limit_gb=OFFICIAL_CAP_GB if impl == "official" else None)
        name = ("vit_b" if impl == "ours" else impl) + ("" if impl == "official" else f" attn={attn}")
        key = f"{name.replace(' attn=', '_')}_{size}"
        if r.get("ok"):
            s.row(name, size, f"{r['rss_after_build_gb']:.2f}", f"{r['peak_rss_gb']:.2f}", f"{r['seconds']:.1f}", "")
            result.figure(s, f"{key}_peak_gb", r["peak_rss_gb"])
        else:
            peak = r.get("peak_rss_gb")
            s.row(name, size, "-", f"{peak:.2f}" if peak else "-", "-", f"failed: {r['error'][:120]}")
    result.note(
        s,
        "GB = 2³⁰ bytes; peak = VmHWM of the child after the forward. "
        f"The official code runs with its address space capped at {OFFICIAL_CAP_GB:g} GB.",
    )


def allocator_child(impl: str, keep: bool, size: int, threads: int, repeats: int) -> dict:
    """Build, one warm-up forward, then `repeats` timed forwards; runs in a fresh interpreter."""
    import resource
    import time

    applied = C.basam.keep_freed_memory() if keep else False
    torch.set_num_threads(threads)
    if impl == "official":
        encoder = C.official_encoder()
        if size != 1024:
            C.resize_official_pos_embed_(encoder, size // 16)
    else:  # its own random weights: the time does not depend on them, and one model is built, not two
        encoder = C.basam.load_model("vit_b").image_encoder.eval()
        C.randomise_(encoder)
    x = C.image(size)
    with torch.no_grad():
        encoder(x)
        start, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(repeats):
            encoder(x)
        seconds = (time.perf_counter() - t0) / repeats
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "impl": impl,
        "keep": keep,
        "applied": applied,
        "seconds": seconds,
        "sys_s": (end.ru_stime - start.ru_stime) / repeats,
        "minflt": (end.ru_minflt - start.ru_minflt) / repeats,
        "peak_gb": C._rss_now_kb("VmHWM") / 2**20,
    }


def allocator(result: Result, quick: bool, threads: int) -> None:
    size, repeats, rounds = (256, 1, 1) if quick else (1024, 3, 2)
    s = result.section(
        "allocator",
        f"What malloc's page faults cost a vit_b forward at {size} px, and basam.keep_freed_memory()",
        ["encoder", "malloc", "s / forward", "system s", "minor faults", "peak RSS (GB)"],
    )
    impls = ("ours",) if quick else ("official", "ours")  # quick: two fresh interpreters, not four
    pairs = [(impl, keep) for keep in (False, True) for impl in impls]
    runs = {pair: [] for pair in pairs}
    for r in range(rounds):
        for impl, keep in pairs[r % len(pairs) :] + pairs[: r % len(pairs)]:
            code = (
                f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import benchmarks; "
                "from benchmarks.suites.memory import allocator_child; "
                f"print('RESULT ' + json.dumps(allocator_child({impl!r}, {keep}, {size}, {threads}, {repeats})))"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            runs[(impl, keep)].append(json.loads(out.split("RESULT ", 1)[1]))
    for impl, keep in pairs:
        med = {
            k: statistics.median(r[k] for r in runs[(impl, keep)]) for k in ("seconds", "sys_s", "minflt", "peak_gb")
        }
        s.row(
            impl,
            "keep_freed_memory()" if keep else "glibc default",
            f"{med['seconds']:.2f}",
            f"{med['sys_s']:.2f}",
            f"{med['minflt']:,.0f}",
            f"{med['peak_gb']:.2f}",
        )
        result.figure(s, f"{impl}_{'keep' if keep else 'default'}_peak_gb", med["peak_gb"])
    for keep in (False, True) if "official" in impls else ():
        ratios = [o["seconds"] / u["seconds"] for o, u in zip(runs[("official", keep)], runs[("ours", keep)])]
        result.figure(s, f"official_over_ours_time_{'keep' if keep else 'default'}", statistics.median(ratios))
    for impl in impls:
        ratios = [d["seconds"] / k["seconds"] for d, k in zip(runs[(impl, False)], runs[(impl, True)])]
        result.figure(s, f"{impl}_default_over_keep_time", statistics.median(ratios))
    f = result.figures
    versus = ""
    if len(impls) > 1:
        versus = (
            f"official/ours {f['allocator.official_over_ours_time_default']:.2f}× with glibc's default, "
            f"{f['allocator.official_over_ours_time_keep']:.2f}× with keep_freed_memory(); "
        )
    result.note(
        s,
        f"Each (encoder, malloc) pair in a fresh interpreter, {repeats} timed forward(s) after a warm-up, "
        f"{rounds} round(s) in rotation; time ratios paired per round: {versus}"
        f"ours default/keep {f['allocator.ours_default_over_keep_time']:.2f}×.",
    )


def run(result: Result, quick: bool) -> None:
    threads = torch.get_num_threads()
    peak_rss(result, quick, threads)
    allocator(result, quick, threads)
