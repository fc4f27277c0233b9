"""attend() on one global block at a very large input: this tree's against another revision's.

    python benchmarks/bench_attend.py [--size 4096] [--heads 1] [--attn basam] [--baseline-rev main]
        [--repeats 3] [--threads 1] [--encoder]

The q, k, v of one vit_b global block (head dim 64; views of one qkv tensor, as the encoder
makes them) and SAM's rel-pos terms on the (size/16)² token grid, random. The baseline is
`src/basam/attention.py` of --baseline-rev (git show), loaded beside this tree's; the two run in
alternation in one process. For each call: wall time, system time, minor page faults (getrusage)
and the growth of peak RSS (VmHWM, reset before each call through /proc/self/clear_refs).

--heads 1 is a twelfth of the block's work with the same chunks: a chunk's mask holds
heads × rows × N scores under AttentionConfig.chunk_mb whatever the heads, so a chunk of 1 head has
12× the rows of a 12-head one, the same mask bytes and the same matmul work; there are 12× fewer
chunks. Multiply times and faults by 12 (and by 4 global blocks) for a whole encoder.

--encoder: the whole vit_b encoder (random weights) at --size instead, once with each attend()
(the image encoder module is the same; only the function its blocks call is swapped).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import time

import torch

import _common as C
from basam.attention import BlockAttentionMode, attend
from basam.config import AttentionConfig
from basam.modeling.image_encoder import decomposed_rel_pos


def baseline_attend(rev: str):
    source = subprocess.check_output(["git", "-C", str(C.ROOT), "show", f"{rev}:src/basam/attention.py"])
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("basam._baseline_attention", None))
    module.__package__ = "basam"  # its relative import of .config
    exec(compile(source, f"{rev}:src/basam/attention.py", "exec"), module.__dict__)
    return module.attend


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from basam.precision import describe_cpu

    grid, d = (args.size // 16, args.size // 16), 64
    baseline = baseline_attend(args.baseline_rev)
    if args.encoder:
        import basam.modeling.image_encoder as image_encoder

        encoder = C.basam.load_model("vit_b", attn=args.attn).image_encoder.eval()
        C.randomise_(encoder)
        x = C.image(args.size)

        def with_attend(fn):
            image_encoder.attend = fn
            return encoder(x)

        candidates = {"baseline": lambda: with_attend(baseline), "ours": lambda: with_attend(attend)}
        print(f"torch {torch.__version__}, cpu {describe_cpu()}; vit_b encoder at {args.size} px, attn {args.attn}; "
              f"baseline attend() of {args.baseline_rev}", flush=True)
    else:
        n = grid[0] * grid[1]
        g = torch.Generator().manual_seed(0)
        qkv = torch.randn(1, n, 3, args.heads, d, generator=g).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        tables = [torch.randn(2 * 64 - 1, d, generator=g) * 0.1 for _ in range(2)]
        rel_h, rel_w = decomposed_rel_pos(q, grid, *tables)
        mode = BlockAttentionMode(AttentionConfig.from_preset(args.attn), args.heads, d, True, (64, 64), (64, 64))
        scale = mode.scale(n)
        candidates = {name: (lambda fn=fn: fn(q, k, v, grid, mode, scale, rel_h, rel_w))
                      for name, fn in (("baseline", baseline), ("ours", attend))}
        rows = min(n, mode.chunk_bytes // (args.heads * n * 4))
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
    print(f"\n| {what} | wall (s) | sys (s) | minor faults (M) | peak RSS growth (GB) |")
    print("|---|---|---|---|---|")
    for name, ms in results.items():
        print(f"| {name} | {C.med([m['wall'] for m in ms]):.2f} | {C.med([m['sys'] for m in ms]):.2f} | "
              f"{C.med([m['faults'] for m in ms]) / 1e6:.2f} | {C.med([m['peak_gb'] for m in ms]):.2f} |")
    per_round = [b["wall"] / o["wall"] for b, o in zip(results["baseline"], results["ours"])]
    print(f"\nspeed-up (baseline/ours, median of rounds): {C.med(per_round):.2f}× ({min(per_round):.2f}–"
          f"{max(per_round):.2f}); max abs difference of the outputs {diff:.1e}")


if __name__ == "__main__":
    main()
