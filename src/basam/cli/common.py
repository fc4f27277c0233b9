"""The flags shared by the commands and the helpers they share (reading an image, the overlay)."""

from __future__ import annotations

import argparse

from basam import load_model, use_fused_attention
from basam.config import AttentionConfig
from basam.inference.transforms import AUTO_MAX_SIDE


def add_model_arguments(p: argparse.ArgumentParser, default_model: str = "default", dtype: bool = True) -> None:
    """The flags every command that loads a model shares (--dtype only for inference)."""
    p.add_argument(
        "--model",
        default=default_model,
        help="vit_b | vit_l | vit_h | vit_t (MobileSAM) | hq_vit_b | hq_vit_l | hq_vit_h | hq_vit_tiny "
        "(HQ-SAM) | tiny | default (embedded) | sam2.1_hiera_t|s|b+|l | sam2_hiera_t|s|b+|l "
        "(SAM 2); an HQ-SAM checkpoint is recognised under its SAM size",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="official .pth (SAM, MobileSAM, HQ-SAM) or .pt (SAM 2), safetensors or basam export",
    )
    p.add_argument(
        "--attn", default=None, help="sam | nsf | bm | basam | official (default: the checkpoint's, else sam)"
    )
    for f in AttentionConfig.override_fields():
        # --windows takes a comma-separated list in `basam sweep`; AttentionConfig checks every value
        choices = AttentionConfig.CHOICES.get(f.name) if f.name != "windows" else None
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=float if f.type == "float" else None,
            choices=choices,
            help=f"override: {f.metadata['flag']}",
        )
    p.add_argument("--device", default="cpu")
    if dtype:
        p.add_argument(
            "--dtype",
            default="fp32",
            choices=("fp32", "bf16", "int8", "auto"),
            help="image encoder precision (auto: the fastest this CPU runs natively within mask IoU 0.99)",
        )
        p.add_argument(
            "--fused-attention",
            action="store_true",
            help="CPU attention through basam's C++ kernel, compiled on first use (needs a C++ "
            "compiler and ninja; see docs/speed.md)",
        )


def add_hq_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hq-token-only",
        action="store_true",
        help="HQ-SAM models: the HQ token's mask alone (default: SAM's mask + the HQ mask, as the release)",
    )


def check_hq_option(args: argparse.Namespace, *models) -> None:
    """--hq-token-only needs at least one HQ-SAM model among those a command loaded."""
    if getattr(args, "hq_token_only", False) and not any(m.is_hq for m in models):
        names = ", ".join(m.cfg.name for m in models)
        raise ValueError(f"--hq-token-only needs an HQ-SAM model (hq_vit_b, …, or an HQ-SAM checkpoint); got {names}")


def attention_overrides(args: argparse.Namespace) -> dict:
    """The attention fields given on the command line, as AttentionConfig keyword arguments."""
    names = [f.name for f in AttentionConfig.override_fields()]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_progress_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_resolution_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resolution",
        default=None,
        help="N (long side resized to N, padded; default: the model's own, 1024 for SAM, square for "
        "SAM 2) | native | auto (smaller images resized up to the pretraining side, larger ones "
        "native with scaled windows) | square (stretched to the pretraining side, as SAM 2)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=AUTO_MAX_SIDE,
        help="auto: largest long side (px); larger images are resized down to it",
    )


def load_model_from_args(args: argparse.Namespace, attn: str | None = None):
    if getattr(args, "fused_attention", False):
        use_fused_attention()
    return load_model(
        args.model,
        checkpoint=args.checkpoint,
        attn=attn or args.attn,
        device=args.device,
        dtype=getattr(args, "dtype", "fp32"),
        **attention_overrides(args),
    )


def overlay(image, mask, color=(255, 64, 32), alpha=0.5):
    """(H, W, 3) uint8 image with the (H, W) bool mask tinted and outlined."""
    import numpy as np
    from scipy import ndimage

    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float32)
    edge = mask & ~ndimage.binary_erosion(mask, iterations=max(1, min(mask.shape) // 256))
    out[edge] = color
    return out.astype(np.uint8)


def parse_floats(text: str, flag: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise ValueError(f"{flag} {text!r}: expected {' or '.join(str(c) for c in counts)} comma-separated numbers")
    return values


def read_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise ValueError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
