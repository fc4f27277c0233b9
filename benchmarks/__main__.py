"""`python -m benchmarks SUITE [SUITE ...] [--quick] [--out DIR] [--threads N]`: run suites, write
DIR/SUITE.json (DIR/SUITE-quick.json with --quick) and print each table as it is measured."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.record import ROOT, Result, stamp

SUITES = {
    "encoder": "image encoder: speed against the official code, BA-SAM's cost, linear layers, FLOPs, "
    "batching, and where bf16/int8 move the masks",
    "memory": "peak RSS of one encoder forward at large sizes, ours against the official code; malloc's cost",
    "amg": "segment everything: AutomaticMaskGenerator against the official generator; a large image natively",
    "serve": "the page: encode, decode and click latency through the HTTP API",
    "windows": "scaled windows against fixed ones: time and peak RSS",
    "onnx": "the image encoder in ONNX Runtime against torch",
}


def run_suite(name: str, quick: bool, out: Path, argv: list[str]) -> Path:
    module = importlib.import_module(f"benchmarks.suites.{name}")
    result = Result()
    record = {"suite": name, "quick": quick, "command": "python -m benchmarks " + " ".join(argv), "stamp": stamp()}
    print(
        f"# {name}{' (quick: smoke figures)' if quick else ''} — {record['stamp']['cpu']}, torch "
        f"{record['stamp']['torch']}, basam {record['stamp']['basam_version']}",
        flush=True,
    )
    start = time.perf_counter()
    module.run(result, quick)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["load_average_after"] = stamp()["load_average"]
    record["sections"] = [vars(s) for s in result.sections]
    record["figures"] = result.figures
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {path} ({record['seconds']:.0f} s)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split(":", 1)[0],
        epilog="suites: " + "; ".join(f"{k}: {v}" for k, v in SUITES.items()),
    )
    p.add_argument("suites", nargs="+", metavar="SUITE", help=f"one or more of {', '.join(SUITES)}, or all")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds per suite: smoke figures only")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="folder of the JSON files")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    names = list(SUITES) if args.suites == ["all"] else args.suites
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        p.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)} or all")
    torch.set_num_threads(args.threads)
    for name in names:
        run_suite(name, args.quick, args.out, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
