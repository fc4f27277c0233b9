"""Suite `serve`: what `basam serve` answers in, with the embedded default model, through the HTTP
API in-process (starlette's TestClient). Each repeat starts an empty cache (a fresh Engine over
the same model): the first click pays the encode, the second is answered from the cache. "click"
is the whole request as the page sees it (JSON in, decode, mask PNG + COCO RLE out), median over
the repeats. Then "segment everything" with the page's defaults (16×16 points; the generator
encodes the image itself, so its time includes one encode).
Full: every sample at 256, 512, 1024 px and native, 5 repeats. Quick: one sample at 256 px, 1 repeat, 4×4 points.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.record import Result

RESOLUTIONS = ("256", "512", "1024", "native")


def run(result: Result, quick: bool) -> None:
    from starlette.testclient import TestClient

    import basam
    from basam.serve.app import create_app
    from basam.serve.engine import Engine
    from basam.serve.samples import SAMPLES

    repeats = 1 if quick else 5
    samples = list(SAMPLES)[:1] if quick else list(SAMPLES)
    resolutions = RESOLUTIONS[:1] if quick else RESOLUTIONS
    model = basam.load_model("default")
    s = result.section(
        "clicks",
        f"The page's latency per sample and resolution (median of {repeats})",
        ["sample", "resolution", "model input", "encode (ms)", "decode (ms)", "click, cached (ms)"],
    )
    for name in samples:
        for resolution in resolutions:
            encode, decode, click = [], [], []
            for _ in range(repeats):
                with TestClient(create_app(Engine(model))) as client:
                    image = client.post(f"/api/samples/{name}").json()
                    body = {
                        "image_id": image["image_id"],
                        "resolution": resolution,
                        "points": [[image["width"] / 2, image["height"] / 2]],
                        "labels": [1],
                    }
                    first = client.post("/api/predict", json=body).json()
                    start = time.perf_counter()
                    second = client.post("/api/predict", json=body).json()
                    click.append((time.perf_counter() - start) * 1e3)
                    if not second["cached"]:
                        raise RuntimeError("the second click was not answered from the cache")
                    encode.append(first["encode_ms"])
                    decode.append(second["decode_ms"])
            h, w = first["input_size"]
            figures = {
                "encode_ms": statistics.median(encode),
                "decode_ms": statistics.median(decode),
                "click_ms": statistics.median(click),
            }
            s.row(
                f"{name} ({image['width']}×{image['height']})",
                resolution,
                f"{w}×{h}",
                *(f"{v:.0f}" for v in figures.values()),
            )
            for key, value in figures.items():
                result.figure(s, f"{name.replace(' ', '_')}_{resolution}_{key}", value)
    points = 4 if quick else 16
    e = result.section(
        "everything",
        f"Segment everything on the page: 256 px, {points}×{points} points (median of {repeats})",
        ["sample", "time (ms)", "masks"],
    )
    with TestClient(create_app(Engine(model))) as client:
        for name in samples:
            image_id = client.post(f"/api/samples/{name}").json()["image_id"]
            runs = [
                client.post(
                    "/api/everything", json={"image_id": image_id, "resolution": "256", "points_per_side": points}
                ).json()
                for _ in range(repeats)
            ]
            ms = statistics.median(r["generate_ms"] for r in runs)
            e.row(name, f"{ms:.0f}", len(runs[0]["records"]))
            result.figure(e, f"{name.replace(' ', '_')}_generate_ms", ms)
