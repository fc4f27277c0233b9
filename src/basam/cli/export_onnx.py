"""`basam export-onnx`: the image encoder at one input size and the prompt decoder as ONNX graphs."""

from __future__ import annotations

import argparse

from basam.cli.common import add_model_arguments, load_model_from_args
from basam.formats.onnx import OPSET, export_onnx, parse_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--resolution", default="1024", help="model input N (N×N) or HxW, multiples of 16")
    p.add_argument("--out", required=True, help="folder for encoder.onnx and decoder.onnx")
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="the decoder returns the best mask only (as the official export's flag)",
    )
    p.add_argument("--hq-token-only", action="store_true", help="HQ-SAM: the decoder returns the HQ token's mask alone")
    p.add_argument(
        "--multimask",
        action="store_true",
        help="HQ-SAM: the HQ mask is added to SAM's best multimask output (default: its single-mask output)",
    )
    p.add_argument(
        "--external-data", action="store_true", help="weights in encoder.onnx.data (automatic above 1.5 GB, e.g. vit_h)"
    )
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, ≥ {OPSET}")


def run(args: argparse.Namespace) -> int:
    input_hw = parse_size(args.resolution)
    if args.opset < OPSET:
        raise ValueError(f"--opset {args.opset}: needs {OPSET} or later (LayerNormalization)")
    model = load_model_from_args(args)
    paths = export_onnx(
        model,
        args.out,
        input_hw,
        args.return_single_mask,
        args.external_data or None,
        args.opset,
        args.hq_token_only,
        args.multimask,
    )
    grid = model.prompt_encoder.grid_size(input_hw)
    print(
        f"wrote {paths['encoder']} and {paths['decoder']}: {model.cfg.name}, attention {model.attn_cfg.describe()}, "
        f"input {input_hw[0]}x{input_hw[1]} → {grid[0]}x{grid[1]} embeddings, opset {args.opset}"
    )
    return 0
