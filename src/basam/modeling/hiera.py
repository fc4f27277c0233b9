"""SAM 2's Hiera trunk (hierarchical ViT with q-pooling), at any input H×W.

Parameter names and shapes are those of the SAM 2 / 2.1 releases (`image_encoder.trunk.*`). Nothing
is tied to 1024 px: the background pos_embed is resized (bicubic) to the first stage's grid and the
window position embedding tiled over it, as the release does at every size; the windowed and global
blocks take their grid from the input. Attention goes through `basam.modeling.attention.attend`, where
BA-SAM lives: λ(N) and the distance bias in the global blocks, as in SAM's ViT.

Scaled windows (windows="scaled"): every stage's window is the trained one × the content scale
(`scaled_window`, from the stage's grid against its training grid). The window position embedding
then follows the first stage's window: it is resized (bicubic) to that window and tiled with its
period, so that each window sees the positional pattern it saw in training. A q-pooling block (the
first of stages 2–4) pools its window by 2, so its scaled window is rounded up to an even size.
The q-pooling blocks never take the distance bias: their queries sit on a grid half the keys'.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig, Sam2Config
from basam.modeling.attention import BlockAttentionMode, attend, scaled_window
from basam.modeling.common import LayersMLP, linear
from basam.modeling.image_encoder import window_partition, window_unpartition

Q_STRIDE = 2  # Hiera's stride between stages, in q-pooling and in the skip connection


class HieraPatchEmbed(nn.Module):
    """(B, 3, H, W) → (B, H/4, W/4, C) by a 7×7 stride-4 convolution padded by 3."""

    def __init__(self, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def pool_grid(x: torch.Tensor) -> torch.Tensor:
    """2×2 max pooling of a (B, H, W, C) grid → (B, H/2, W/2, C)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), Q_STRIDE, Q_STRIDE).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """(B, 3, H, W) normalised image, H and W multiples of 32 → four feature maps, high resolution
    first: (B, embed_dim·2^s, H/(4·2^s), W/(4·2^s)) for s = 0..3."""

    def __init__(self, cfg: Sam2Config, attn_cfg: AttentionConfig):
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise ValueError(f"{cfg.name}: {len(cfg.stages)} stages but {len(cfg.window_spec)} window sizes")
        self.window_spec = cfg.window_spec
        self.stage_ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]]
        self.patch_embed = HieraPatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0]))
        first_grid = cfg.img_size // 4
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        self.blocks = nn.ModuleList()
        for i in range(sum(cfg.stages)):
            # The first block of a stage still works on the previous stage's grid and window.
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            train_side = first_grid // 2**stage
            dim_out = dim
            if i in q_pool_blocks:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            self.blocks.append(
                MultiScaleBlock(dim, dim_out, heads, window, i in q_pool_blocks, (train_side, train_side), attn_cfg)
            )
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]
        self.windows = attn_cfg.windows

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        for block in self.blocks:
            block.attn.set_mode(attn_cfg)
        self.windows = attn_cfg.windows

    def block_window(self, block: MultiScaleBlock, grid_hw: tuple[int, int], windows: str) -> int:
        """The window (tokens per side) of `block` on its input grid: 0 for a global block."""
        if block.window_size == 0 or windows == "fixed":
            return block.window_size
        window = scaled_window(block.window_size, tuple(grid_hw), block.train_grid)
        return window + window % Q_STRIDE if block.q_pool else window

    def position_embedding(self, grid_hw: tuple[int, int], windows: str) -> torch.Tensor:
        """(1, H, W, C) for the first stage's grid: the background embedding resized to the grid plus
        the window embedding tiled with the first stage's window period."""
        h, w = grid_hw
        background = F.interpolate(self.pos_embed.float(), size=(h, w), mode="bicubic")
        window_embed = self.pos_embed_window.float()
        period = window_embed.shape[-1]
        if windows == "scaled":
            period = scaled_window(period, grid_hw, self.blocks[0].train_grid)
            if period != window_embed.shape[-1]:
                window_embed = F.interpolate(window_embed, size=(period, period), mode="bicubic")
        # repeat, not tile (the same on 4-d): torch's ONNX export of tile adds a dead branch that ONNX Runtime warns of
        tiles = window_embed.repeat(1, 1, -(-h // period), -(-w // period))[..., :h, :w]
        return (background + tiles).permute(0, 2, 3, 1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor, windows: str | None = None) -> list[torch.Tensor]:
        """windows: "fixed" | "scaled" for this call only, None → the model's setting."""
        windows = windows or self.windows
        if windows not in ("fixed", "scaled"):
            raise ValueError(f"windows={windows!r}: expected 'fixed' or 'scaled'")
        x = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype)).to(self.pos_embed.dtype)  # B, H/4, W/4, C
        x = x + self.position_embedding(x.shape[1:3], windows)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x, self.block_window(block, x.shape[1:3], windows))
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class MultiScaleBlock(nn.Module):
    """Pre-norm Hiera block on a (B, H, W, C) grid → (B, H', W', C_out); with q_pool the output grid
    is halved (queries and the skip connection max-pooled 2×2) and the width changes to dim_out.
    window_size 0 means global attention, else the trained window, which a call may replace."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        window_size: int,
        q_pool: bool,
        train_grid: tuple[int, int],
        attn_cfg: AttentionConfig,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size, self.q_pool, self.train_grid = window_size, q_pool, train_grid
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_grid = train_grid if window_size == 0 else (window_size, window_size)
        self.attn = MultiScaleAttention(
            dim, dim_out, num_heads, q_pool, window_size == 0, attn_grid, train_grid, attn_cfg
        )
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = LayersMLP(dim_out, int(dim_out * mlp_ratio), nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """x (B, H, W, dim); window: this call's window (0: global). Returns (B, H', W', dim_out)."""
        h, w = x.shape[1:3]
        normed = self.norm1(x)
        shortcut = x
        if self.dim != self.dim_out:
            shortcut = linear(self.proj, normed)
            if self.q_pool:
                shortcut = pool_grid(shortcut)
        if window:
            tiles, padded = window_partition(normed, window)
            out = self.attn(tiles, (h, w))
            if self.q_pool:  # the windows were pooled with the queries
                window, padded = window // Q_STRIDE, (padded[0] // Q_STRIDE, padded[1] // Q_STRIDE)
            out = window_unpartition(out, window, padded, shortcut.shape[1:3])
        else:
            out = self.attn(normed, (h, w))
        x = shortcut + out
        return self.feed_forward(x)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + mlp(norm2(x)). In inference a slab of tokens at a time, added into x in place, so that
        the 4×-wide hidden layer is never whole (as in the ViT's blocks)."""
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return x + self.mlp(self.norm2(x))
        x = x.contiguous()
        tokens = x.view(-1, x.shape[-1])
        slab = max(1, self.attn.mode.chunk_bytes // (self.mlp.hidden_features * x.element_size()))
        for start in range(0, tokens.shape[0], slab):
            part = tokens[start : start + slab]
            part += self.mlp(self.norm2(part))
        return x


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention over (B', h, w, C) tiles (windows, or the whole grid), with the
    queries optionally max-pooled 2×2 → (B', h', w', C_out). No relative positions: Hiera has none."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        q_pool: bool,
        is_global: bool,
        attn_grid: tuple[int, int],
        train_grid: tuple[int, int],
        attn_cfg: AttentionConfig,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim_out // num_heads
        self.q_pool, self.is_global = q_pool, is_global
        self.attn_grid, self.train_grid = attn_grid, train_grid
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)
        self.set_mode(attn_cfg)

    def set_mode(self, attn_cfg: AttentionConfig) -> None:
        if self.q_pool:  # the bias needs queries and keys on one grid; pooled queries are not
            attn_cfg = dataclasses.replace(attn_cfg, bias=False)
        self.mode = BlockAttentionMode(
            attn_cfg, self.num_heads, self.head_dim, self.is_global, self.attn_grid, self.train_grid
        )
        self.mode.to(self.proj.weight.device)

    def forward(self, x: torch.Tensor, image_grid: tuple[int, int]) -> torch.Tensor:
        """x: (B', h, w, dim) tiles; image_grid: the block's whole grid, whose size sets λ(N)."""
        tiles, h, w, _ = x.shape
        qkv = linear(self.qkv, x).reshape(tiles, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(2)  # each tiles, h·w, heads, d
        if self.q_pool:
            q = pool_grid(q.reshape(tiles, h, w, -1))
            h, w = q.shape[1:3]
            q = q.reshape(tiles, h * w, self.num_heads, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        scale = self.mode.scale(image_grid[0] * image_grid[1])
        out = attend(q, k, v, (h, w), self.mode, scale)  # tiles, heads, h·w, d
        return linear(self.proj, out.transpose(1, 2).reshape(tiles, h, w, -1))
