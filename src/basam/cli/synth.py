"""`basam synth`: render the synthetic multi-resolution benchmark to a folder."""

from __future__ import annotations

import argparse

from basam.data.synth import FAMILIES, write_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `basam synth`."""
    parser.add_argument("--out", required=True, help="output folder (images/, masks/, synth.json)")
    parser.add_argument("--n", type=int, default=10, help="scenes per family")
    parser.add_argument("--size", default="random", help="S (square), HxW, or random (96..2048 px, varied aspect)")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", help="train | val | test: disjoint scene sets")


def run(args: argparse.Namespace) -> int:
    text = str(args.size).lower().strip()
    try:
        size = None if text == "random" else tuple(int(v) for v in text.split("x")) if "x" in text else int(text)
    except ValueError:
        raise ValueError(f"--size {args.size!r}: expected S, HxW or random") from None
    out = write_benchmark(args.out, args.n, size, args.families, args.seed, args.split)
    fams = [f for f in str(args.families).split(",") if f.strip()]
    print(f"wrote {args.n * len(fams)} image/mask pairs ({args.split}, {', '.join(fams)}) to {out}")
    return 0
