"""Benchmark: the image encoder in ONNX Runtime vs in torch, on this CPU.

    .venv/bin/python benchmarks/bench_onnx.py [--model vit_b] [--resolution 1024] [--attn sam]
        [--repeats 3] [--threads 1] [--chunk-mb 256,100000]

One model (random weights for vit_*, the embedded weights for `default`), exported once per
--chunk-mb value (the attention's query-chunk budget, baked into the graph: 256 is basam's default,
a large value means one chunk per attention call), then torch and each ONNX Runtime session run in
alternation, `--repeats` rounds after an untimed warm-up. Reported: median seconds, and the speed-up
torch/ORT as the median of per-round ratios (min–max), with the largest embedding difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import basam
from basam.formats.onnx import export_onnx, parse_size


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_b")
    p.add_argument("--resolution", default="1024")
    p.add_argument("--attn", default="sam")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk-mb", default="256,100000", help="comma-separated chunk budgets to export")
    args = p.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    input_hw = parse_size(args.resolution)
    budgets = [float(c) for c in args.chunk_mb.split(",")]
    torch.manual_seed(0)
    model = basam.load_model(args.model, attn=args.attn)
    print(f"# ONNX Runtime {ort.__version__} vs torch {torch.__version__}: {args.model} encoder, attn={args.attn}, "
          f"{input_hw[0]}x{input_hw[1]} px, {args.threads} thread(s), cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    candidates, outputs = {}, {}
    image = torch.randn(1, 3, *input_hw)
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            model.set_attention(basam.AttentionConfig.from_dict({**model.attn_cfg.to_dict(), "chunk_mb": budget}))
            start = time.perf_counter()
            paths = export_onnx(model, Path(tmp) / f"chunk{budget:g}", input_hw)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(paths["encoder"]), options, providers=["CPUExecutionProvider"])
            print(f"exported chunk_mb={budget:g} in {time.perf_counter() - start:.0f} s", flush=True)
            candidates[f"ort chunk_mb={budget:g}"] = lambda s=session: torch.from_numpy(s.run(None, {"image": image.numpy()})[0])
        model.set_attention(basam.AttentionConfig.from_dict({**model.attn_cfg.to_dict(), "chunk_mb": 256.0}))
        with torch.no_grad():
            candidates = {"torch": lambda: model.image_encoder(image), **candidates}
            for fn in candidates.values():  # warm-up
                fn()
            times = {name: [] for name in candidates}
            for r in range(args.repeats):
                for name in list(candidates)[r % len(candidates):] + list(candidates)[: r % len(candidates)]:
                    start = time.perf_counter()
                    outputs[name] = candidates[name]()
                    times[name].append(time.perf_counter() - start)
                print(f"  round {r + 1}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    print(f"\n| {args.model} {input_hw[0]}x{input_hw[1]} | median s | speed-up vs torch (min–max) | max abs diff vs torch |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        per_round = [t / o for t, o in zip(times["torch"], ts)]
        diff = (outputs[name] - outputs["torch"]).abs().max().item()
        print(f"| {name} | {statistics.median(ts):.2f} | {statistics.median(per_round):.2f}× "
              f"({min(per_round):.2f}–{max(per_round):.2f}) | {diff:.1e} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
