"""SAM 2's image encoder: the Hiera trunk and its feature-pyramid neck, at any input H×W.

Parameter names are the release's (`image_encoder.trunk.*`, `image_encoder.neck.convs.{i}.conv.*`).
The neck's sine position encodings feed only the video memory, so the image path does not make them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig, Sam2Config
from basam.modeling.hiera import Hiera


class FpnNeck(nn.Module):
    """Four trunk maps (high resolution first, channels backbone_channel_list reversed) → four d_model
    maps of the same sizes: a 1×1 lateral convolution per level, and on `fpn_top_down_levels` the
    coarser level's output added after nearest 2× upsampling, as released."""

    def __init__(self, d_model: int, backbone_channel_list: list[int], fpn_top_down_levels: tuple[int, ...]):
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:  # lowest resolution first
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(lateral)
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """xs: the trunk's maps, high resolution first → (B, d_model, H_l, W_l) per level, in that order."""
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * len(xs)
        previous = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and previous is not None:
                previous = lateral + F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
            else:
                previous = lateral
            out[i] = previous
        return out


class Sam2ImageEncoder(nn.Module):
    """(B, 3, H, W) normalised image, sides multiples of 32 → the FPN levels the image path uses
    (the `scalp` coarsest dropped), high resolution first: (B, d_model, H/4, W/4), (B, d_model,
    H/8, W/8), (B, d_model, H/16, W/16) for the released models. Takes and returns float32."""

    scalp = 1  # every released model drops the coarsest (stride-32) level

    def __init__(self, cfg: Sam2Config, attn_cfg: AttentionConfig):
        super().__init__()
        self.input_multiple = cfg.input_multiple
        self.trunk = Hiera(cfg, attn_cfg)
        self.neck = FpnNeck(cfg.prompt_embed_dim, self.trunk.channel_list, cfg.fpn_top_down_levels)

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        self.trunk.set_attention(attn_cfg)

    @property
    def boundary_layers(self) -> tuple[nn.Module, nn.Module]:
        """The layer that reads the image and the neck that writes the features: bf16 encoders keep
        them fp32 (basam.precision)."""
        return self.trunk.patch_embed, self.neck

    def forward(self, x: torch.Tensor, windows: str | None = None) -> list[torch.Tensor]:
        """windows: "fixed" | "scaled" for this call only, None → the model's setting."""
        h, w = x.shape[-2:]
        if h % self.input_multiple or w % self.input_multiple:
            raise ValueError(f"SAM 2 image encoder input {h}×{w}: sides must be multiples of {self.input_multiple}")
        maps = self.trunk(x, windows)
        dtype = self.neck.convs[0].conv.weight.dtype
        features = self.neck([m.to(dtype) for m in maps])[: len(maps) - self.scalp]
        return [f.float() for f in features]
