"""Suite `windows`: the cost of scaled windows against fixed ones. Each case is one image-encoder
forward under no_grad in a fresh interpreter (so peak RSS is that forward's), first with the
trained windows ("fixed"), then with windows grown with the image ("scaled": vit_b 14 → 28 tokens
at 2048 px; the default model 8 → 32 at 1024 px, 64 at 2048 px). vit_b has random weights (the
cost does not depend on them); the default model is the embedded one. The cases at 2048 px are
also what the `auto` resolution policy costs at its default cap (--max-side 2048).
Full: vit_b@2048, default@1024, default@2048. Quick: default@512.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from benchmarks.record import ROOT, Result

FULL = [("vit_b", 2048), ("default", 1024), ("default", 2048)]
QUICK = [("default", 512)]


def child(model_type: str, size: int, windows: str, threads: int) -> dict:
    """One forward; runs in the fresh interpreter."""
    import resource
    import time

    import basam

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = basam.load_model(model_type).image_encoder.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    window = encoder.window_for((size // 16, size // 16), windows)
    start = time.perf_counter()
    with torch.no_grad():
        y = encoder(x, windows=windows)
    return {
        "window": window,
        "seconds": time.perf_counter() - start,
        "finite": bool(torch.isfinite(y).all()),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure(model_type: str, size: int, windows: str, threads: int) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import benchmarks; "
        "from benchmarks.suites.windows import child; "
        f"print('RESULT ' + json.dumps(child({model_type!r}, {size}, {windows!r}, {threads})))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{model_type} @ {size} {windows}: child exited {p.returncode}: {p.stderr.strip()[-300:]}")


def run(result: Result, quick: bool) -> None:
    threads = torch.get_num_threads()
    s = result.section(
        "windows",
        "Scaled windows against fixed ones: one encoder forward in a fresh interpreter",
        ["model", "px", "windows", "window (tokens)", "seconds", "peak RSS (GB)"],
    )
    ratios = []
    for model_type, size in QUICK if quick else FULL:
        runs = {w: measure(model_type, size, w, threads) for w in ("fixed", "scaled")}
        for w, r in runs.items():
            s.row(model_type, size, w, r["window"], f"{r['seconds']:.1f}", f"{r['peak_rss_gb']:.2f}")
        key = f"{model_type}_{size}"
        time_ratio = runs["scaled"]["seconds"] / runs["fixed"]["seconds"]
        rss_ratio = runs["scaled"]["peak_rss_gb"] / runs["fixed"]["peak_rss_gb"]
        result.figure(s, f"{key}_scaled_over_fixed_time", time_ratio)
        result.figure(s, f"{key}_scaled_over_fixed_peak_rss", rss_ratio)
        ratios.append(f"{model_type} at {size} px, scaled/fixed: time {time_ratio:.2f}×, peak RSS {rss_ratio:.2f}×")
    result.note(s, "; ".join(ratios) + " (one run each, so the time ratios carry the machine's noise).")
