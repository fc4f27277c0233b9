"""The CUDA check: basam against the official segment_anything on a GPU, at 1024 and 4096 px.

    python benchmarks/gpu_check.py [--models vit_b,vit_h] [--repeats 3] [--no-compile] [--skip-4096]

Without a CUDA device it prints one line saying it is skipped and exits 0. On CUDA, for each model
(random weights with non-zero rel-pos tables and pos_embed, the official Sam and basam's carrying
the same state dict):

1. 1024 px agreement: image embeddings fp32 against the official fp32 (max abs difference, bound
   1e-4), and box-prompt masks (low-res logits upsampled to 1024, threshold 0) of basam with bf16
   weights against the official fp32 masks (mean IoU, bound 0.99);
2. 4096 px: basam's encoder (vit_b) in bf16 at 4096 px, its peak CUDA memory against the size one
   heads×N×N fp32 score matrix of a global block would take (N = 65,536 tokens): attention runs in
   query chunks, each chunk's scores with its rel-pos term and BA-SAM bias added per tile
   (basam.modeling.attention.attend), so no N×N matrix is ever held;
3. timing at 1024 px in one process, alternating: official fp32, official under bf16 autocast,
   basam fp32 and bf16, and (unless --no-compile) basam fp32 and bf16 through torch.compile; the
   median of `--repeats` rounds and each one's speed-up over official fp32.

Exits 1 if an agreement bound is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def models(model_type: str, device: torch.device):
    """(official Sam, basam fp32 Sam, basam bf16 Sam) with the same random weights, on `device`."""
    import basam
    from basam.config import MODEL_CONFIGS
    from basam.runtime.precision import set_precision
    from official import official_sam, randomize

    official = randomize(official_sam(MODEL_CONFIGS[model_type]), std=0.02).to(device).eval()
    ours, ours_bf16 = (basam.load_model(model_type) for _ in range(2))
    for m in (ours, ours_bf16):
        m.load_state_dict(official.state_dict())
        m.to(device).eval()
    set_precision(ours_bf16, "bf16")
    return official, ours, ours_bf16


def box_masks(low_res: torch.Tensor) -> torch.Tensor:
    """(B, 1, 256, 256) low-res logits → (B, 1024, 1024) bool masks."""
    up = torch.nn.functional.interpolate(low_res.float(), (1024, 1024), mode="bilinear", align_corners=False)
    return up[:, 0] > 0


def official_low_res(sam, embedding: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
    return sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, False)[0]


def agreement(model_type: str, device: torch.device) -> bool:
    official, ours, ours_bf16 = models(model_type, device)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(1, 3, 1024, 1024, generator=g).to(device)
    boxes = torch.tensor(
        [[100, 120, 600, 700], [300, 300, 900, 800], [0, 0, 1023, 1023]], device=device, dtype=torch.float32
    )
    with torch.no_grad():
        reference = official.image_encoder(x)
        fp32 = ours.image_encoder(x)
        bf16 = ours_bf16.image_encoder(x)
        diff = (fp32 - reference).abs().max().item()
        expected = box_masks(official_low_res(official, reference, boxes))
        got = box_masks(ours_bf16.decode(bf16.float(), (1024, 1024), boxes=boxes)[0])
    inter, union = (expected & got).flatten(1).sum(1).float(), (expected | got).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0).mean().item()
    ok = diff <= 1e-4 and iou >= 0.99
    print(
        f"{model_type} 1024 px: fp32 embeddings max |diff| {diff:.2e} (bound 1e-4); bf16 box masks mean IoU "
        f"{iou:.4f} vs official fp32 (bound 0.99): {'ok' if ok else 'FAILED'}",
        flush=True,
    )
    return ok


def large(device: torch.device, size: int = 4096) -> None:
    _, _, ours_bf16 = models("vit_b", device)
    encoder = ours_bf16.image_encoder
    n = (size // 16) ** 2
    score_bytes = encoder.blocks[0].attn.num_heads * n * n * 4
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.randn(1, 3, size, size, device=device)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = encoder(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    print(
        f"vit_b bf16 {size} px: {tuple(out.shape)} in {time.perf_counter() - start:.1f} s, peak CUDA memory "
        f"{peak / 2**30:.2f} GiB; one heads×N×N fp32 score matrix would be {score_bytes / 2**30:.0f} GiB",
        flush=True,
    )


def timing(model_type: str, device: torch.device, repeats: int, compile_too: bool) -> None:
    official, ours, ours_bf16 = models(model_type, device)
    x = torch.randn(1, 3, 1024, 1024, device=device)

    def official_bf16(image):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return official.image_encoder(image)

    candidates = {
        "official fp32": official.image_encoder,
        "official bf16 autocast": official_bf16,
        "basam fp32": ours.image_encoder,
        "basam bf16": ours_bf16.image_encoder,
    }
    if compile_too:
        candidates["basam fp32 compiled"] = torch.compile(ours.image_encoder)
        candidates["basam bf16 compiled"] = torch.compile(ours_bf16.image_encoder)
    times = {name: [] for name in candidates}
    with torch.no_grad():
        for fn in candidates.values():  # warm-up, compilation included
            fn(x)
        for r in range(repeats):
            names = list(candidates)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                torch.cuda.synchronize(device)
                start = time.perf_counter()
                candidates[name](x)
                torch.cuda.synchronize(device)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["official fp32"])
    for name, t in times.items():
        print(
            f"  {model_type} 1024 px {name:22s} {statistics.median(t) * 1e3:8.1f} ms  "
            f"{base / statistics.median(t):5.2f}× official fp32",
            flush=True,
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vit_b,vit_h")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--skip-4096", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu_check: skipped: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda})")
        return 0
    device = torch.device("cuda")
    print(
        f"gpu_check: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
        flush=True,
    )
    ok = all([agreement(m, device) for m in args.models.split(",")])
    if not args.skip_4096:
        large(device)
    for m in args.models.split(","):
        timing(m, device, args.repeats, not args.no_compile)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
