"""Opt-in C++ attention kernel for the CPU: `basam.use_fused_attention()`.

`relpos_attention.cpp` adds SAM's rel-pos term (and BA-SAM's bias) to each tile of attention
scores as it computes them, where the default path writes them into a mask that PyTorch's fused
attention then reads. It is compiled on first use with torch's C++ extension builder (a C++
compiler and ninja are needed; about 30 s on 2 cores), once per CPU capability, and cached by
torch (~/.cache/torch_extensions). It serves CPU inference; training, tracing and TinyViT's
attention take the default path. float32 products go to MKL; bf16 inputs are multiplied as bf16
with float32 sums (`bf16_tiles.h`, AVX512-BF16) where the CPU has the instruction
(`fused_kernel().bf16_native()`), and are cast to float32 elsewhere. The softmax and the rel-pos
and bias terms are float32 either way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

_built = None  # the compiled module, once built in this process
_enabled = False


class KernelBuildError(RuntimeError):
    """The C++ kernel could not be compiled or loaded; the message is the compiler's first error."""


def use_fused_attention(enable: bool = True) -> None:
    """Route CPU inference of the ViT encoder's attention through the C++ kernel (compiling
    it first if needed), or back to PyTorch's attention with enable=False. Raises KernelBuildError
    with the compiler's complaint if it cannot be built."""
    global _built, _enabled
    if enable and _built is None:
        _built = _build()
    _enabled = enable


def fused_kernel():
    """The compiled kernel module when enabled, else None."""
    return _built if _enabled else None


def _build():
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise KernelBuildError(
            f"cannot build the fused attention kernel: no C++ compiler ({compiler} not found; install g++ or set CXX)"
        )
    if not cpp_extension.is_ninja_available():
        raise KernelBuildError(
            "cannot build the fused attention kernel: ninja not found (apt-get install "
            "ninja-build, or pip install ninja in an activated environment)"
        )
    capability = torch.backends.cpu.get_cpu_capability()
    isa = {
        "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mavx2"],
        "AVX2": ["-mavx2", "-mfma"],
    }.get(capability, [])
    defines = [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"] if isa else []
    try:
        return cpp_extension.load(
            name=f"basam_relpos_attention_{capability.lower()}",
            sources=[str(Path(__file__).with_name("relpos_attention.cpp"))],
            extra_cflags=["-O3", "-fno-math-errno", "-fopenmp", *isa, *defines],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as e:  # the builder raises several kinds (compile errors, a failed import)
        lines = str(e).strip().splitlines() or [type(e).__name__]
        reason = next((line for line in lines if "error:" in line), lines[-1])
        raise KernelBuildError(f"cannot build the fused attention kernel: {reason.strip()[:300]}") from e
