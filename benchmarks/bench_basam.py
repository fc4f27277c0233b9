"""Benchmark: the cost of BA-SAM's attention over plain SAM attention.

    .venv/bin/python benchmarks/bench_basam.py [--repeats 3] [--sizes 1024,2048]
        [--mem-sizes 2048,4096] [--attn basam] [--warmup-max 1024] [--skip-speed] [--skip-mem] [--threads 2]

Speed: two vit_b image encoders with the same random weights (non-zero rel-pos tables and
pos_embed), one attn="sam", one attn="basam" (or --attn), run in alternation in one process;
the overhead is the median of the per-round ratios basam/sam − 1 (min–max in brackets).
Memory: peak RSS (ru_maxrss) of one encoder forward under no_grad, each in a fresh interpreter.

Targets: overhead ≤ 5 % at 1024 px; peak RSS of basam within 10 % of sam at 2048 and 4096 px.
"""

from __future__ import annotations

import argparse
import sys

import torch

import _common as C


def speed(args) -> None:
    print(f"\n## 1. Encoder time, attn={args.attn} vs attn=sam (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.repeats} alternating rounds per size)\n", flush=True)
    off = C.official_encoder()
    sam = C.ours_from(off, "sam")
    ba = C.ours_from(off, args.attn)
    rows = []
    for size in args.sizes:
        x = C.image(size)
        outs = {}
        with torch.no_grad():
            if size <= args.warmup_max:  # untimed warm-up round (skipped for large inputs: too slow)
                sam(x), ba(x)
            print(f" {size} px:", flush=True)
            times = C.alternate({"sam": lambda: sam(x), args.attn: lambda: ba(x)}, args.repeats, outputs=outs)
        ys, yb = outs["sam"], outs[args.attn]  # how far BA-SAM moves the embeddings
        r, lo, hi = C.ratio(times, args.attn, "sam")  # basam time / sam time
        per = [b / s - 1 for s, b in zip(times["sam"], times[args.attn])]
        rows.append((size, C.med(times["sam"]), C.med(times[args.attn]), r - 1, min(per), max(per),
                     (ys - yb).abs().max().item()))
    print()
    print(f"| px   | sam median s | {args.attn} median s | overhead (min–max)         | max abs emb diff |")
    print("|------|--------------|-----------------|----------------------------|------------------|")
    for size, ts, tb, ov, lo, hi, d in rows:
        print(f"| {size:<4} | {ts:12.2f} | {tb:15.2f} | {f'{ov * 100:+.1f} % ({lo * 100:+.1f} … {hi * 100:+.1f} %)':<26} | {d:16.3e} |")
    sys.stdout.flush()


def memory(args) -> None:
    print(f"\n## 2. Peak RSS of one encoder forward, attn={args.attn} vs sam (fresh interpreter each)\n", flush=True)
    rows = []
    for size in args.mem_sizes:
        for attn in ("sam", args.attn):
            rows.append(C.peak_rss_subprocess("ours", size, attn, args.threads))
            print("  " + C.mem_row(rows[-1]), flush=True)
    print()
    print(C.MEM_HEADER)
    for r in rows:
        print(C.mem_row(r))
    print()
    for size in args.mem_sizes:
        pair = {r["attn"]: r for r in rows if r["size"] == size and r.get("ok")}
        if len(pair) == 2:
            s, b = pair["sam"]["peak_rss_gb"], pair[args.attn]["peak_rss_gb"]
            print(f"{size} px: {args.attn}/sam peak RSS = {b / s:.3f} ({(b / s - 1) * 100:+.1f} %)")
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="alternating timing rounds per size (default 3)")
    p.add_argument("--sizes", default="1024,2048", help="input sides timed")
    p.add_argument("--mem-sizes", default="2048,4096", help="input sides for the memory runs ('' = none)")
    p.add_argument("--attn", default="basam", help="preset compared with 'sam' (default basam)")
    p.add_argument("--warmup-max", type=int, default=1024, help="untimed warm-up round only up to this size")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-mem", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.mem_sizes = [int(s) for s in args.mem_sizes.split(",") if s]
    torch.set_num_threads(args.threads)
    print(f"# bench_basam  ({' '.join(sys.argv[1:]) or 'defaults'})")
    if not args.skip_speed:
        speed(args)
    if not args.skip_mem:
        memory(args)


if __name__ == "__main__":
    main()
