"""Section `precision` of the `encoder` suite: where reduced precision moves the default model's
masks on the shipped photo (sample.jpg). A grid of clicks (4×4; 2×2 quick), SAM's three masks
each; each row is one variant's mask IoU against fp32, mean and min:

- fp32 with one rounding to bf16 at a time (the image, the inputs of every linear layer, q/k/v,
  the attention output), and fp32 on the image with ±1 grey level of random noise, for scale;
- bf16 as shipped (image and neck in fp32), with its neck cast to bf16 too, and with both edges
  bf16, each also through the fused kernel where it builds (full run);
- int8 with PyTorch's 7-bit activations: as is, with per-channel weights, with each layer kind
  left in fp32; with 8-bit activations (FullRangeLinear, needs AVX512-VNNI); and per-token 8-bit
  activation scales with per-channel weights, simulated in fp32.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch import nn

import _common as C
from benchmarks.record import Result

LINEAR_KINDS = ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2")
QUICK_VARIANTS = (
    "fp32, image ±1 grey level noise",
    "fp32, image rounded to bf16",
    "bf16 (image and neck fp32)",
    "int8, 7-bit activations",
)


def rounded(x: torch.Tensor) -> torch.Tensor:
    return x.bfloat16().to(x.dtype)


def per_row_int8(x: torch.Tensor) -> torch.Tensor:
    """x quantized to int8 with one scale per row (last axis), back in x's dtype."""
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 127
    return (x / scale).round().clamp(-127, 127) * scale


def with_hooks(model, hook):
    """The encoder's linear layers get `hook` on their input (hooked layers skip oneDNN's fused path)."""
    for module in model.image_encoder.modules():
        if type(module) is nn.Linear:
            module.register_forward_pre_hook(lambda _, args: (hook(args[0]),))
    return model


def rounded_image(model):
    model.image_encoder.register_forward_pre_hook(lambda _, args: (rounded(args[0]),))
    return model


def bf16_edges(*names):
    def cast(model):
        for name in names:
            getattr(model.image_encoder, name).to(torch.bfloat16)
        return model

    return cast


def int8(qconfig_spec, mapping=None):
    def quantize(model):
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(model.image_encoder, qconfig_spec, dtype=torch.qint8, mapping=mapping, inplace=True)
        return model

    return quantize


def per_token_int8(model):
    for module in model.image_encoder.modules():
        if type(module) is nn.Linear:
            module.weight.data = per_row_int8(module.weight.data)  # per output channel
    return with_hooks(model, per_row_int8)


@contextlib.contextmanager
def attend_rounding(inputs: bool):
    """q, k, v (inputs) or the attention output rounded to bf16 in every block."""
    from basam.modeling import image_encoder

    attend = image_encoder.attend

    def rounding_attend(q, k, v, *args, **kwargs):
        if inputs:
            return attend(rounded(q), rounded(k), rounded(v), *args, **kwargs)
        return rounded(attend(q, k, v, *args, **kwargs))

    image_encoder.attend = rounding_attend
    try:
        yield
    finally:
        image_encoder.attend = attend


def variants(linear_names: list[str]) -> dict:
    """name → (dtype, change to the loaded model, context of the forward)."""
    from basam.runtime.precision import FullRangeLinear, int8_vnni

    found = {
        "fp32, image ±1 grey level noise": ("fp32", None, None),
        "fp32, image rounded to bf16": ("fp32", rounded_image, None),
        "fp32, linear inputs rounded to bf16": ("fp32", lambda m: with_hooks(m, rounded), None),
        "fp32, q, k, v rounded to bf16": ("fp32", None, lambda: attend_rounding(True)),
        "fp32, attention output rounded to bf16": ("fp32", None, lambda: attend_rounding(False)),
        "bf16 (image and neck fp32)": ("bf16", None, None),
        "bf16, neck bf16 too (image fp32)": ("bf16", bf16_edges("neck"), None),
        "bf16, all bf16 (edges too)": ("bf16", bf16_edges("patch_embed", "neck"), None),
        "int8, 7-bit activations": ("fp32", int8({nn.Linear}), None),
        "int8, 7-bit, per-channel weights": (
            "fp32",
            int8({nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}),
            None,
        ),
        **{
            f"int8, 7-bit, {kind} left fp32": ("fp32", int8({n for n in linear_names if not n.endswith(kind)}), None)
            for kind in LINEAR_KINDS
        },
        "int8, 8-bit activations (FullRangeLinear)": ("fp32", int8({nn.Linear}, {nn.Linear: FullRangeLinear}), None),
        "int8 simulated: per-token activations, per-channel weights": ("fp32", per_token_int8, None),
    }
    if not int8_vnni():
        del found["int8, 8-bit activations (FullRangeLinear)"]  # its int16 sums would saturate here
    return found


def run(result: Result, quick: bool) -> None:
    from basam.data.datasets import read_image
    from basam.evaluation.metrics import iou_dice
    from basam.formats.checkpoint import ASSETS

    photo = read_image(ASSETS / "sample.jpg")
    h, w = photo.shape[:2]
    side = 2 if quick else 4
    clicks = [np.array([[(x + 0.5) * w / side, (y + 0.5) * h / side]]) for y in range(side) for x in range(side)]

    def masks(model, image=photo):
        predictor = C.basam.Predictor(model)
        predictor.set_image(image)
        return [m for xy in clicks for m in predictor.predict(point_coords=xy, point_labels=np.array([1]))[0]]

    s = result.section(
        "precision",
        f"Where bf16 and int8 move the default model's masks on sample.jpg "
        f"({side}×{side} clicks, {3 * side * side} masks, IoU against fp32)",
        ["variant", "mean", "min"],
    )
    reference = masks(C.basam.load_model("default"))
    noisy = np.clip(photo.astype(int) + np.random.default_rng(0).integers(-1, 2, photo.shape), 0, 255).astype(np.uint8)
    names = [n for n, m in C.basam.load_model("default").image_encoder.named_modules() if type(m) is nn.Linear]
    fused = not quick and C.fused_kernel_builds()
    for name, (dtype, change, context) in variants(names).items():
        if quick and name not in QUICK_VARIANTS:
            continue
        for kernel in (False, True) if fused and dtype == "bf16" else (False,):
            model = C.basam.load_model("default", dtype=dtype)
            model = change(model) if change else model
            with (
                context() if context else contextlib.nullcontext(),
                C.fused_attention() if kernel else contextlib.nullcontext(),
            ):
                got = masks(model, noisy if "noise" in name else photo)
            ious = [iou_dice(a, b)[0] for a, b in zip(reference, got)]
            label = name + (", fused kernel" if kernel else "")
            s.row(label, f"{np.mean(ious):.4f}", f"{min(ious):.4f}")
            result.figure(s, label, float(np.mean(ious)))
