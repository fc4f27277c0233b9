"""Suite `encoder`: the image encoder's speed against the official SAM code, what BA-SAM's
attention costs, time against input size, FLOPs, batching, the linear layers and the fused
kernel alone, and where bf16/int8 move the masks (suites/precision.py).

Full: vit_b at 1024 px (random weights, non-zero rel-pos tables and pos_embed, the official
ImageEncoderViT's copied strictly into basam's), vit_t beside it, the fused kernel where it builds.
Quick: the 4-block `tiny` architecture at 256 px, two rounds, no fused kernel.
Speeds are ratios measured in one process: candidates alternate, each ratio is the median of the
per-round ratios (min–max in brackets), as bench_encoder.py does.
"""

from __future__ import annotations

import re
import time

import torch

import _common as C
import bench_encoder as E
import flops_encoder
from benchmarks.record import Result, ratio_cell
from benchmarks.suites import encoder_parts, precision
from benchmarks.suites._capture import captured, leading_number, markdown_tables


class Models:
    """The official encoder and basam twins carrying its weights, at the suite's size."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.name, self.size = ("tiny", 256) if quick else ("vit_b", 1024)
        if quick:
            from basam.config import MODEL_CONFIGS
            from official import official_sam  # tests/official.py

            self.official = official_sam(MODEL_CONFIGS["tiny"]).image_encoder.eval()
            C.randomise_(self.official)
        else:
            self.official = C.official_encoder()

    def ours(self, attn: str = "sam", dtype: str = "fp32"):
        from basam.runtime.precision import set_precision

        model = C.basam.load_model(self.name, attn=attn)
        model.image_encoder.load_state_dict(self.official.state_dict(), strict=True)
        set_precision(model, dtype)
        return model.image_encoder.eval()


def speed(result: Result, m: Models, rounds: int, fused: bool) -> None:
    s = result.section(
        "speed",
        f"Encoder speed at {m.size} px: {m.name}, ours against the official code",
        ["encoder", "median s", "speed-up vs official fp32 (min–max)", "max abs diff vs official", "cosine"],
    )
    x = C.image(m.size)
    ours = {"ours fp32": m.ours(), "ours bf16 weights": m.ours(dtype="bf16"), "ours int8": m.ours(dtype="int8")}
    cands = {"official fp32": lambda: E._call(m.official, x)}
    cands.update({name: (lambda e=e: E._call(e, x)) for name, e in ours.items()})
    cands["ours bf16 autocast"] = lambda: E._autocast_call(ours["ours fp32"], x)
    if fused:
        cands["ours fp32 fused"] = lambda: E._fused_call(ours["ours fp32"], x)
        cands["ours bf16 fused"] = lambda: E._fused_call(ours["ours bf16 weights"], x)
    if not m.quick:
        vit_t = {
            "vit_t fp32": C.basam.load_model("vit_t").image_encoder,
            "vit_t bf16 weights": C.basam.load_model("vit_t", dtype="bf16").image_encoder,
        }
        cands.update({name: (lambda e=e: E._call(e, x)) for name, e in vit_t.items()})
    outs = {}
    for fn in cands.values():  # warm-up, untimed
        fn()
    times = C.alternate(cands, rounds, outputs=outs)
    ref = outs["official fp32"]
    s.row("official fp32", f"{C.med(times['official fp32']):.3f}", "1.00", "-", "-")
    for name in cands:
        if name == "official fp32":
            continue
        r = C.ratio(times, "official fp32", name)
        same_weights = not name.startswith("vit_t")
        s.row(
            name,
            f"{C.med(times[name]):.3f}",
            ratio_cell(r),
            f"{E.max_abs(outs[name], ref):.2e}" if same_weights else "-",
            f"{E.cosine(outs[name], ref):.5f}" if same_weights else "-",
        )
        result.figure(s, f"{name.replace(' ', '_')}_vs_official", r[0])
    result.figure(s, "official_fp32_seconds", C.med(times["official fp32"]))
    vit_t = "; vit_t has its own random weights, so only its time compares" if not m.quick else ""
    result.note(
        s,
        f"{rounds} alternating rounds after a warm-up{vit_t}. "
        f"Embedding scale: max |official| = {ref.abs().max().item():.3f}.",
    )


def overhead(result: Result, m: Models, rounds: int) -> None:
    size = 2 * m.size if m.quick else m.size  # tiny at its training size would show no bias at all
    s = result.section(
        "basam_cost",
        f"BA-SAM's attention against plain SAM attention, {m.name} at {size} px",
        ["attn", "median s", "time vs attn=sam (min–max)", "max abs emb diff vs sam"],
    )
    x = C.image(size)
    encoders = {"sam": m.ours("sam"), "basam": m.ours("basam")}
    outs = {}
    for e in encoders.values():
        E._call(e, x)
    times = C.alternate({k: (lambda e=e: E._call(e, x)) for k, e in encoders.items()}, rounds, outputs=outs)
    s.row("sam", f"{C.med(times['sam']):.3f}", "1.00", "-")
    r = C.ratio(times, "basam", "sam")  # basam time / sam time
    s.row("basam", f"{C.med(times['basam']):.3f}", ratio_cell(r), f"{E.max_abs(outs['basam'], outs['sam']):.2e}")
    result.figure(s, "basam_over_sam_time", r[0])


def scaling(result: Result, m: Models, rounds: int) -> None:
    small, large = m.size, 2 * m.size
    s = result.section(
        "scaling",
        f"time({large})/time({small}) of the encoder, {m.name}, fp32",
        ["encoder", f"median s at {small}", f"median s at {large}", "time ratio (min–max)"],
    )
    encoder, x1, x2 = m.ours(), C.image(small), C.image(large)
    times = C.alternate({small: lambda: E._call(encoder, x1), large: lambda: E._call(encoder, x2)}, rounds)
    r = C.ratio(times, large, small)
    s.row(m.name, f"{C.med(times[small]):.3f}", f"{C.med(times[large]):.3f}", ratio_cell(r))
    result.figure(s, f"{m.name}_time_ratio", r[0])
    result.note(s, f"{large}² px has 4× the tokens of {small}² px; a global block's attention grows 16×.")


def flops(result: Result, quick: bool) -> None:
    sizes = "256,512" if quick else "1024,2048,4096"
    text = captured(flops_encoder.main, ["flops_encoder.py", "--sizes", sizes])
    columns, rows = markdown_tables(text)[0]
    s = result.section("flops", "FLOPs of the vit_b encoder by input size (counted on the meta device)", columns)
    for row in rows:
        s.row(*row)
    total = next(i for i, c in enumerate(columns) if "total" in c.lower())
    for row in rows:
        result.figure(s, f"tflop_{int(leading_number(row[0]))}", leading_number(row[total]))
    result.note(
        s,
        f"`python benchmarks/flops_encoder.py --sizes {sizes}`: torch.utils.flop_counter; the ratio of "
        "two sizes is the floor of their time ratio for kernels that run at one FLOP rate.",
    )


def batching(result: Result, quick: bool, rounds: int) -> None:
    import numpy as np

    s = result.section(
        "batch",
        "Images per second with batching (Predictor.encode_images, preprocessing included)",
        ["model", "batch", "images/s (median)", "speed-up vs batch 1 (min–max)", "max abs diff vs batch 1"],
    )
    cases = (
        [("default", 256, 2, [1, 2])] if quick else [("default", 256, 16, [1, 2, 4, 8]), ("vit_b", 1024, 4, [1, 2, 4])]
    )
    rng = np.random.default_rng(0)
    for name, size, n, batches in cases:
        model = C.basam.load_model(name)
        if name != "default":
            C.randomise_(model.image_encoder)
        predictor = C.basam.Predictor(model)
        images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
        outs = {}
        cands = {k: (lambda k=k, p=predictor, ims=images: p.encode_images(ims, batch_size=k)) for k in batches}
        times = C.alternate(cands, rounds, outputs=outs)
        for k in batches:
            diff = max((a.features - b.features).abs().max().item() for a, b in zip(outs[k], outs[1]))
            r = C.ratio(times, 1, k)
            s.row(f"{name} at {size} px", k, f"{n / C.med(times[k]):.3g}", ratio_cell(r), f"{diff:.1e}")
            result.figure(s, f"{name}_batch_{k}_vs_1", r[0])
    result.note(s, f"Random images, {rounds} alternating rounds; vit_b has random weights.")


def bf16_edges(result: Result, quick: bool, rounds: int, fused: bool) -> None:
    """dtype="bf16" keeps the encoder's edges (encoder.boundary_layers: the layer that reads the
    image, the neck that writes the embedding) in fp32; this times that against all-bf16."""
    s = result.section(
        "bf16_edges",
        'What fp32 edges cost dtype="bf16": the shipped bf16 encoder against the same encoder all in bf16',
        ["encoder", "fp32 edges s", "all bf16 s", "time, fp32 edges / all bf16 (min–max)"],
    )
    names, size = (["tiny"], 256) if quick else (["vit_b", "vit_t"], 1024)
    x = C.image(size)
    cands = {}
    for name in names:
        for edges in ("fp32", "bf16"):
            encoder = C.basam.load_model(name, dtype="bf16").image_encoder
            if edges == "bf16":
                for layer in encoder.boundary_layers:
                    layer.to(torch.bfloat16)
            call = E._fused_call if fused else E._call
            cands[f"{name} {edges}"] = lambda e=encoder, call=call: call(e, x)
    for fn in cands.values():
        fn()
    times = C.alternate(cands, rounds)
    for name in names:
        r = C.ratio(times, f"{name} bf16", f"{name} fp32")  # fp32-edges time / all-bf16 time
        s.row(name, f"{C.med(times[f'{name} fp32']):.3f}", f"{C.med(times[f'{name} bf16']):.3f}", ratio_cell(r))
        result.figure(s, f"{name}_fp32_edges_over_all_bf16", r[0])
    result.note(s, f"{size} px, {rounds} alternating rounds, fused kernel {'on' if fused else 'off'}.")


def masks_by_dtype(result: Result, scenes: int = 4) -> None:
    """bench_encoder's mask sections (2a: the trained default model on held-out synthetic scenes;
    2b: a random-weight vit_b Sam with box prompts), their tables as printed."""
    import argparse

    for name, fn, args in (
        ("masks_trained", E.trained_masks, argparse.Namespace(mask_scenes=scenes)),
        ("masks_random_vit_b", E.masks, argparse.Namespace()),
    ):
        text = captured(lambda fn=fn, args=args: fn(args), [])
        title = next(
            re.sub(r"^\d+[a-z]?\.\s*", "", line[3:].strip())  # without bench_encoder's numbering
            for line in text.splitlines()
            if line.startswith("## ")
        )
        for i, (columns, rows) in enumerate(markdown_tables(text)):
            s = result.section(f"{name}_{i}", title, columns)
            for row in rows:
                s.row(*row)
            iou = next((j for j, c in enumerate(columns) if c.lower().startswith("iou")), None)
            for row in rows if iou is not None else ():
                key = "_".join(row[:2]) + "_" + columns[iou]
                result.figure(s, key.replace(" ", "_").lower(), leading_number(row[iou]))


def profile(result: Result, m: Models, rows: int = 8) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    s = result.section(
        "profile",
        f"Where a forward's time goes, {m.name} at {m.size} px, fp32 (torch.profiler)",
        ["encoder", "operator", "calls", "self CPU s", "share"],
    )
    x = C.image(m.size)
    for name, encoder in (("official", m.official), ("ours", m.ours())):
        E._call(encoder, x)
        start = time.perf_counter()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            E._call(encoder, x)
        wall = time.perf_counter() - start
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
            s.row(name, e.key, e.count, f"{e.self_cpu_time_total / 1e6:.3f}", f"{e.self_cpu_time_total / total:.1%}")
        result.figure(s, f"{name}_profiled_seconds", wall)


def run(result: Result, quick: bool) -> None:
    rounds = 2 if quick else 5
    m = Models(quick)
    fused = not quick and C.fused_kernel_builds()
    with torch.no_grad():
        speed(result, m, rounds, fused)
        overhead(result, m, rounds if quick else 3)
        scaling(result, m, 2)
        flops(result, quick)
        batching(result, quick, rounds if quick else 3)
        profile(result, m)
        bf16_edges(result, quick, rounds, fused)
        encoder_parts.linear_layers(result, quick, rounds)
        if fused:
            encoder_parts.kernel(result, rounds)
    precision.run(result, quick)
    if not quick:
        masks_by_dtype(result)
