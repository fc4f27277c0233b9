"""Inference precision of the image encoder: one switch, `load_model(..., dtype=...)`.

    fp32  the default; the model as trained.
    bf16  the encoder's weights cast to bfloat16 once (autocast would re-cast every weight on every
          call); activations and attention run in bf16, except in the layer that reads the image
          and the neck that writes the embedding (`encoder.boundary_layers`), kept fp32 so that
          neither the image nor the embedding is rounded to bf16. Fast only where the CPU has
          native bf16 (AVX512_BF16 or AMX); elsewhere oneDNN emulates it, several times slower.
    int8  dynamic quantization of the encoder's linear layers (qkv, proj, MLP): int8 weights,
          activations quantized per call (to 8 bits with AVX512-VNNI, else PyTorch's 7:
          `FullRangeLinear`); attention, norms and convolutions stay fp32.
    auto  the fastest of these that this CPU runs natively within the masks' bound against fp32
          (mean IoU ≥ 0.99, none below 0.93): bf16 where the CPU has it, else int8 where it has
          AVX512-VNNI, else fp32 (the rule and its measurements: `auto_precision` and
          docs/speed.md).

Only the image encoder changes: the prompt encoder and mask decoder stay fp32 (a few percent of a
prompt's time), and the encoder takes and returns float32, so callers never see the internal dtype.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import cache
from pathlib import Path

import torch
import torch.ao.nn.quantized.dynamic as dynamic_quantized
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8", "auto")


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16() -> bool:
    """True where bf16 matrix products run in hardware: AVX512_BF16 or AMX-BF16 (x86), BF16 (Arm),
    and the process has not capped the instruction sets below them (ATEN_CPU_CAPABILITY,
    ONEDNN_MAX_CPU_ISA: how the AVX2 figures were measured on an AVX-512 machine)."""
    flags = cpu_flags()
    if not flags:
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    if "avx2" in flags and (torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT") or not onednn_bf16()):
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


@cache
def onednn_bf16() -> bool:
    """Whether oneDNN has bf16 kernels in this process (not on AVX2-only CPUs, nor under
    ONEDNN_MAX_CPU_ISA=AVX2: there its bf16 linear layer fails). The check is a private torch
    operator; a torch without it counts as having none, so bf16 takes the plain nn.Linear path."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def int8_vnni() -> bool:
    """Whether fbgemm's int8 products sum in int32 here (AVX512-VNNI), so that activations may use
    all 8 bits (`FullRangeLinear`), and this torch runs `FullRangeLinear` at all."""
    return "avx512_vnni" in cpu_flags() and _full_range_runs()


class FullRangeLinear(dynamic_quantized.Linear):
    """PyTorch's dynamic int8 linear with 8-bit activations instead of its 7 (`reduce_range`). The
    7 bits keep AVX2's u8·s8 pair sums (vpmaddubsw) inside int16; VNNI sums in int32, so there the
    eighth bit is free. On the real photo (sample.jpg) it moved the default model's int8 masks from
    mean IoU 0.981 (min 0.805) against fp32 to 0.991 (min 0.952)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, False).to(x.dtype)


@cache
def _full_range_runs() -> bool:
    """FullRangeLinear reaches into torch's dynamic Linear (`_packed_params`) and calls its operator
    directly; where a torch release moves either, int8 keeps PyTorch's own dynamic Linear."""
    try:
        with warnings.catch_warnings():  # torch 2.13 marks quantized tensors as moving to torchao
            warnings.simplefilter("ignore")
            layer = FullRangeLinear(4, 3)
            return layer(torch.ones(2, 4)).shape == (2, 3)
    except (AttributeError, RuntimeError, TypeError):
        return False


def describe_cpu() -> str:
    """One line for every timing: ATen's capability plus the bf16/int8 features that decide speed,
    and the instruction-set caps in force, if any."""
    flags = cpu_flags()
    extras = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni") if f in flags]
    caps = [
        f"{v}={os.environ[v]}"
        for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
        if os.environ.get(v)
    ]
    capped = f", capped: {' '.join(caps)}" if caps else ""
    return (
        f"{torch.backends.cpu.get_cpu_capability()} ({', '.join(extras) or 'no bf16/vnni'}{capped}), "
        f"{torch.get_num_threads()} threads"
    )


def auto_precision(device: torch.device) -> str:
    """The rule behind dtype="auto", from the measurements in docs/speed.md:
    native bf16 → bf16 (3.8–3.9× the official fp32 with the fused kernel, 2.5× without it; the
    default model's masks within the bound on synthetic scenes and on a real photo); else
    AVX512-VNNI → int8 with 8-bit activations (2.4–2.6×; within the bound, mean IoU 0.991 on the
    photo); else fp32. Without VNNI int8 keeps 7-bit activations, which moved the photo's masks
    outside the bound (mean 0.981, min 0.805), though it runs 2.7× on AVX2 against fp32's 1.7×."""
    if device.type != "cpu":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if native_bf16():
        return "bf16"
    return "int8" if int8_vnni() else "fp32"


def set_precision(model: nn.Module, dtype: str) -> str:
    """Put `model.image_encoder` in `dtype` ("fp32" | "bf16" | "int8" | "auto") in place; returns
    the precision chosen. Call once, on an fp32 model in eval mode."""
    if dtype not in PRECISIONS:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(PRECISIONS)}")
    device = model.device
    if dtype == "auto":
        dtype = auto_precision(device)
    encoder = model.image_encoder
    if dtype == "bf16":
        if device.type == "cpu" and not native_bf16():
            print(
                f"basam: warning: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16; "
                "dtype bf16 is emulated and slower than fp32",
                file=sys.stderr,
            )
        encoder.to(torch.bfloat16)
        # bf16 inside, fp32 at the edges: on a real photo (sample.jpg) the default model's masks had
        # mean IoU 0.969 against fp32 with the image rounded to bf16, 0.991 with the first layer
        # fp32, 0.9945 with the neck fp32 too (docs/speed.md, "Masks against fp32").
        for layer in encoder.boundary_layers:
            layer.float()
    elif dtype == "int8":
        if device.type != "cpu":
            raise ValueError(f"dtype int8 runs on the CPU only, not on {device}")
        from torch.ao.quantization import quantize_dynamic

        mapping = {nn.Linear: FullRangeLinear} if int8_vnni() else None
        with warnings.catch_warnings():  # torch 2.13 marks the eager quantization API as moving to torchao
            warnings.simplefilter("ignore")
            quantize_dynamic(encoder, {nn.Linear}, dtype=torch.qint8, mapping=mapping, inplace=True)
    model.precision = dtype
    return dtype
