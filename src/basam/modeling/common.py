"""Small building blocks shared by SAM's encoder and decoder.

Parameter names (lin1/lin2, weight/bias) match the official release so checkpoints load as is.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from basam.runtime.precision import onednn_bf16


@cache
def onednn_linear():
    """oneDNN's linear with the bias (and a GELU) fused into the matrix product, or None.

    On the ViT-B encoder's shapes it is 5–16% faster than nn.Linear's MKL call in fp32 (34% with the
    MLP's GELU), 2–8% in bf16 (`python -m benchmarks encoder`, section linear). It has no autograd, so it serves
    inference only. It is a private operator (`torch.ops.mkldnn._linear_pointwise`) whose name and
    signature may change between torch releases: it is used only if it exists here and, called as
    basam calls it on a tiny input, matches F.linear + GELU; otherwise every layer takes nn.Linear.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x, weight, bias = (torch.randn(shape, generator=generator) for shape in ((3, 8), (5, 8), (5,)))
        with torch.no_grad():
            fused = op(x, weight, bias, "gelu", [], "none")
            plain = op(x, weight, bias, "none", [], "")
        expected = F.linear(x, weight, bias)
        if not (torch.allclose(plain, expected, atol=1e-5) and torch.allclose(fused, F.gelu(expected), atol=1e-5)):
            return None
    except (AttributeError, RuntimeError, TypeError):
        return None
    return op


def linear(layer: nn.Module, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """layer(x), followed by an exact (erf) GELU when asked: (..., in) → (..., out).

    A plain nn.Linear in CPU inference, in its own dtype (fp32, or bf16 where oneDNN has bf16
    kernels), goes through oneDNN's fused linear; anything else (training, autocast, tracing or
    compiling, int8 modules, layers with hooks such as LoRA) calls the layer as usual.
    """
    if _fusable(layer, x):
        return onednn_linear()(x, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = layer(x)
    return F.gelu(y) if gelu else y


def _fusable(layer: nn.Module, x: torch.Tensor) -> bool:
    return (
        type(layer) is nn.Linear
        and not (layer._forward_hooks or layer._forward_pre_hooks)
        and x.device.type == "cpu"
        and x.dtype == layer.weight.dtype
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and onednn_bf16()))
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and onednn_linear() is not None
    )


class MLPBlock(nn.Module):
    """Two-layer feed-forward block: (..., C) -> (..., mlp_dim) -> (..., C)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.act, nn.GELU) and self.act.approximate == "none":
            return linear(self.lin2, linear(self.lin1, x, gelu=True))
        return self.lin2(self.act(self.lin1(x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map, with a per-channel affine.

    Written out by hand rather than permuting to channels-last for nn.LayerNorm, because the
    official weights were trained with this exact formulation (biased variance, eps inside sqrt).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(dim=1, keepdim=True)
        x = centred / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class LayersMLP(nn.Module):
    """Two-layer feed-forward block with SAM 2's parameter names (layers.0, layers.1), as in its
    Hiera blocks and its two-way transformer: (..., C) -> (..., mlp_dim) -> (..., C)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(embedding_dim, mlp_dim), nn.Linear(mlp_dim, embedding_dim)])
        self.act = act()

    @property
    def hidden_features(self) -> int:
        return self.layers[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.act, nn.GELU) and self.act.approximate == "none":
            return linear(self.layers[1], linear(self.layers[0], x, gelu=True))
        return self.layers[1](self.act(self.layers[0](x)))
