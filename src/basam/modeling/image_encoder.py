"""SAM's ViT image encoder (windowed + global blocks), at any input H×W.

Parameter names and shapes are those of the official release, so its checkpoints load strictly.
What differs is that nothing is tied to 1024 px: the 64×64 pos_embed is resized (bicubic) to the
actual token grid, the global blocks' rel-pos tables are resized (linear) as SAM itself does for
mismatched sizes, and attention goes through `basam.modeling.attention.attend`, where BA-SAM lives.
With windows="scaled" the windowed blocks' windows grow with the input (`scaled_window`) and
their rel-pos tables are resized the same way; the window is chosen per call, never stored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig, ModelConfig
from basam.modeling.attention import BlockAttentionMode, attend, scaled_window
from basam.modeling.common import LayerNorm2d, MLPBlock, linear
from basam.modeling.official_args import apply_block_options, encoder_config


class ImageEncoderViT(nn.Module):
    """(B, 3, H, W) normalised image, H and W multiples of the patch size → (B, C_out, H/16, W/16).
    Takes and returns float32 whatever dtype its weights were given (basam.runtime.precision).
    For HQ-SAM (cfg.hq) it returns (embedding, early feature): the early feature is the output of
    the first global-attention block, (B, C, H/16, W/16) float32, which HQ-SAM's decoder reads."""

    def __init__(self, cfg: ModelConfig | None = None, attn_cfg: AttentionConfig | None = None, **official):
        """cfg, attn_cfg: basam's configs; or, without cfg, segment_anything's keyword arguments
        (img_size, patch_size, embed_dim, depth, num_heads, window_size, global_attn_indexes, ...,
        see basam.modeling.official_args) with the official defaults."""
        super().__init__()
        block_options = None
        if cfg is not None and not isinstance(cfg, ModelConfig):
            raise TypeError(
                "ImageEncoderViT: give segment_anything's arguments by keyword (img_size=..., depth=..., ...)"
            )
        if cfg is None:
            cfg, block_options = encoder_config(**official)
        elif official:
            raise TypeError(
                f"ImageEncoderViT: give either cfg or segment_anything's keyword arguments, not both "
                f"({', '.join(official)})"
            )
        attn_cfg = attn_cfg or AttentionConfig()
        self.cfg, self.attn_cfg = cfg, attn_cfg
        self.img_size = cfg.img_size  # the pretraining input side, as segment_anything's encoder names it
        dim, p = cfg.encoder_embed_dim, cfg.patch_size
        self.patch_size = p
        self.train_grid = cfg.train_grid
        self.patch_embed = PatchEmbed(p, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *cfg.train_grid, dim))
        self.blocks = nn.ModuleList(
            Block(
                dim,
                cfg.encoder_num_heads,
                window_size=0 if i in cfg.encoder_global_attn_indexes else cfg.window_size,
                train_grid=cfg.train_grid,
                attn_cfg=attn_cfg,
            )
            for i in range(cfg.encoder_depth)
        )
        out = cfg.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )
        self.use_pos_embed = not attn_cfg.official
        self.windows = attn_cfg.windows
        self.window_size = cfg.window_size
        self.early_index = min(cfg.encoder_global_attn_indexes) if cfg.hq else None
        self.early_dim = dim
        if block_options is not None:
            apply_block_options(self, **block_options)

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        """Switch the BA-SAM settings in place; the SAM weights are untouched."""
        self.attn_cfg = attn_cfg
        for block in self.blocks:
            block.attn.set_mode(attn_cfg)
        self.use_pos_embed = not attn_cfg.official
        self.windows = attn_cfg.windows

    def window_for(self, grid_hw: tuple[int, int], windows: str | None = None) -> int:
        """The windowed blocks' window (tokens per side) on a token grid: the trained one for
        "fixed", the content-scaled one for "scaled"; None → the model's attention setting."""
        windows = windows or self.windows
        if windows not in ("fixed", "scaled"):
            raise ValueError(f"windows={windows!r}: expected 'fixed' or 'scaled'")
        if windows == "fixed":
            return self.window_size
        return scaled_window(self.window_size, tuple(grid_hw), self.train_grid)

    @property
    def boundary_layers(self) -> tuple[nn.Module, nn.Module]:
        """The layer that reads the image and the neck that writes the embedding: bf16 encoders
        keep them fp32 (basam.runtime.precision)."""
        return self.patch_embed, self.neck

    def forward(self, x: torch.Tensor, windows: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """windows: "fixed" | "scaled" for this call only, None → the model's setting."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image encoder input {h}×{w} is not a multiple of the patch size {self.patch_size}")
        window = self.window_for((h // self.patch_size, w // self.patch_size), windows)
        # bf16 encoders keep the patch embedding and the neck fp32 (boundary_layers)
        x = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype)).to(self.pos_embed.dtype)  # B, Hg, Wg, C
        if self.use_pos_embed:
            x = x + resize_pos_embed(self.pos_embed, x.shape[1:3])
        early = None
        for i, block in enumerate(self.blocks):
            x = block(x, window)
            if i == self.early_index:
                early = x.permute(0, 3, 1, 2).float()
        embedding = self.neck(x.permute(0, 3, 1, 2).to(self.neck[0].weight.dtype)).float()
        return embedding if self.early_index is None else (embedding, early)


def resize_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(1, Ht, Wt, C) pretraining pos_embed → (1, Hg, Wg, C), bicubic."""
    if tuple(pos_embed.shape[1:3]) == tuple(grid_hw):
        return pos_embed
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(), size=tuple(grid_hw), mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


class PatchEmbed(nn.Module):
    """(B, 3, H, W) → (B, H/p, W/p, C) by a p×p stride-p convolution."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Block(nn.Module):
    """Pre-norm transformer block on a (B, H, W, C) token grid; window_size 0 means global, else
    the trained window, which a call may replace (scaled windows)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        train_grid: tuple[int, int],
        attn_cfg: AttentionConfig,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        is_global = window_size == 0
        attn_grid = train_grid if is_global else (window_size, window_size)
        self.attn = Attention(dim, num_heads, is_global, attn_grid, train_grid, attn_cfg)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.mlp_hidden = int(dim * mlp_ratio)  # kept here: a LoRA-wrapped mlp.lin1 may not say its width

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        window = (window or self.window_size) if self.window_size > 0 else 0
        x = x + self.attn(self.norm1(x), window)
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return x + self.mlp(self.norm2(x))
        # Inference: the MLP runs a slab of tokens at a time and adds into x in place, so that its
        # 4×-wide hidden layer (0.8 GB for ViT-B at 4096 px, twice over with the GELU) is never whole.
        x = x.contiguous()
        tokens = x.view(-1, x.shape[-1])
        slab = max(1, self.attn.mode.chunk_bytes // (self.mlp_hidden * x.element_size()))
        for start in range(0, tokens.shape[0], slab):
            part = tokens[start : start + slab]
            part += self.mlp(self.norm2(part))
        return x


class Attention(nn.Module):
    """Multi-head self-attention with SAM's decomposed relative positions, over (B, H, W, C).

    `attn_grid` is the grid the rel-pos tables were trained for (the window, or the pretraining
    token grid in a global block).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        is_global: bool,
        attn_grid: tuple[int, int],
        train_grid: tuple[int, int],
        attn_cfg: AttentionConfig,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.is_global = is_global
        self.attn_grid = attn_grid
        self.train_grid = train_grid
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * attn_grid[0] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * attn_grid[1] - 1, self.head_dim))
        self.set_mode(attn_cfg)

    def set_mode(self, attn_cfg: AttentionConfig) -> None:
        self.mode = BlockAttentionMode(
            attn_cfg, self.num_heads, self.head_dim, self.is_global, self.attn_grid, self.train_grid
        )
        self.mode.to(self.rel_pos_h.device)  # not qkv.weight: int8 makes it a method

    def forward(self, x: torch.Tensor, window: int = 0, image_grid: tuple[int, int] | None = None) -> torch.Tensor:
        """x: (B, H, W, C) token grid. window 0: attention over the whole grid; else within
        window×window tiles of the grid padded up to multiples of the window, as SAM does.
        image_grid: the grid whose size sets λ(N), x's own unless x is a part of it.
        Returns (B, H, W, C)."""
        b, h, w, c = x.shape
        image_grid = image_grid or (h, w)
        qkv, padded = self.windowed_qkv(x, window) if window else (linear(self.qkv, x), None)
        tiles, th, tw = qkv.shape[:3]
        qkv = qkv.reshape(tiles, th * tw, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each tiles, heads, N, d
        rel_pos = decomposed_rel_pos(q, (th, tw), self.rel_pos_h, self.rel_pos_w)
        scale = self.mode.scale(image_grid[0] * image_grid[1])
        out = attend(q, k, v, (th, tw), self.mode, scale, rel_pos).transpose(1, 2).reshape(tiles, th, tw, c)
        if window:
            out = window_unpartition(out, window, padded, (h, w))
        return linear(self.proj, out)

    def windowed_qkv(self, x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """qkv of x (B, H, W, C) as windows (B·nW, window, window, 3C), with the grid padded up to
        multiples of the window (the padded H, W are returned too).

        SAM pads the normed tokens with zeros and then applies qkv to the padding as well; qkv is per
        token, so the padding gets qkv of one zero token instead. One band of window rows at a time:
        the whole grid's qkv (0.6 GB for ViT-B at 4096 px) never exists beside its windowed copy.
        """
        b, h, w, c = x.shape
        hp, wp = h + -h % window, w + -w % window
        fill = self.qkv(x.new_zeros(1, c))[0] if (hp, wp) != (h, w) else None
        windows = None  # B, nH, nW, window, window, 3C
        for i, top in enumerate(range(0, hp, window)):
            band = linear(self.qkv, x[:, top : top + window])
            if band.shape[1] < window or w < wp:
                full = band.new_empty(b, window, wp, band.shape[-1])
                full[:, : band.shape[1], :w] = band
                full[:, band.shape[1] :], full[:, :, w:] = fill, fill
                band = full
            if windows is None:
                windows = band.new_empty(b, hp // window, wp // window, window, window, band.shape[-1])
            windows[:, i] = band.view(b, window, wp // window, window, -1).transpose(1, 2)
        return windows.view(-1, window, window, windows.shape[-1]), (hp, wp)


def rel_pos_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """Embeddings of all offsets between `size` query and key positions on one axis:
    (size, size, d). The (2L−1, d) table is linearly resized when the axis length changed."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.T[None].float(), size=length, mode="linear")[0].T.to(table.dtype)
    pos = torch.arange(size, device=table.device)
    return table[pos[:, None] - pos[None, :] + size - 1]


def decomposed_rel_pos(
    q: torch.Tensor, grid_hw: tuple[int, int], rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor
) -> Callable[[slice], tuple[torch.Tensor, torch.Tensor]]:
    """SAM's rel-pos logits (MViTv2), kept factored and made on demand for a range of query tokens:
    q (B, heads, N, d) → rows ↦ rel_h (B, heads, rows, H), rel_w (B, heads, rows, W); the full term
    is rel_h[..., :, None] + rel_w[..., None, :]. `attend` asks chunk by chunk, so that the whole
    (B, heads, N, H + W) is never held at once."""
    h, w = grid_hw
    b, heads, n, d = q.shape
    table_h, table_w = rel_pos_table(h, rel_pos_h).to(q.dtype), rel_pos_table(w, rel_pos_w).to(q.dtype)

    def rows_terms(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        # Made for the grid rows that hold the tokens (all of them: the whole term), then cut.
        first, last = rows.start // w, (rows.stop - 1) // w + 1
        grid_q = q[:, :, first * w : last * w].reshape(b, heads, last - first, w, d)
        rel_h = torch.einsum("bnhwd,hkd->bnhwk", grid_q, table_h[first:last]).reshape(b, heads, -1, h)
        rel_w = torch.einsum("bnhwd,wkd->bnhwk", grid_q, table_w).reshape(b, heads, -1, w)
        cut = slice(rows.start - first * w, rows.stop - first * w)
        return rel_h[:, :, cut], rel_w[:, :, cut]

    return rows_terms


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) → (B·nW, window, window, C), zero-padding H and W up to multiples of window,
    and the padded (Hp, Wp); segment_anything's function of the same name and arguments."""
    window = window_size
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of window_partition: (B·nW, window, window, C) → (B, H, W, C), with pad_hw the padded
    and hw the original grid; segment_anything's function of the same name and arguments."""
    window, grid_hw = window_size, hw
    hp, wp = pad_hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : grid_hw[0], : grid_hw[1]].contiguous()


# segment_anything.modeling.image_encoder's helpers that basam does not have: one line naming what it has.
_NOT_PROVIDED = {
    "get_rel_pos": "basam.modeling.image_encoder.rel_pos_table(size, table) gives the (size, size, d) "
    "embeddings of a square window, resized as SAM resizes them",
    "add_decomposed_rel_pos": "basam.modeling.image_encoder.decomposed_rel_pos(q, grid_hw, rel_pos_h, rel_pos_w) "
    "gives the factored term, chunk by chunk; Attention adds it",
}


def __getattr__(name: str):
    # ImportError rather than AttributeError: `from ... import name` keeps this message only then
    if name in _NOT_PROVIDED:
        raise ImportError(f"basam.modeling.image_encoder has no {name} (segment_anything's); {_NOT_PROVIDED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
