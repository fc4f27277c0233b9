"""ONNX export: the image encoder at one chosen input size, and the prompt decoder for its grid.

encoder.onnx   image (1, 3, H, W) float32, normalised and zero-padded as `transforms.normalize_and_pad`
               → image_embeddings (1, C, H/16, W/16). BA-SAM's λ(N) and bias are baked in for that size.
decoder.onnx   the official SAM decoder export's contract (segment_anything.utils.onnx.SamOnnxModel):
               image_embeddings (1, C, Hg, Wg), point_coords (1, N, 2) xy in model-input pixels,
               point_labels (1, N) (1 fg, 0 bg, 2/3 box corners, -1 padding), mask_input (1, 1, 4Hg, 4Wg),
               has_mask_input (1,), orig_im_size (2,) = (h, w) → masks (1, M, h, w) logits at the original
               size, iou_predictions (1, M), low_res_masks (1, M, 4Hg, 4Wg); N is dynamic.

HQ-SAM models: encoder.onnx also returns early_features (1, C_vit, H/16, W/16), which decoder.onnx
takes after image_embeddings; as segment_anything_hq's export, the decoder returns one mask (M = 1),
SAM's single-mask output (or, exported with multimask, its best multimask output) plus the HQ mask,
or with hq_token_only the HQ mask alone: both choices are fixed at export.

The model input of an H×W export is the image scaled to fit inside H×W with its aspect ratio kept
(side lengths rounded half up), padded at the bottom and right: for a square N this is SAM's
resize-longest-side-to-N, and point coordinates are scaled by the same factor.

SAM 2 models: encoder.onnx has three outputs and decoder.onnx takes the two high-resolution maps
after image_embeddings (basam.formats.onnx_sam2); input sides are multiples of 32.

Exported through the TorchScript-based `torch.onnx.export(dynamo=False)`: the dynamo exporter of
torch 2.13 fails on the encoder's attention (a view it cannot decompose).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import torch

from basam.formats.onnx_graphs import DecoderGraph, HQDecoderGraph
from basam.inference.transforms import MAX_SIDE, MIN_SIDE, MULTIPLE
from basam.modeling.attention import DISTANCE_CACHE_ENTRIES
from basam.modeling.sam import Sam

OPSET = 17
# protobuf refuses files over 2 GiB; above this many bytes of tensors (vit_h) they go to a side file.
EXTERNAL_DATA_BYTES = 1_500_000_000
SAM2_MULTIPLE = 32  # Hiera pools the stride-4 grid three times


def parse_size(text: str | int) -> tuple[int, int]:
    """ "N" or "HxW" → (H, W), each a multiple of 16 in [64, 4096]."""
    parts = str(text).lower().split("x")
    try:
        hw = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else None
    except ValueError:
        hw = None
    if hw is None or any(s % MULTIPLE or not MIN_SIDE <= s <= MAX_SIDE for s in hw):
        raise ValueError(
            f"--resolution {text!r}: expected N or HxW, multiples of {MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}"
        )
    return hw


def fit_inside(orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """Size of an orig_hw image scaled, aspect kept, to fit inside input_hw (rounded half up)."""
    scale = min(input_hw[0] / orig_hw[0], input_hw[1] / orig_hw[1])
    return int(orig_hw[0] * scale + 0.5), int(orig_hw[1] * scale + 0.5)


def decoder_example_inputs(model: Sam, input_hw: tuple[int, int], num_points: int = 2) -> dict[str, torch.Tensor]:
    """Inputs of the official contract with the shapes of this grid (used to trace the export)."""
    hg, wg = model.prompt_encoder.grid_size(input_hw)
    c = model.cfg.prompt_embed_dim
    early = {"early_features": torch.randn(1, model.image_encoder.early_dim, hg, wg)} if model.is_hq else {}
    return {
        "image_embeddings": torch.randn(1, c, hg, wg),
        **early,
        "point_coords": torch.randint(0, min(input_hw), (1, num_points, 2)).float(),
        "point_labels": torch.randint(-1, 4, (1, num_points)).float(),
        "mask_input": torch.randn(1, 1, 4 * hg, 4 * wg),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([input_hw[0] * 0.75, input_hw[1] * 1.5]).round(),
    }


def export_onnx(
    model: Sam,
    out: str | Path,
    input_hw: tuple[int, int],
    return_single_mask: bool = False,
    external_data: bool | None = None,
    opset: int = OPSET,
    hq_token_only: bool = False,
    multimask: bool = False,
) -> dict[str, Path]:
    """Write out/encoder.onnx and out/decoder.onnx for an input_hw = (H, W) model input.
    external_data None → only when the tensors would come near protobuf's 2 GiB limit.
    hq_token_only, multimask: HQ-SAM models only (module docstring)."""
    sam2 = getattr(model.cfg, "encoder", None) == "hiera"
    if sam2 and any(s % SAM2_MULTIPLE for s in input_hw):
        raise ValueError(
            f"--resolution {input_hw[0]}x{input_hw[1]}: SAM 2 models ({model.cfg.name}) need sides that are "
            f"multiples of {SAM2_MULTIPLE}"
        )
    if (hq_token_only or multimask) and not model.is_hq:
        raise ValueError(f"hq_token_only and multimask are HQ-SAM export options; {model.cfg.name} is not HQ-SAM")
    model = model.cpu().eval()
    h, w = input_hw
    tokens = (h // model.cfg.patch_size) * (w // model.cfg.patch_size)
    if model.attn_cfg.bias and tokens * tokens > DISTANCE_CACHE_ENTRIES:
        raise ValueError(
            f"the BA-SAM bias of a {h}x{w} input ({tokens} tokens) is built chunk by chunk, which the "
            f"ONNX export cannot hold; export at most {int(math.isqrt(DISTANCE_CACHE_ENTRIES))} tokens "
            f"(e.g. 1024x1024 with 16 px patches)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image = torch.zeros(1, 3, h, w)
    if model.attn_cfg.bias:
        with torch.no_grad():
            model.image_encoder(image)  # fills the distance cache: the trace then reads it as a constant
    paths = {"encoder": out / "encoder.onnx", "decoder": out / "decoder.onnx"}
    if sam2:
        _export_sam2(model, paths, input_hw, return_single_mask, opset, external_data)
        return paths
    encoder_outputs = ["image_embeddings", "early_features"] if model.is_hq else ["image_embeddings"]
    _export(model.image_encoder, (image,), paths["encoder"], ["image"], encoder_outputs, {}, opset, external_data)
    if model.is_hq:
        decoder = HQDecoderGraph(model, input_hw, hq_token_only, multimask)
    else:
        decoder = DecoderGraph(model, input_hw, return_single_mask)
    decoder.eval()  # the export restores the wrapper's mode afterwards, and with it the model's
    inputs = decoder_example_inputs(model, input_hw)
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    _export(
        decoder,
        tuple(inputs.values()),
        paths["decoder"],
        list(inputs),
        ["masks", "iou_predictions", "low_res_masks"],
        dynamic,
        opset,
        False,
    )
    return paths


def _export_sam2(model, paths: dict[str, Path], input_hw, return_single_mask: bool, opset: int, external) -> None:
    from basam.formats.onnx_sam2 import (
        DECODER_INPUTS,
        ENCODER_OUTPUTS,
        Sam2DecoderGraph,
        Sam2EncoderGraph,
        sam2_decoder_example_inputs,
    )

    image = torch.zeros(1, 3, *input_hw)
    _export(Sam2EncoderGraph(model).eval(), (image,), paths["encoder"], ["image"], ENCODER_OUTPUTS, {}, opset, external)
    decoder = Sam2DecoderGraph(model, input_hw, return_single_mask).eval()
    inputs = sam2_decoder_example_inputs(model, input_hw)
    assert list(inputs) == DECODER_INPUTS
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    outputs = ["masks", "iou_predictions", "low_res_masks"]
    _export(decoder, tuple(inputs.values()), paths["decoder"], DECODER_INPUTS, outputs, dynamic, opset, False)


def _export(module, args, path: Path, inputs, outputs, dynamic_axes, opset: int, external: bool | None) -> None:
    import onnx

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python scalars, all intended here
        staged = Path(tmp) / path.name
        torch.onnx.export(
            module,
            args,
            str(staged),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
        proto = onnx.load(str(staged))
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if external is None:
        external = sum(len(t.raw_data) for t in proto.graph.initializer) > EXTERNAL_DATA_BYTES
    if external:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(path))
