"""Benchmark (issue "foundation"): basam's vit_b image encoder against the official SAM code.

    .venv/bin/python benchmarks/bench_encoder.py [--repeats 5] [--sizes 1024,2048,4096]
        [--official-sizes 1024,2048] [--compile] [--skip-speed] [--skip-mask] [--skip-mem]
        [--threads 2] [--official-cap-gb 16]

Both encoders carry the same random weights (the official ImageEncoderViT, vit_b settings,
non-zero rel-pos tables and pos_embed, copied strictly into basam's). The machines are shared and
noisy, so speed is reported as ratios measured in one process: the candidates run in alternation,
`--repeats` rounds, and each ratio is the median of the per-round ratios (min–max in brackets).

1. speed at 1024 px: ours fp32, ours under torch.autocast("cpu", bfloat16), optionally ours
   through torch.compile (fp32 and bf16), each against the official fp32 forward; accuracy of
   each against the official fp32 embeddings.
2. masks: a full random-weight vit_b Sam, box prompts, low-res logits upsampled to 1024 and
   thresholded at 0: bf16-autocast masks against fp32 masks (IoU and pixel agreement).
3. memory: peak RSS of one encoder forward under no_grad in a fresh interpreter per size.
   The official encoder has a fixed 64×64 pos_embed: above 1024 px its pos_embed parameter is
   replaced by a bicubic resize (its rel-pos tables are resized by the official code itself), and
   the child's address space is capped (--official-cap-gb) so a forward that does not fit raises
   an allocation error instead of waking the OOM killer.

Targets: fp32 ≥ 1.6× official, bf16 autocast ≥ 2.5× official with mask IoU ≥ 0.99 vs fp32,
vit_b at 2048 px under 3 GB peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch
import torch.nn.functional as F

import _common as C


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def speed(args) -> None:
    print(f"\n## 1. Encoder speed at 1024 px (torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} alternating rounds)\n", flush=True)
    off = C.official_encoder()
    ours = C.ours_from(off)
    x = C.image(1024)
    with torch.no_grad():
        ref = off(x)
        outs = {"ours fp32": ours(x)}
        with bf16():
            outs["ours bf16 autocast"] = ours(x)
    cands = {
        "official fp32": lambda: off(x),
        "ours fp32": lambda: ours(x),
        "ours bf16 autocast": lambda: _autocast_call(ours, x),
    }
    compile_note = ""
    if args.compile:
        try:
            t0 = time.perf_counter()
            compiled = torch.compile(C.ours_from(off))
            with torch.no_grad():
                outs["ours fp32 compiled"] = compiled(x)
            t1 = time.perf_counter()
            with torch.no_grad(), bf16():
                outs["ours bf16 compiled"] = compiled(x)
            t2 = time.perf_counter()
            cands["ours fp32 compiled"] = lambda: _call(compiled, x)
            cands["ours bf16 compiled"] = lambda: _autocast_call(compiled, x)
            compile_note = f"torch.compile warm-up: fp32 {t1 - t0:.0f} s, bf16 {t2 - t1:.0f} s (first calls, not timed)"
        except Exception as e:  # inductor needs a C++ toolchain; skip rather than fail the benchmark
            compile_note = f"torch.compile skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    with torch.no_grad():
        times = C.alternate(cands, args.repeats)
    base = "official fp32"
    print()
    if compile_note:
        print(compile_note + "\n")
    print("| encoder (1024 px)   | median s | speed-up vs official fp32 (min–max) | max abs diff vs official fp32 | cosine  |")
    print("|---------------------|----------|-------------------------------------|-------------------------------|---------|")
    print(f"| {base:<19} | {C.med(times[base]):8.2f} | {'1.00':>35} | {'-':>29} | {'-':>7} |")
    for name in cands:
        if name == base:
            continue
        r, lo, hi = C.ratio(times, base, name)
        print(f"| {name:<19} | {C.med(times[name]):8.2f} | {f'{r:.2f}× ({lo:.2f}–{hi:.2f})':>35} | "
              f"{max_abs(outs[name], ref):29.3e} | {cosine(outs[name], ref):.5f} |")
    print(f"\nembedding scale: max |official fp32| = {ref.abs().max().item():.3f}, std = {ref.std().item():.3f}")
    for name in outs:
        if name != "ours fp32":
            print(f"{name}: max abs diff vs ours fp32 = {max_abs(outs[name], outs['ours fp32']):.3e}")
    sys.stdout.flush()


def _call(m, x):
    with torch.no_grad():
        return m(x)


def _autocast_call(m, x):
    with torch.no_grad(), bf16():
        return m(x)


def synthetic_image(size: int = 1024) -> torch.Tensor:
    """A normalised image with structure (two shapes on a gradient), so prompts have something to cut."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    r = 0.2 + 0.6 * xx
    g = 0.3 + 0.4 * yy
    b = torch.full_like(xx, 0.4)
    disk = ((xx - 0.35) ** 2 + (yy - 0.4) ** 2) < 0.15**2
    rect = (xx > 0.55) & (xx < 0.85) & (yy > 0.55) & (yy < 0.8)
    img = torch.stack([r, g, b])
    img[:, disk] = torch.tensor([0.9, 0.1, 0.1])[:, None]
    img[:, rect] = torch.tensor([0.1, 0.2, 0.9])[:, None]
    img = img + 0.03 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((img - mean) / std)[None]


BOXES = [[200, 250, 520, 570], [560, 560, 880, 830], [100, 100, 900, 900], [400, 50, 700, 300]]


def masks(args) -> None:
    print("\n## 2. Masks: bf16 autocast vs fp32 (full random-weight vit_b Sam, box prompts, 1024 px)\n", flush=True)
    torch.manual_seed(0)
    sam = C.basam.load_model("vit_b")
    sam.image_encoder.load_state_dict(C.official_encoder().state_dict(), strict=True)
    x = synthetic_image()
    boxes = torch.tensor(BOXES, dtype=torch.float32)
    results = {}
    with torch.no_grad():
        for name, enc_ctx, dec_ctx in (("fp32", contextlib.nullcontext, contextlib.nullcontext),
                                       ("bf16 encoder+decoder", bf16, bf16),
                                       ("bf16 encoder only", bf16, contextlib.nullcontext)):
            with enc_ctx():
                emb = sam.image_encoder(x)
            with dec_ctx():
                logits, _ = sam.decode(emb.float(), (1024, 1024), boxes=boxes, multimask_output=False)
            logits = logits.float()
            up = F.interpolate(logits, size=(1024, 1024), mode="bilinear", align_corners=False)
            results[name] = (emb.float(), logits, up)
    e32, l32, u32 = results["fp32"]
    m32 = u32 > 0
    e16 = results["bf16 encoder+decoder"][0]
    print(f"embeddings: max abs diff bf16 vs fp32 = {max_abs(e16, e32):.3e} "
          f"(max |fp32| = {e32.abs().max().item():.3f}), cosine = {cosine(e16, e32):.5f}")
    print(f"fp32 low-res logits: std {l32.std().item():.3e}, max |.| {l32.abs().max().item():.3e}; "
          f"fraction of upsampled pixels with |logit| < 5e-3: {(u32.abs() < 5e-3).float().mean().item():.4f}")
    print("note: random weights make the masks arbitrary and their logits tiny, so many pixels sit at the\n"
          "threshold; IoU and pixel agreement say how far bf16 moves them.\n")
    print("| variant              | box (xyxy)           | fg fp32 | fg bf16 | IoU     | pixels agreeing | max abs logit diff |")
    print("|----------------------|----------------------|---------|---------|---------|-----------------|--------------------|")
    summary = []
    for variant in ("bf16 encoder+decoder", "bf16 encoder only"):
        _, l16, u16 = results[variant]
        m16 = u16 > 0
        ious = []
        for i, box in enumerate(BOXES):
            a, b = m32[i, 0], m16[i, 0]
            union = (a | b).sum().item()
            iou = (a & b).sum().item() / union if union else 1.0
            ious.append(iou)
            agree = (a == b).float().mean().item()
            print(f"| {variant:<20} | {str(box):<20} | {a.float().mean().item():7.3f} | {b.float().mean().item():7.3f} | "
                  f"{iou:.5f} | {agree:15.5f} | {max_abs(l16[i], l32[i]):18.3e} |")
        summary.append(f"{variant}: mask IoU vs fp32 min {min(ious):.5f}, mean {sum(ious) / len(ious):.5f}")
    print("\n" + "\n".join(summary))
    sys.stdout.flush()


def memory(args) -> None:
    print("\n## 3. Peak RSS of one encoder forward (fresh interpreter each, no_grad, batch 1)\n", flush=True)
    print("build = RSS after building the model (baseline); peak = ru_maxrss after the forward (GB = 2^30 B)")
    print("official above 1024 px: pos_embed parameter bicubic-resized to the token grid before the run; "
          f"address space capped at {args.official_cap_gb} GB\n")
    rows = []
    for size in args.sizes:
        rows.append(C.peak_rss_subprocess("ours", size, "sam", args.threads))
        print("  " + C.mem_row(rows[-1]), flush=True)
    for size in args.official_sizes:
        rows.append(C.peak_rss_subprocess("official", size, "sam", args.threads, limit_gb=args.official_cap_gb))
        print("  " + C.mem_row(rows[-1]), flush=True)
    print()
    print(C.MEM_HEADER)
    for r in rows:
        print(C.mem_row(r))
    for size in args.official_sizes:
        n = (size // 16) ** 2
        print(f"official at {size} px: one global block's score tensor is 12×{n}×{n} fp32 = "
              f"{12 * n * n * 4 / 2**30:.1f} GB (the official code holds up to ~3 of them at once)")
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="alternating timing rounds (default 5)")
    p.add_argument("--sizes", default="1024,2048,4096", help="input sides for ours' memory runs")
    p.add_argument("--official-sizes", default="1024,2048", help="input sides for the official memory runs ('' = none)")
    p.add_argument("--official-cap-gb", type=float, default=16.0, help="address-space cap of the official memory child")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd encoders")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-mask", action="store_true")
    p.add_argument("--skip-mem", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.official_sizes = [int(s) for s in args.official_sizes.split(",") if s]
    torch.set_num_threads(args.threads)
    print(f"# bench_encoder  ({' '.join(sys.argv[1:]) or 'defaults'})")
    if not args.skip_speed:
        speed(args)
    if not args.skip_mask:
        masks(args)
    if not args.skip_mem:
        memory(args)


if __name__ == "__main__":
    main()
