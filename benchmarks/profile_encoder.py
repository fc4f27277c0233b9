"""Where an encoder forward's time goes: torch.profiler's self CPU time per operator, for ours and
the official SAM code (vit_b, the same random weights), one forward after a warm-up.

    python benchmarks/profile_encoder.py [--size 1024] [--threads 1] [--impl ours,official] [--keep-memory] [--fused]

--keep-memory applies basam.keep_freed_memory() first; --fused turns on basam.use_fused_attention()
for ours (the kernel is not an ATen operator: its time is in the wall time, not in the rows). The rows
are operators with their input shapes (so the rel-pos mask's broadcast add is told apart from the
residual adds), largest first, then the share of the forward each takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from _common import basam, image, official_encoder, ours_from, resize_official_pos_embed_  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--impl", default="ours,official")
    p.add_argument("--rows", type=int, default=14)
    p.add_argument("--keep-memory", action="store_true")
    p.add_argument("--fused", action="store_true")
    args = p.parse_args()
    if args.keep_memory:
        basam.keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), vit_b at {args.size} px, keep_freed_memory: {args.keep_memory}, "
          f"fused attention: {args.fused}")
    official = official_encoder()
    if args.size != 1024:
        resize_official_pos_embed_(official, args.size // 16)
    x = image(args.size)
    for impl in args.impl.split(","):
        encoder = official if impl == "official" else ours_from(official)
        basam.use_fused_attention(args.fused and impl != "official")
        with torch.no_grad():
            encoder(x)
            start = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                encoder(x)
            wall = time.perf_counter() - start
        events = [e for e in prof.key_averages(group_by_input_shape=True) if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        print(f"\n{impl}: {total:.2f} s of self CPU time in operators, {wall:.2f} s wall (profiled)\n")
        print("| operator | input shapes | calls | self CPU s | share |\n|---|---|---|---|---|")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
            shapes = ", ".join(str(list(s)) for s in e.input_shapes if s)
            print(f"| {e.key} | {shapes} | {e.count} | {e.self_cpu_time_total / 1e6:.3f} | "
                  f"{e.self_cpu_time_total / 1e6 / total:.1%} |")


if __name__ == "__main__":
    main()
