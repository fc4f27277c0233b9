"""attend() on one global block at a very large input: this tree's against another revision's.

    python benchmarks/bench_attend.py [--size 4096] [--heads 1] [--attn basam] [--baseline-rev main]
        [--repeats 3] [--threads 1] [--encoder [--blocks N]]

The q, k, v of one vit_b global block (head dim 64; views of one qkv tensor, as the encoder
makes them) and SAM's rel-pos tables on the (size/16)² token grid, random. The baseline is the
package `src/basam` of --baseline-rev (git archive), imported beside this tree's as
`basam_baseline`; the two run in alternation in one process, each with its own rel-pos step. For each call: wall time, system time, minor page faults (getrusage)
and the growth of peak RSS (VmHWM, reset before each call through /proc/self/clear_refs).

--heads 1 is a twelfth of the block's work with the same chunks: a chunk's mask holds
heads × rows × N scores under AttentionConfig.chunk_mb whatever the heads, so a chunk of 1 head has
12× the rows of a 12-head one, the same mask bytes and the same matmul work; there are 12× fewer
chunks. Multiply times and faults by 12 (and by 4 global blocks) for a whole encoder.

--encoder: the whole vit_b encoder (random weights) at --size instead, the baseline's and this
tree's with the same weights; --blocks N keeps only the first N blocks (3: two windowed blocks and
the first global one, whose memory is the encoder's peak), for a peak RSS at 4096 px in minutes.
"""

from __future__ import annotations

import argparse
import importlib
import io
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import _common as C
from basam.modeling.attention import attend
from basam.config import AttentionConfig
from basam.modeling.image_encoder import decomposed_rel_pos


def baseline_package(rev: str):
    """`src/basam` at git revision `rev`, imported as `basam_baseline` (its imports are relative)."""
    folder = Path(tempfile.mkdtemp(prefix="basam_baseline_"))
    archive = subprocess.check_output(["git", "-C", str(C.ROOT), "archive", rev, "src/basam"])
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
    (folder / "src" / "basam").rename(folder / "basam_baseline")
    sys.path.insert(0, str(folder))
    return importlib.import_module("basam_baseline")


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measured(fn) -> dict:
    can_reset = reset_peak_rss()
    rss0 = C._rss_now_kb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak = (C._rss_now_kb("VmHWM") - rss0) / 2**20 if can_reset else float("nan")
    return {"wall": wall, "sys": after.ru_stime - before.ru_stime, "user": after.ru_utime - before.ru_utime,
            "faults": after.ru_minflt - before.ru_minflt, "peak_gb": peak, "out": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--attn", default="basam")
    p.add_argument("--baseline-rev", default="main")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--encoder", action="store_true", help="time the whole vit_b encoder instead")
    p.add_argument("--blocks", type=int, help="--encoder: only its first N blocks")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from basam.runtime.precision import describe_cpu

    grid, d = (args.size // 16, args.size // 16), 64
    baseline = baseline_package(args.baseline_rev)
    if args.encoder:
        ours = C.basam.load_model("vit_b", attn=args.attn).image_encoder.eval()
        C.randomise_(ours)
        theirs = baseline.load_model("vit_b", attn=args.attn).image_encoder.eval()
        theirs.load_state_dict(ours.state_dict())
        if args.blocks:
            ours.blocks, theirs.blocks = ours.blocks[: args.blocks], theirs.blocks[: args.blocks]
        x = C.image(args.size)
        candidates = {"baseline": lambda: theirs(x), "ours": lambda: ours(x)}
        print(f"torch {torch.__version__}, cpu {describe_cpu()}; vit_b encoder at {args.size} px, attn {args.attn}, "
              f"{len(ours.blocks)} blocks; baseline {args.baseline_rev}; RSS with both models built "
              f"{C._rss_now_kb() / 2**20:.2f} GB", flush=True)
    else:
        n = grid[0] * grid[1]
        g = torch.Generator().manual_seed(0)
        qkv = torch.randn(1, n, 3, args.heads, d, generator=g).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        tables = [torch.randn(2 * 64 - 1, d, generator=g) * 0.1 for _ in range(2)]
        cfg = AttentionConfig.from_preset(args.attn)
        modes = [package.attention.BlockAttentionMode(cfg, args.heads, d, True, (64, 64), (64, 64))
                 for package in (baseline, C.basam)]
        scale = modes[0].scale(n)

        def run_baseline():  # its attend takes the whole rel-pos terms, made first
            rel_h, rel_w = baseline.modeling.image_encoder.decomposed_rel_pos(q, grid, *tables)
            return baseline.attention.attend(q, k, v, grid, modes[0], scale, rel_h, rel_w)

        candidates = {"baseline": run_baseline,
                      "ours": lambda: attend(q, k, v, grid, modes[1], scale, decomposed_rel_pos(q, grid, *tables))}
        rows = min(n, modes[1].chunk_bytes // (args.heads * n * 4))
        print(f"torch {torch.__version__}, cpu {describe_cpu()}; {args.size} px grid {grid[0]}×{grid[1]}, {args.heads} "
              f"head(s), attn {args.attn}, {rows} query rows per chunk, {-(-n // rows)} chunks; baseline "
              f"{args.baseline_rev}", flush=True)
    results = {name: [] for name in candidates}
    outputs = {}
    with torch.no_grad():
        for r in range(args.repeats):
            for name in (list(candidates) if r % 2 == 0 else list(candidates)[::-1]):
                m = measured(candidates[name])
                outputs[name] = m.pop("out")
                results[name].append(m)
                print(f"  round {r + 1} {name:>8}: {m['wall']:7.2f} s wall, {m['user']:7.2f} s user, {m['sys']:6.2f} s "
                      f"sys, {m['faults'] / 1e6:6.2f} M minor faults, peak RSS +{m['peak_gb']:.2f} GB", flush=True)
    diff = (outputs["ours"] - outputs["baseline"]).abs().max().item()
    what = f"vit_b encoder, {args.size} px" if args.encoder else f"attend(), {args.size} px, {args.heads} head(s)"
    print(f"\n| {what} | wall (s) | user (s) | sys (s) | minor faults (M) | peak RSS growth (GB) |")
    print("|---|---|---|---|---|---|")
    for name, ms in results.items():
        print(f"| {name} | {C.med([m['wall'] for m in ms]):.2f} | {C.med([m['user'] for m in ms]):.2f} | "
              f"{C.med([m['sys'] for m in ms]):.2f} | {C.med([m['faults'] for m in ms]) / 1e6:.2f} | "
              f"{C.med([m['peak_gb'] for m in ms]):.2f} |")
    for kind, of in (("wall", lambda m: m["wall"]), ("CPU (user + sys)", lambda m: m["user"] + m["sys"])):
        per_round = [of(b) / of(o) for b, o in zip(results["baseline"], results["ours"])]
        print(f"speed-up in {kind} time (baseline/ours, median of rounds): {C.med(per_round):.2f}× "
              f"({min(per_round):.2f}–{max(per_round):.2f})")
    print(f"max abs difference of the outputs {diff:.1e}")


if __name__ == "__main__":
    main()
