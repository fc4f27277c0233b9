"""Benchmark: the cost of scaled windows against fixed ones.

    python benchmarks/bench_windows.py [--threads 2] [--cases vit_b@2048,default@1024,default@2048]

Each case is one image-encoder forward under no_grad in a fresh interpreter (so peak RSS is that
forward's), first with the trained windows ("fixed"), then with windows grown with the image
("scaled": vit_b 14 → 28 tokens at 2048 px; the default model 8 → 32 at 1024 px, 64 at 2048 px).
Prints seconds, peak RSS and the scaled/fixed ratios of one run. vit_b has random weights (the
cost does not depend on them); the default model is the embedded one. The cases at 2048 px are
also what the `auto` policy costs at its default cap (--max-side 2048).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(model_type: str, size: int, windows: str, threads: int) -> dict:
    """One forward; runs in the fresh interpreter."""
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    import basam

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = basam.load_model(model_type).image_encoder.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    window = encoder.window_for((size // 16, size // 16), windows)
    start = time.perf_counter()
    with torch.no_grad():
        y = encoder(x, windows=windows)
    seconds = time.perf_counter() - start
    return {"model": model_type, "size": size, "windows": windows, "window": window, "seconds": seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "finite": bool(torch.isfinite(y).all()), "cpu": torch.backends.cpu.get_cpu_capability()}


def measure(model_type: str, size: int, windows: str, threads: int) -> dict:
    code = f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_windows as b; " \
           f"print('RESULT ' + json.dumps(b.child({model_type!r}, {size}, {windows!r}, {threads})))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"{model_type} @ {size} {windows}: child exited {p.returncode}: {p.stderr.strip()[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="vit_b@2048,default@1024,default@2048")
    args = parser.parse_args()
    print("| model | px | windows | window (tokens) | seconds | peak RSS (GB) |\n|---|---|---|---|---|---|", flush=True)
    ratios = []
    for case in args.cases.split(","):
        model_type, size = case.split("@")
        runs = {w: measure(model_type, int(size), w, args.threads) for w in ("fixed", "scaled")}
        for r in runs.values():
            print(f"| {r['model']} | {r['size']} | {r['windows']} | {r['window']} | {r['seconds']:.1f} | "
                  f"{r['peak_rss_gb']:.2f} |", flush=True)
        ratios.append(f"{model_type} @ {size} px, scaled / fixed: time {runs['scaled']['seconds'] / runs['fixed']['seconds']:.2f}×, "
                      f"peak RSS {runs['scaled']['peak_rss_gb'] / runs['fixed']['peak_rss_gb']:.2f}×")
    print()
    print("\n".join(ratios))
    print(f"cpu capability {runs['fixed']['cpu']}, {args.threads} threads")


if __name__ == "__main__":
    main()
