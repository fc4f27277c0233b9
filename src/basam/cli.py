"""`basam <command>`: each command lives in the module that does the work, which provides
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches and turns user errors
into one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .kernels import KernelBuildError

# name → (module, attribute prefix, one-line help)
COMMANDS = {
    "predict": ("basam.cli", "predict", "segment one image from points/boxes (or no prompt)"),
    "amg": ("basam.amg_cli", "", "segment everything: every object's mask in an image or a folder"),
    "eval": ("basam.evaluate", "eval", "evaluate on a dataset with the standard metrics"),
    "sweep": ("basam.sweep", "", "evaluate presets × windows × resolutions × prompts; table, CSV and plot"),
    "synth": ("basam.data.synth", "", "render the synthetic multi-resolution benchmark"),
    "train": ("basam.train", "", "fine-tune (one machine or many through torchrun)"),
    "demo": ("basam.demo", "", "the offline demo: BA-SAM vs SAM across resolutions on the embedded model"),
    "export-onnx": ("basam.export.onnx", "", "export the encoder at one input size and the prompt decoder to ONNX"),
    "export-hf": ("basam.export.hf", "", "save a model as a Hugging Face SamModel folder (config.json + safetensors)"),
    "serve": ("basam.serve", "", "a local click-to-segment web page (needs basam[serve])"),
}


def add_model_arguments(p: argparse.ArgumentParser, default_model: str = "default", dtype: bool = True) -> None:
    """The flags every command that loads a model shares (--dtype only for inference)."""
    p.add_argument("--model", default=default_model,
                   help="vit_b | vit_l | vit_h | vit_t (MobileSAM) | tiny | default (embedded)")
    p.add_argument("--checkpoint", default=None, help="official .pth, safetensors or basam export")
    p.add_argument("--attn", default=None, help="sam | nsf | bm | basam | official (default: the checkpoint's, else sam)")
    p.add_argument("--nsf-blocks", choices=("global", "all"), help="override: blocks that use λ(N)")
    p.add_argument("--bm-distance", choices=("euclidean", "manhattan", "raster"), help="override: BM-AM distance")
    p.add_argument("--bm-slope-scale", type=float, help="override: BM-AM slope multiplier")
    p.add_argument("--bm-offset", help="override: 0, a number, or 'train'")
    p.add_argument("--bm-blocks", choices=("global", "all"), help="override: blocks with the bias")
    p.add_argument("--windows", help="fixed | scaled: windowed blocks keep their trained window, or grow it "
                                     "with the image (default: the checkpoint's, else fixed)")
    p.add_argument("--chunk-mb", type=float, help="largest attention score chunk in MiB")
    p.add_argument("--device", default="cpu")
    if dtype:
        p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "int8", "auto"),
                       help="image encoder precision (auto: the fastest this CPU runs natively within mask IoU 0.99)")
        p.add_argument("--fused-attention", action="store_true",
                       help="CPU attention through basam's C++ kernel, compiled on first use (needs a C++ "
                            "compiler and ninja; README, \"Speed and precision on a CPU\")")


def attention_overrides(args: argparse.Namespace) -> dict:
    names = ("nsf_blocks", "bm_distance", "bm_slope_scale", "bm_offset", "bm_blocks", "windows", "chunk_mb")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_resolution_arguments(p: argparse.ArgumentParser) -> None:
    from .transforms import AUTO_MAX_SIDE

    p.add_argument("--resolution", default=None,
                   help="N (long side resized to N, padded; default: the model's pretraining side, 1024 for SAM) | "
                     "native | auto (smaller images resized up to the pretraining side, larger ones native with "
                     "scaled windows)")
    p.add_argument("--max-side", type=int, default=AUTO_MAX_SIDE, help="auto: largest long side (px); larger "
                                                                       "images are resized down to it")


def load_model_from_args(args: argparse.Namespace, attn: str | None = None):
    from . import load_model, use_fused_attention

    if getattr(args, "fused_attention", False):
        use_fused_attention()
    return load_model(args.model, checkpoint=args.checkpoint, attn=attn or args.attn, device=args.device,
                      dtype=getattr(args, "dtype", "fp32"), **attention_overrides(args))


# --- basam predict -------------------------------------------------------------------------------


def predict_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    add_model_arguments(p)
    p.add_argument("--point", action="append", default=[], help="X,Y[,label] (label 1 = foreground, 0 = background)")
    p.add_argument("--box", help="X0,Y0,X1,Y1")
    add_resolution_arguments(p)
    p.add_argument("--multimask", action="store_true", help="keep the best of SAM's three masks")
    p.add_argument("--out", default="basam-out")


def predict_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from . import Predictor

    coords, labels = [], []
    for spec in args.point:
        values = _floats(spec, "--point", (2, 3))
        coords.append(values[:2])
        if len(values) == 3 and values[2] not in (0, 1):
            raise ValueError(f"--point {spec!r}: the label must be 1 (foreground) or 0 (background)")
        labels.append(int(values[2]) if len(values) == 3 else 1)
    box = _floats(args.box, "--box", (4,)) if args.box else None
    image = _read_image(args.image)
    for x, y in coords + ([box[:2], box[2:]] if box else []):
        if not (0 <= x <= image.width and 0 <= y <= image.height):
            raise ValueError(f"point {x:g},{y:g} lies outside the {image.width}×{image.height} image")
    model = load_model_from_args(args)
    predictor = Predictor(model, resolution=args.resolution, max_side=args.max_side)
    predictor.set_image(image)
    if predictor.note:
        print(f"note: {predictor.note}", file=sys.stderr)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(coords) if coords else None, point_labels=np.array(labels) if labels else None,
        box=np.array(box) if box else None, multimask_output=args.multimask,
    )
    best = int(np.argmax(scores))
    mask = masks[best]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / f"{stem}_mask.png")
    Image.fromarray(overlay(np.asarray(image.convert("RGB")), mask)).save(out / f"{stem}_overlay.png")
    print(f"model {model.cfg.name}, attention {model.attn_cfg.describe()}, resolution {predictor.resolution} "
          f"→ input {predictor.padded_hw[1]}×{predictor.padded_hw[0]}, windows {predictor.windows or model.attn_cfg.windows}; "
          f"predicted IoU {scores[best]:.3f}; "
          f"mask area {mask.mean():.1%}; wrote {out}/{stem}_mask.png and {stem}_overlay.png")
    return 0


def overlay(image, mask, color=(255, 64, 32), alpha=0.5):
    """(H, W, 3) uint8 image with the (H, W) bool mask tinted and outlined."""
    import numpy as np
    from scipy import ndimage

    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float32)
    edge = mask & ~ndimage.binary_erosion(mask, iterations=max(1, min(mask.shape) // 256))
    out[edge] = color
    return out.astype(np.uint8)


def _floats(text: str, flag: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise ValueError(f"{flag} {text!r}: expected {' or '.join(str(c) for c in counts)} comma-separated numbers")
    return values


def _read_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise ValueError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


# --- dispatch ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="basam", description="Segment Anything at any resolution (BA-SAM).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the unknown-command error
        parser.print_help()
        return 2
    name = argv[0]
    module_name, prefix, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    add, run = (getattr(module, f"{prefix}_add_arguments"), getattr(module, f"{prefix}_run")) if prefix else (
        module.add_arguments, module.run)
    cmd_parser = argparse.ArgumentParser(prog=f"basam {name}", description=help_text)
    add(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        out = getattr(args, "out", None)
        if out and Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"--out {out} is an existing file; give a folder")
        return run(args) or 0
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KernelBuildError) as e:
        print(f"basam {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
