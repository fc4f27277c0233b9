"""MobileSAM's image encoder: TinyViT-5M with SAM's neck (model type `vit_t`), at any input H×W.

Parameter names and shapes are those of MobileSAM's release (`mobile_sam.pt`), so it loads strictly;
the release's classifier head (`norm_head`, `head`) is not built (checkpoint.py ignores it). The
released code is tied to 1024 px (per-block input resolutions, a `view(B, 64, 64, C)` before the
neck); here every stage takes its grid from its input, windows are zero-padded as the release pads
them, and attention goes through `basam.modeling.attention.attend`, where BA-SAM lives. With
windows="scaled" each stage's window grows with the input (`scaled_window`, from the stage's grid
at 1024 px) and its per-offset bias table is resized bilinearly, as SAM's rel-pos tables are.

    (B, 3, H, W) ─ patch_embed: two 3×3 stride-2 conv+BN ─→ (B, 64, H/4, W/4)
      layers.0: 2 MBConv blocks, then patch merging (stride 2)       → (B, 128, H/8, W/8)
      layers.1: 2 attention blocks, window 7, then merging (stride 2) → (B, 160, H/16, W/16)
      layers.2: 6 attention blocks, window 14, then merging (stride 1) → (B, 320, H/16, W/16)
      layers.3: 2 attention blocks, window 7
      neck (SAM's)                                                   → (B, 256, H/16, W/16)
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig, ModelConfig
from basam.modeling.attention import BlockAttentionMode, attend, scaled_window
from basam.modeling.common import LayerNorm2d
from basam.modeling.image_encoder import window_partition, window_unpartition

# TinyViT-5M as MobileSAM configures it.
EMBED_DIMS = (64, 128, 160, 320)
DEPTHS = (2, 2, 6, 2)
NUM_HEADS = (2, 4, 5, 10)
WINDOW_SIZES = (7, 7, 14, 7)
MLP_RATIO = 4
MBCONV_EXPANSION = 4
LOCAL_CONV_SIZE = 3


class TinyViT(nn.Module):
    """(B, 3, H, W) normalised image, H and W multiples of 16 → (B, C_out, H/16, W/16).
    Takes and returns float32 whatever dtype its weights were given (basam.runtime.precision).
    For HQ-SAM (cfg.hq) it returns (embedding, early feature): layers.1's output, (B, 160, H/16, W/16).

    Activations are kept channels-last (NHWC in memory) throughout: oneDNN's convolutions, the
    depthwise ones above all, run on that layout without reordering, and the attention stages'
    (B, H, W, C) view of a channels-last map is a free permute instead of a copy."""

    channels_last = True  # False: the default NCHW layout (a reference)

    def __init__(self, cfg: ModelConfig, attn_cfg: AttentionConfig):
        super().__init__()
        _refuse_official(attn_cfg)
        self.cfg, self.attn_cfg = cfg, attn_cfg
        self.img_size = cfg.img_size  # the pretraining input side, as segment_anything's encoder names it
        self.patch_size = cfg.patch_size
        self.windows = attn_cfg.windows
        self.returns_early = cfg.hq
        self.early_dim = EMBED_DIMS[2]
        self.patch_embed = PatchEmbed(EMBED_DIMS[0])
        self.layers = nn.ModuleList([ConvStage(EMBED_DIMS[0], DEPTHS[0], EMBED_DIMS[1])])
        grid = cfg.img_size // 8  # stage 1's grid at the pretraining size (its N_train); later ones follow
        for i in range(1, len(DEPTHS)):
            last = i == len(DEPTHS) - 1
            stride = 1 if i == len(DEPTHS) - 2 else 2  # merging into the last stage keeps the grid
            self.layers.append(
                AttentionStage(
                    EMBED_DIMS[i],
                    DEPTHS[i],
                    NUM_HEADS[i],
                    WINDOW_SIZES[i],
                    (grid, grid),
                    attn_cfg,
                    out_dim=None if last else EMBED_DIMS[i + 1],
                    merge_stride=stride,
                )
            )
            grid = -(-grid // stride)
        out = cfg.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(EMBED_DIMS[-1], out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        """Switch the BA-SAM settings in place; the MobileSAM weights are untouched."""
        _refuse_official(attn_cfg)
        self.attn_cfg = attn_cfg
        self.windows = attn_cfg.windows
        for layer in self.layers[1:]:
            for block in layer.blocks:
                block.attn.set_mode(attn_cfg)

    @property
    def boundary_layers(self) -> tuple[nn.Module, nn.Module]:
        """The layer that reads the image and the neck that writes the embedding: bf16 encoders
        keep them fp32 (basam.runtime.precision)."""
        return self.patch_embed.seq[0], self.neck

    def forward(self, x: torch.Tensor, windows: str | None = None) -> torch.Tensor:
        """windows: "fixed" | "scaled" for this call only, None → the model's setting."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image encoder input {h}×{w} is not a multiple of the patch size {self.patch_size}")
        windows = windows or self.windows
        if windows not in ("fixed", "scaled"):
            raise ValueError(f"windows={windows!r}: expected 'fixed' or 'scaled'")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.layers[0](self.patch_embed(x))
        early = None
        for i, layer in enumerate(self.layers[1:], 1):
            x = layer(x, scaled_windows=windows == "scaled")
            if i == 1 and self.returns_early:
                early = x.float().contiguous()
        embedding = self.neck(x.to(self.neck[0].weight.dtype)).float().contiguous()
        return (embedding, early) if self.returns_early else embedding


def _refuse_official(attn_cfg: AttentionConfig) -> None:
    if attn_cfg.official:
        raise ValueError("attention preset 'official' is defined for the ViT encoder only, not vit_t")


class PatchEmbed(nn.Module):
    """(B, 3, H, W) → (B, C, H/4, W/4): two 3×3 stride-2 conv+BN with a GELU between."""

    def __init__(self, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(3, dim // 2, 3, stride=2), nn.GELU(), ConvBN(dim // 2, dim, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bf16 encoders keep the first convolution fp32 (boundary_layers), so that the image is not rounded
        first, gelu, second = self.seq
        x = gelu(first(x.to(first.c.weight.dtype)))
        return second(x.to(second.c.weight.dtype))


class ConvBN(nn.Sequential):
    """k×k convolution without bias (`c`) then BatchNorm (`bn`), on (B, C, H, W); padding k // 2.
    Out of training mode the BatchNorm's affine map (running statistics) is folded into the
    convolution's weight and a bias: one pass over the activation instead of two."""

    fold = True  # False: convolution then BatchNorm, as the module is written (a reference)

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.fold:
            return super().forward(x)
        conv, bn = self.c, self.bn
        scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)  # (C_out,)
        weight = (conv.weight.float() * scale[:, None, None, None]).to(conv.weight.dtype)
        bias = (bn.bias.float() - bn.running_mean.float() * scale).to(conv.weight.dtype)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project, + input; (B, C, H, W) → same."""

    def __init__(self, dim: int, expansion: int):
        super().__init__()
        hidden = dim * expansion
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) → (B, C_out, ⌈H/s⌉, ⌈W/s⌉): 1×1 conv, 3×3 depthwise conv of stride s, 1×1 conv."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class ConvStage(nn.Module):
    """layers.0: MBConv blocks, then merging to `out_dim` at half the grid; (B, C, H, W) in and out."""

    def __init__(self, dim: int, depth: int, out_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, MBCONV_EXPANSION) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """layers.1–3: TinyViT blocks on the (B, H, W, C) grid, then (except the last) merging.
    (B, C, H, W) in and out. `train_grid`: this stage's grid at the pretraining size."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        train_grid: tuple[int, int],
        attn_cfg: AttentionConfig,
        out_dim: int | None,
        merge_stride: int,
    ):
        super().__init__()
        self.train_grid = train_grid
        self.window_size = window
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window, train_grid, attn_cfg) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, merge_stride) if out_dim else None

    def forward(self, x: torch.Tensor, scaled_windows: bool = False) -> torch.Tensor:
        grid = tuple(x.shape[-2:])
        window = scaled_window(self.window_size, grid, self.train_grid) if scaled_windows else self.window_size
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x, window)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViTBlock(nn.Module):
    """Windowed attention, a 3×3 depthwise conv, an MLP; (B, H, W, C) → same. Unlike SAM's block,
    the attention's LayerNorm comes after the zero padding of the windows (as released)."""

    def __init__(self, dim: int, num_heads: int, window: int, train_grid: tuple[int, int], attn_cfg: AttentionConfig):
        super().__init__()
        self.window_size = window
        self.attn = WindowAttention(dim, num_heads, window, train_grid, attn_cfg)
        self.mlp = Mlp(dim, dim * MLP_RATIO)
        self.local_conv = ConvBN(dim, dim, LOCAL_CONV_SIZE, groups=dim)

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """window: the trained one when None, else a scaled one."""
        grid, window = x.shape[1:3], window or self.window_size
        windows, padded = window_partition(x, window)
        x = x + window_unpartition(self.attn(windows, grid), window, padded, grid)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class WindowAttention(nn.Module):
    """Multi-head attention inside (B·nW, w, w, C) windows with TinyViT's learned per-head bias for
    each (|Δrow|, |Δcol|) offset in the window (`attention_biases`, heads × w²)."""

    def __init__(self, dim: int, num_heads: int, window: int, train_grid: tuple[int, int], attn_cfg: AttentionConfig):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window = window
        self.train_grid = train_grid
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("bias_index", offset_index(window), persistent=False)
        self.set_mode(attn_cfg)

    def set_mode(self, attn_cfg: AttentionConfig) -> None:
        self.mode = BlockAttentionMode(
            attn_cfg, self.num_heads, self.head_dim, False, (self.window, self.window), self.train_grid
        )
        self.mode.to(self.attention_biases.device)

    def forward(self, x: torch.Tensor, image_grid: tuple[int, int]) -> torch.Tensor:
        """x: (B·nW, w, w, C) windows; image_grid: the stage's token grid, whose size sets λ(N)."""
        b, h, w, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, h * w, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each B, heads, N, d (q, k, v interleaved per head)
        scale = self.mode.scale(image_grid[0] * image_grid[1])
        out = attend(q, k, v, (h, w), self.mode, scale, pos_bias=self.position_bias(h))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))

    def position_bias(self, window: int) -> torch.Tensor:
        """(heads, window², window²): the learned bias of each pair's (|Δrow|, |Δcol|); for a scaled
        window the (heads, w, w) offset table is resized bilinearly, offset 0 and the largest
        offset staying in place."""
        if window == self.window:
            return self.attention_biases[:, self.bias_index]
        table = self.attention_biases.view(1, self.num_heads, self.window, self.window).float()
        table = F.interpolate(table, size=(window, window), mode="bilinear", align_corners=True)
        index = offset_index(window).to(table.device)
        return table.view(self.num_heads, window * window)[:, index].to(self.attention_biases.dtype)


def offset_index(window: int) -> torch.Tensor:
    """(w², w²) index of each pair of window cells (row-major) into a (|Δrow|, |Δcol|) table of w × w."""
    cells = torch.tensor(list(itertools.product(range(window), repeat=2)))
    delta = (cells[:, None, :] - cells[None, :, :]).abs()
    return delta[..., 0] * window + delta[..., 1]


class Mlp(nn.Module):
    """LayerNorm, then a two-layer GELU MLP; (..., C) → (..., C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))
