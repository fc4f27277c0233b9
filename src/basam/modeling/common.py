"""Small building blocks shared by SAM's encoder and decoder.

Parameter names (lin1/lin2, weight/bias) match the official release so checkpoints load as is.
"""

from __future__ import annotations

import torch
from torch import nn


class MLPBlock(nn.Module):
    """Two-layer feed-forward block: (..., C) -> (..., mlp_dim) -> (..., C)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
