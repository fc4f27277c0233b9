"""Images per second of the image encoder with batching (`--batch-size`, Predictor.encode_images).

    python benchmarks/bench_batch.py [--threads 1] [--repeats 3] [--skip-vit-b]

Two models: the embedded default model at its 256 px, and vit_b (random weights) at 1024 px. Each
candidate encodes the same images (`--default-images`, `--vit-b-images`) through
`Predictor.encode_images(images, batch_size=k)`, so each counts preprocessing and encoder forwards
as `basam eval --batch-size k` does. The candidates alternate in one process, `--repeats` rounds;
the speed-up of batch k is the median over rounds of time(batch 1) / time(batch k), min–max in
brackets. The largest difference of each batch's embeddings from batch 1's is printed too.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import _common as C


def images(n: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def measure(name: str, predictor, size: int, batches: list[int], n_images: int, repeats: int) -> None:
    batch = images(n_images, size)
    candidates = {f"batch {k}": (lambda k=k: predictor.encode_images(batch, batch_size=k)) for k in batches}
    outputs = {}
    print(f"\n### {name} at {size} px: {len(batch)} images per candidate, {repeats} rounds", flush=True)
    times = C.alternate(candidates, repeats, outputs=outputs)
    print(f"\n| {name}, {size} px | images/s (median) | speed-up vs batch 1 (min–max) | max abs diff vs batch 1 |")
    print("|---|---|---|---|")
    for k in batches:
        label = f"batch {k}"
        diff = max((a.features - b.features).abs().max().item() for a, b in zip(outputs[label], outputs["batch 1"]))
        speedup, lo, hi = C.ratio(times, "batch 1", label)
        print(f"| {label} | {len(batch) / C.med(times[label]):.3g} | {speedup:.2f}× ({lo:.2f}–{hi:.2f}) | {diff:.1e} |",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--default-batches", default="1,2,4,8")
    p.add_argument("--default-images", type=int, default=16, help="images per candidate, default model")
    p.add_argument("--vit-b-batches", default="1,2,4")
    p.add_argument("--vit-b-images", type=int, default=4, help="images per candidate, vit_b")
    p.add_argument("--skip-vit-b", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from basam.runtime.precision import describe_cpu

    print(f"torch {torch.__version__}, cpu {describe_cpu()}")
    default = C.basam.load_model("default")
    measure("default model", C.basam.Predictor(default), 256, [int(k) for k in args.default_batches.split(",")],
            args.default_images, args.repeats)
    if not args.skip_vit_b:
        vit_b = C.basam.load_model("vit_b")
        C.randomise_(vit_b.image_encoder)
        measure("vit_b (random weights)", C.basam.Predictor(vit_b), 1024,
                [int(k) for k in args.vit_b_batches.split(",")], args.vit_b_images, args.repeats)


if __name__ == "__main__":
    main()
