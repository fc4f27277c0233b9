"""What `basam serve` answers in: encode and decode times as the page shows them, per sample and
resolution, with the embedded default model, through the HTTP API in-process.

    OMP_NUM_THREADS=2 python benchmarks/bench_serve.py [--repeats 5] [--threads 2]

Each repeat starts an empty cache (a fresh Engine over the same model): the first click pays the
encode, the second is answered from the cache. "click" is the whole request as the page sees it
(JSON in, decode, mask PNG + COCO RLE out), median over the repeats. Then "segment everything"
with the page's defaults (the generator encodes the image itself, so its time includes one encode).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (puts src/ on the path)
import torch
from starlette.testclient import TestClient

import basam
from basam.serve.app import create_app
from basam.serve.engine import Engine
from basam.serve.samples import SAMPLES

RESOLUTIONS = ("256", "512", "1024", "native")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = basam.load_model("default")
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
          f"model {model.cfg.name}, median of {args.repeats}")
    print("| sample | resolution | model input | encode (ms) | decode (ms) | click, cached (ms) |")
    print("|---|---|---|---|---|---|")
    for name in SAMPLES:
        for resolution in RESOLUTIONS:
            encode, decode, click = [], [], []
            for _ in range(args.repeats):
                with TestClient(create_app(Engine(model))) as client:
                    image = client.post(f"/api/samples/{name}").json()
                    body = {"image_id": image["image_id"], "resolution": resolution,
                            "points": [[image["width"] / 2, image["height"] / 2]], "labels": [1]}
                    first = client.post("/api/predict", json=body).json()
                    start = time.perf_counter()
                    second = client.post("/api/predict", json=body).json()
                    click.append((time.perf_counter() - start) * 1e3)
                    assert second["cached"]
                    encode.append(first["encode_ms"])
                    decode.append(second["decode_ms"])
            h, w = first["input_size"]
            print(f"| {name} ({image['width']}×{image['height']}) | {resolution} | {w}×{h} | "
                  f"{statistics.median(encode):.0f} | {statistics.median(decode):.0f} | {statistics.median(click):.0f} |")
    print("\n| sample | segment everything, 256 px, 16×16 points (ms) | masks |")
    print("|---|---|---|")
    with TestClient(create_app(Engine(model))) as client:
        for name in SAMPLES:
            image_id = client.post(f"/api/samples/{name}").json()["image_id"]
            runs = [client.post("/api/everything", json={"image_id": image_id, "resolution": "256"}).json()
                    for _ in range(args.repeats)]
            print(f"| {name} | {statistics.median(r['generate_ms'] for r in runs):.0f} | {len(runs[0]['records'])} |")


if __name__ == "__main__":
    main()
