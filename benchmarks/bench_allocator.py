"""Benchmark: what glibc malloc's page faults cost an encoder forward, ours and the
official SAM code's, and what the opt-in `basam.keep_freed_memory()` saves in time and costs in
peak memory.

    python benchmarks/bench_allocator.py [--size 1024] [--threads 2] [--repeats 3] [--rounds 2]

Each (implementation, allocator) pair runs in a fresh interpreter: build, one warm-up forward,
then `--repeats` timed forwards of vit_b under no_grad (the same random weights as
bench_encoder.py). The four children run in alternation for `--rounds` rounds; the table gives the
median seconds per forward and each child's system time, minor page faults and peak RSS, then the
speed ratios official/ours under each allocator setting, paired per round.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import _rss_now_kb, image, official_encoder, ours_from, resize_official_pos_embed_  # noqa: E402


def child(impl: str, keep: bool, size: int, threads: int, repeats: int) -> dict:
    import basam

    applied = basam.keep_freed_memory() if keep else False
    torch.set_num_threads(threads)
    official = official_encoder()
    if size != 1024:
        resize_official_pos_embed_(official, size // 16)
    encoder = official if impl == "official" else ours_from(official)
    x = image(size)
    with torch.no_grad():
        encoder(x)
        start, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(repeats):
            encoder(x)
        seconds = (time.perf_counter() - t0) / repeats
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {"impl": impl, "keep": keep, "applied": applied, "seconds": seconds,
            "sys_s": (end.ru_stime - start.ru_stime) / repeats, "user_s": (end.ru_utime - start.ru_utime) / repeats,
            "minflt": (end.ru_minflt - start.ru_minflt) / repeats, "peak_gb": _rss_now_kb("VmHWM") / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "KEEP"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        r = child(args.child[0], args.child[1] == "keep", args.size, args.threads, args.repeats)
        print("RESULT " + json.dumps(r))
        return
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), vit_b at {args.size} px, {args.repeats} forwards per child")
    pairs = [(impl, keep) for keep in ("default", "keep") for impl in ("official", "ours")]
    runs = {pair: [] for pair in pairs}
    for r in range(args.rounds):
        for pair in pairs[r % 4:] + pairs[: r % 4]:
            cmd = [sys.executable, __file__, "--size", str(args.size), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--child", *pair]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[pair].append(json.loads(out.split("RESULT ", 1)[1]))
            print(f"  round {r + 1}: {pair[0]:>8} {pair[1]:>7}: {runs[pair][-1]['seconds']:.2f} s", flush=True)
    print("\n| encoder | malloc | s / forward | user s | system s | minor faults | peak RSS GB |")
    print("|---|---|---|---|---|---|---|")
    for impl, keep in pairs:
        rs = runs[(impl, keep)]
        med = {k: statistics.median(r[k] for r in rs) for k in ("seconds", "user_s", "sys_s", "minflt", "peak_gb")}
        name = "glibc default" if keep == "default" else "keep_freed_memory()"
        print(f"| {impl} | {name} | {med['seconds']:.2f} | {med['user_s']:.2f} | {med['sys_s']:.2f} | "
              f"{med['minflt']:,.0f} | {med['peak_gb']:.2f} |")
    print()
    for keep in ("default", "keep"):
        ratios = [o["seconds"] / u["seconds"] for o, u in zip(runs[("official", keep)], runs[("ours", keep)])]
        print(f"official / ours, both {keep}: {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    for impl in ("official", "ours"):
        ratios = [d["seconds"] / k["seconds"] for d, k in zip(runs[(impl, "default")], runs[(impl, "keep")])]
        print(f"{impl}: default / keep_freed_memory(): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
