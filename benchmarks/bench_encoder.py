"""Benchmark: basam's vit_b image encoder against the official SAM code.

    .venv/bin/python benchmarks/bench_encoder.py [--repeats 5] [--sizes 1024,2048,4096]
        [--official-sizes 1024,2048] [--compile] [--skip-speed] [--skip-mask] [--skip-mem]
        [--threads 2] [--official-cap-gb 16] [--checkpoint FILE --image FILE [--image …] [--model vit_b]]

Both encoders carry the same random weights (the official ImageEncoderViT, vit_b settings,
non-zero rel-pos tables and pos_embed, copied strictly into basam's). The machines are shared and
noisy, so speed is reported as ratios measured in one process: the candidates run in alternation,
`--repeats` rounds, and each ratio is the median of the per-round ratios (min–max in brackets).

1. speed at 1024 px: ours fp32, ours under torch.autocast("cpu", bfloat16), ours with
   load_model's dtype="bf16" (weights cast once) and dtype="int8" (dynamic quantization of the
   linear layers), optionally ours through torch.compile (fp32 and bf16), each against the
   official fp32 forward; accuracy of each against the official fp32 embeddings. Ours fp32 and
   bf16 weights again with basam.use_fused_attention() (the C++ kernel; skipped with its reason if
   it cannot be built). vit_t (MobileSAM's TinyViT, its own random weights) in fp32 and bf16 is
   timed in the same rounds. Then time(2048)/time(1024) for vit_b (fp32, fp32 fused, bf16 fused)
   and vit_t (fp32), --scaling-repeats rounds, alternating.
2. masks: (a) the trained default model on held-out synthetic scenes (box and point prompts,
   through the Predictor): each dtype's masks, with and without the fused kernel, against fp32;
   (b) a full random-weight vit_b Sam, box prompts, low-res logits upsampled to 1024 and
   thresholded at 0: bf16 (autocast, weights cast, weights cast with the fused kernel) and int8
   masks against fp32 masks (IoU and pixel agreement); (c) with --checkpoint and --image, your
   checkpoint on your images: a 4×4 grid of clicks per image, SAM's three masks each, every dtype
   against fp32, then a line per image on how decisive the fp32 logits are.
3. memory: peak RSS of one encoder forward under no_grad in a fresh interpreter per size.
   The official encoder has a fixed 64×64 pos_embed: above 1024 px its pos_embed parameter is
   replaced by a bicubic resize (its rel-pos tables are resized by the official code itself), and
   the child's address space is capped (--official-cap-gb) so a forward that does not fit raises
   an allocation error instead of waking the OOM killer.

Targets: fp32 ≥ 2.0× official, bf16 ≥ 3.5× official with mask IoU ≥ 0.99 vs fp32 where
the CPU has native bf16, time(2048)/time(1024) ≤ 6 for vit_b; vit_b at 2048 px under 3 GB peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import _common as C
from basam.evaluation.metrics import iou_dice


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def speed(args) -> None:
    print(
        f"\n## 1. Encoder speed at 1024 px (torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.repeats} alternating rounds)\n",
        flush=True,
    )
    from basam.runtime.precision import describe_cpu

    print(f"cpu: {describe_cpu()}\n")
    off = C.official_encoder()
    ours = C.ours_from(off)
    ours_bf16 = C.ours_from(off, dtype="bf16")
    ours_int8 = C.ours_from(off, dtype="int8")
    vit_t = C.basam.load_model("vit_t").image_encoder
    vit_t_bf16 = C.basam.load_model("vit_t", dtype="bf16").image_encoder
    x = C.image(1024)
    with torch.no_grad():
        ref = off(x)
        outs = {"ours fp32": ours(x), "ours bf16 weights": ours_bf16(x), "ours int8": ours_int8(x)}
        with bf16():
            outs["ours bf16 autocast"] = ours(x)
    cands = {
        "official fp32": lambda: off(x),
        "ours fp32": lambda: ours(x),
        "ours bf16 autocast": lambda: _autocast_call(ours, x),
        "ours bf16 weights": lambda: ours_bf16(x),
        "ours int8": lambda: ours_int8(x),
        "vit_t fp32": lambda: vit_t(x),
        "vit_t bf16 weights": lambda: vit_t_bf16(x),
    }
    if C.fused_kernel_builds():
        for name, encoder in (("ours fp32 fused", ours), ("ours bf16 fused", ours_bf16)):
            outs[name] = _fused_call(encoder, x)
            cands[name] = lambda e=encoder: _fused_call(e, x)
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
    print(
        "| encoder (1024 px)   | median s | speed-up vs official fp32 (min–max) | max abs diff vs official fp32 | cosine  |"  # noqa: E501 (a table row)
    )
    print(
        "|---------------------|----------|-------------------------------------|-------------------------------|---------|"
    )
    print(f"| {base:<19} | {C.med(times[base]):8.2f} | {'1.00':>35} | {'-':>29} | {'-':>7} |")
    for name in cands:
        if name == base:
            continue
        r, lo, hi = C.ratio(times, base, name)
        diff, cos = (
            (f"{max_abs(outs[name], ref):29.3e}", f"{cosine(outs[name], ref):.5f}") if name in outs else ("-", "-")
        )
        print(
            f"| {name:<19} | {C.med(times[name]):8.2f} | {f'{r:.2f}× ({lo:.2f}–{hi:.2f})':>35} | {diff:>29} | {cos:>7} |"  # noqa: E501 (a table row)
        )
    r, lo, hi = C.ratio(times, "ours fp32", "ours bf16 weights")
    print(
        f"\nbf16 weights cast once vs bf16 autocast: {C.ratio(times, 'ours bf16 autocast', 'ours bf16 weights')[0]:.2f}× "  # noqa: E501 (a table row)
        f"faster; bf16 weights vs ours fp32: {r:.2f}× ({lo:.2f}–{hi:.2f}); "
        f"vit_t fp32 vs ours vit_b fp32: {C.ratio(times, 'ours fp32', 'vit_t fp32')[0]:.2f}×"
    )
    print(f"\nembedding scale: max |official fp32| = {ref.abs().max().item():.3f}, std = {ref.std().item():.3f}")
    for name in outs:
        if name != "ours fp32":
            print(f"{name}: max abs diff vs ours fp32 = {max_abs(outs[name], outs['ours fp32']):.3e}")
    sys.stdout.flush()


def scaling(args) -> None:
    """time(2048)/time(1024): vit_b and vit_t in fp32, vit_b fp32 and bf16 through the fused kernel,
    alternating sizes within each round."""
    from basam.runtime.precision import describe_cpu

    print(
        f"\n## 1b. time(2048)/time(1024) ({args.scaling_repeats} alternating rounds; cpu: {describe_cpu()})\n",
        flush=True,
    )
    official = C.official_encoder()
    encoders = {"vit_b": C.ours_from(official), "vit_t": C.basam.load_model("vit_t").image_encoder}
    x1, x2 = C.image(1024), C.image(2048)
    cands = {
        f"{name} {size}": (lambda e=enc, x=x: _call(e, x))
        for name, enc in encoders.items()
        for size, x in ((1024, x1), (2048, x2))
    }
    names = list(encoders)
    if C.fused_kernel_builds():
        vit_b_bf16 = C.ours_from(official, dtype="bf16")
        for size, x in ((1024, x1), (2048, x2)):
            cands[f"vit_b fused {size}"] = lambda x=x: _fused_call(encoders["vit_b"], x)
            cands[f"vit_b bf16 fused {size}"] = lambda x=x: _fused_call(vit_b_bf16, x)
        names += ["vit_b fused", "vit_b bf16 fused"]
    times = C.alternate(cands, args.scaling_repeats)
    for name in names:
        r, lo, hi = C.ratio(times, f"{name} 2048", f"{name} 1024")
        print(
            f"{name}: time(2048)/time(1024) = {r:.2f} ({lo:.2f}–{hi:.2f}); median {C.med(times[f'{name} 1024']):.1f} s "
            f"and {C.med(times[f'{name} 2048']):.1f} s"
        )
    sys.stdout.flush()


def mask_iou(a, b) -> float:
    return iou_dice(a, b)[0]


def _call(m, x):
    with torch.no_grad():
        return m(x)


def _fused_call(m, x):
    with C.fused_attention():
        return _call(m, x)


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


MASK_VARIANTS = (
    ("fp32", "fp32", False),
    ("fp32 fused", "fp32", True),
    ("bf16", "bf16", False),
    ("bf16 fused", "bf16", True),
    ("int8", "int8", False),
)


def dtype_mask_table(load, scenes, prompts, resolution) -> list:
    """One table row per precision (MASK_VARIANTS): the Predictor's masks for every scene and
    prompt, IoU against the fp32 masks. load(dtype) -> Sam; scenes: RGB uint8 (H, W, 3) arrays;
    prompts(scene index) -> list of Predictor.predict keyword dicts; resolution: the Predictor's
    (None: the model's training size). Returns the fp32 masks' low-res logits, one array per scene."""
    import numpy as np

    fused_builds = C.fused_kernel_builds()
    print("| size | dtype      | masks | IoU min | IoU mean | encoder s (median) |")
    print("|------|------------|-------|---------|----------|--------------------|")
    reference = reference_logits = None
    for label, dtype, fused in MASK_VARIANTS:
        if fused and not fused_builds:
            continue
        masks, logits, seconds = [], [], []
        with C.fused_attention() if fused else contextlib.nullcontext():
            predictor = C.basam.Predictor(load(dtype), resolution=resolution)
            for i, image in enumerate(scenes):
                dt, _ = C.timed(lambda: predictor.set_image(image))
                seconds.append(dt)
                answers = [predictor.predict(**prompt) for prompt in prompts(i)]
                masks.extend(m for answer in answers for m in answer[0])
                logits.append(np.concatenate([answer[2] for answer in answers]))
        if reference is None:
            reference, reference_logits = masks, logits
        ious = [mask_iou(a, b) for a, b in zip(reference, masks)]
        print(
            f"| {predictor.resolution:>4} | {label:<10} | {len(masks):>5} | {min(ious):.4f}  | {np.mean(ious):.4f}   | "
            f"{C.med(seconds):18.3f} |",
            flush=True,
        )
    return reference_logits


def trained_masks(args) -> None:
    """Each dtype against fp32 on the trained default model: box and point prompts through the
    Predictor on held-out synthetic scenes, at the training size and 4× it."""
    import numpy as np

    from basam.data.specs import SynthDataset
    from basam.runtime.precision import describe_cpu

    print(f"\n## 2a. Masks of the trained default model: each dtype vs fp32 (cpu: {describe_cpu()})\n", flush=True)
    for size, n in ((256, args.mask_scenes), (1024, max(1, args.mask_scenes // 4))):
        scenes = [s.load() for s in SynthDataset(("salient", "camouflaged", "thin", "lesion"), n, size)]

        def prompts(i):
            ys, xs = np.nonzero(scenes[i][1])
            return [
                dict(box=np.array([xs.min(), ys.min(), xs.max(), ys.max()]), multimask_output=False),
                dict(point_coords=np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]]), point_labels=np.array([1])),
            ]

        dtype_mask_table(
            lambda dtype: C.basam.load_model("default", dtype=dtype), [image for image, _ in scenes], prompts, size
        )


def checkpoint_masks(args) -> None:
    """Each dtype against fp32 on the user's checkpoint and images: a 4×4 grid of single-point
    prompts, three masks each, at the model's training size (SAM's 1024 px for vit_b/l/h)."""
    import numpy as np

    from basam.data.datasets import read_image
    from basam.runtime.precision import describe_cpu

    scenes = [read_image(path) for path in args.image]
    print(
        f"\n## 2c. Masks of {args.model} from {args.checkpoint} on {len(scenes)} image(s): each dtype vs fp32 "
        f"(cpu: {describe_cpu()})\n",
        flush=True,
    )

    def prompts(i):
        h, w = scenes[i].shape[:2]
        grid = [((x + 0.5) * w / 4, (y + 0.5) * h / 4) for y in range(4) for x in range(4)]
        return [dict(point_coords=np.array([xy]), point_labels=np.array([1])) for xy in grid]

    logits = dtype_mask_table(
        lambda dtype: C.basam.load_model(args.model, checkpoint=args.checkpoint, dtype=dtype), scenes, prompts, None
    )
    print()
    for path, image, scene_logits in zip(args.image, scenes, logits):  # how decisive the fp32 logits are
        print(
            f"{path}: {image.shape[1]}×{image.shape[0]} px, fp32 mask logits: fraction with |logit| < 0.5 "
            f"{(np.abs(scene_logits) < 0.5).mean():.4f}, median |logit| {np.median(np.abs(scene_logits)):.2f} "
            f"(the decoder's low-res logits)"
        )


def masks(args) -> None:
    print("\n## 2b. Masks: bf16 and int8 vs fp32 (full random-weight vit_b Sam, box prompts, 1024 px)\n", flush=True)
    torch.manual_seed(0)
    sam = C.basam.load_model("vit_b")
    official = C.official_encoder()
    sam.image_encoder.load_state_dict(official.state_dict(), strict=True)
    encoders = {"bf16 weights": C.ours_from(official, dtype="bf16"), "int8": C.ours_from(official, dtype="int8")}
    x = synthetic_image()
    boxes = torch.tensor(BOXES, dtype=torch.float32)
    variants = {  # name → (encoder, context of the encoder call, context of the decoder call)
        "fp32": (sam.image_encoder, contextlib.nullcontext, contextlib.nullcontext),
        "bf16 autocast enc+dec": (sam.image_encoder, bf16, bf16),
        "bf16 autocast encoder": (sam.image_encoder, bf16, contextlib.nullcontext),
        "bf16 weights encoder": (encoders["bf16 weights"], contextlib.nullcontext, contextlib.nullcontext),
        "int8 encoder": (encoders["int8"], contextlib.nullcontext, contextlib.nullcontext),
    }
    if C.fused_kernel_builds():
        variants["bf16 weights, fused"] = (encoders["bf16 weights"], C.fused_attention, contextlib.nullcontext)
    results = {}
    with torch.no_grad():
        for name, (encoder, enc_ctx, dec_ctx) in variants.items():
            with enc_ctx():
                emb = encoder(x)
            with dec_ctx():
                logits, _ = sam.decode(emb.float(), (1024, 1024), boxes=boxes, multimask_output=False)
            logits = logits.float()
            up = F.interpolate(logits, size=(1024, 1024), mode="bilinear", align_corners=False)
            results[name] = (emb.float(), logits, up)
    e32, l32, u32 = results["fp32"]
    m32 = u32 > 0
    for name in list(variants)[1:]:
        print(
            f"{name}: embeddings max abs diff vs fp32 = {max_abs(results[name][0], e32):.3e} "
            f"(max |fp32| = {e32.abs().max().item():.3f}), cosine = {cosine(results[name][0], e32):.5f}"
        )
    print(
        f"fp32 low-res logits: std {l32.std().item():.3e}, max |.| {l32.abs().max().item():.3e}; "
        f"fraction of upsampled pixels with |logit| < 5e-3: {(u32.abs() < 5e-3).float().mean().item():.4f}"
    )
    print(
        "note: random weights make the masks arbitrary and their logits tiny, so many pixels sit at the\n"
        "threshold; IoU and pixel agreement say how far each precision moves them.\n"
    )
    print(
        "| variant               | box (xyxy)           | fg fp32 | fg other | IoU     | pixels agreeing | max abs logit diff |"  # noqa: E501 (a table row)
    )
    print(
        "|-----------------------|----------------------|---------|----------|---------|-----------------|--------------------|"
    )
    summary = []
    for variant in list(variants)[1:]:
        _, l16, u16 = results[variant]
        m16 = u16 > 0
        ious = []
        for i, box in enumerate(BOXES):
            a, b = m32[i, 0], m16[i, 0]
            ious.append(mask_iou(a, b))
            agree = (a == b).float().mean().item()
            print(
                f"| {variant:<21} | {str(box):<20} | {a.float().mean().item():7.3f} | {b.float().mean().item():8.3f} | "
                f"{ious[-1]:.5f} | {agree:15.5f} | {max_abs(l16[i], l32[i]):18.3e} |"
            )
        summary.append(f"{variant}: mask IoU vs fp32 min {min(ious):.5f}, mean {sum(ious) / len(ious):.5f}")
    print("\n" + "\n".join(summary))
    sys.stdout.flush()


def memory(args) -> None:
    print("\n## 3. Peak RSS of one encoder forward (fresh interpreter each, no_grad, batch 1)\n", flush=True)
    print("build = RSS after building the model (baseline); peak = VmHWM after the forward (GB = 2^30 B)")
    print(
        "official above 1024 px: pos_embed parameter bicubic-resized to the token grid before the run; "
        f"address space capped at {args.official_cap_gb} GB\n"
    )
    rows = []
    for size in args.sizes:
        rows.append(C.peak_rss_subprocess("ours", size, "sam", args.threads))
        print("  " + C.mem_row(rows[-1]), flush=True)
    for size in args.vit_t_sizes:
        rows.append(C.peak_rss_subprocess("vit_t", size, "sam", args.threads))
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
        print(
            f"official at {size} px: one global block's score tensor is 12×{n}×{n} fp32 = "
            f"{12 * n * n * 4 / 2**30:.1f} GB (the official code holds up to ~3 of them at once)"
        )
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="alternating timing rounds (default 5)")
    p.add_argument("--sizes", default="1024,2048,4096", help="input sides for ours' memory runs")
    p.add_argument("--official-sizes", default="1024,2048", help="input sides for the official memory runs ('' = none)")
    p.add_argument("--vit-t-sizes", default="1024,2048", help="input sides for vit_t's memory runs ('' = none)")
    p.add_argument("--official-cap-gb", type=float, default=16.0, help="address-space cap of the official memory child")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd encoders")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--scaling-repeats", type=int, default=2, help="rounds of the 2048-vs-1024 timing (0 = skip)")
    p.add_argument("--skip-mask", action="store_true")
    p.add_argument("--mask-scenes", type=int, default=4, help="held-out scenes per family for the trained-model masks")
    p.add_argument("--skip-mem", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", help="2c: your checkpoint (e.g. sam_vit_b_01ec64.pth): each dtype's masks vs fp32")
    p.add_argument("--model", default="vit_b", help="2c: the checkpoint's model type (default vit_b)")
    p.add_argument("--image", action="append", default=[], help="2c: an image file (repeatable); needs --checkpoint")
    args = p.parse_args(argv)
    if bool(args.checkpoint) != bool(args.image):
        p.error("--checkpoint and --image go together")
    missing = [path for path in [args.checkpoint, *args.image] if path and not Path(path).is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.official_sizes = [int(s) for s in args.official_sizes.split(",") if s]
    args.vit_t_sizes = [int(s) for s in args.vit_t_sizes.split(",") if s]
    torch.set_num_threads(args.threads)
    print(f"# bench_encoder  ({' '.join(sys.argv[1:]) or 'defaults'})")
    if not args.skip_speed:
        speed(args)
    if args.scaling_repeats:
        scaling(args)
    if not args.skip_mask:
        trained_masks(args)
        masks(args)
    if args.checkpoint:
        try:
            checkpoint_masks(args)
        except (C.basam.CheckpointError, OSError) as e:  # a file that is not a checkpoint or an image
            sys.exit(f"bench_encoder: {e}")
    if not args.skip_mem:
        memory(args)


if __name__ == "__main__":
    main()
