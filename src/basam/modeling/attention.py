"""BA-SAM's two changes to SAM's attention, and the one attention function every encoder block calls.

The paper in two formulas (Song et al., CVPR 2024; docs/method.md):

    λ(N)            = (ln N / ln N_train) / √d                      new scaling factor (NSF)
    bias_h(i, j)    = −m_h · max(0, dist(p_i, p_j) − offset)        bias-mode attention mask (BM-AM)

and a global block computes softmax(λ(N)·q kᵀ + relpos(q) + bias) v, where relpos is SAM's own
decomposed relative-position term. With NSF and BM-AM off this is SAM exactly.

This project's finding adds a third change, for the windowed blocks (`windows="scaled"`): a window
grown with the content scale, w' = round_half_up(w · long side / pretraining side), covers the part
of the picture its trained window covered (`scaled_window`). What the paper's two terms mean there:
λ(N) keeps N = the whole image grid, as with fixed windows (nsf_blocks="all" scales every block
from the image size); the `train` offset is the diameter of the window actually attended, because
a scaled window holds, in content units, exactly the distances of the trained window, so BM-AM adds
nothing inside it. A numeric offset stays in tokens. At the training size w' = w: nothing changes.

Memory: scores are never materialised for all queries at once. Queries are processed in chunks so
that one chunk's (B, heads, chunk, N) mask stays under `AttentionConfig.chunk_mb`; the bias is
built per chunk from a cached distance table (kept only while that table itself is small). With
`basam.use_fused_attention()` CPU inference adds the same terms per tile of scores in C++
(runtime/kernels/relpos_attention.cpp), and no mask is written at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig
from basam.runtime.kernels import fused_kernel


def nsf_scale(n_tokens: int, n_train: int, head_dim: int) -> float:
    """λ(N) = log_{N_train}(N)/√d. Equals SAM's 1/√d when N == N_train."""
    return math.log(n_tokens) / math.log(n_train) / math.sqrt(head_dim)


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's head slopes 2^(−8h/H), h = 1..H. For H not a power of two, ALiBi takes the slopes of
    the nearest lower power of two n, then every other slope of 2n for the remaining heads."""

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** int(math.floor(math.log2(num_heads)))
    if n == num_heads:
        return power_of_two(n)
    return power_of_two(n) + power_of_two(2 * n)[0::2][: num_heads - n]


def grid_diameter(grid_hw: tuple[int, int], distance: str) -> float:
    """Largest token-to-token distance on a grid: the `train` offset, beyond which a distance was
    never seen in pretraining."""
    h, w = grid_hw
    return {"euclidean": math.hypot(h - 1, w - 1), "manhattan": float(h - 1 + w - 1), "raster": float(h * w - 1)}[
        distance
    ]


def token_distance(
    grid_hw: tuple[int, int], distance: str, rows: slice, device=None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Distances between query tokens `rows` and all keys of an H×W grid (row-major order).
    Returns (len(rows), H·W) float32, written into `out` when given. Built as
    (rows, H, 1) ⊕ (rows, 1, W), so the result is the only tensor of its size."""
    h, w = grid_hw
    q = torch.arange(h * w, device=device)[rows]
    if out is None:
        out = torch.empty(len(q), h * w, device=device)
    if distance == "raster":
        return torch.sub(q[:, None].float(), torch.arange(h * w, device=device, dtype=torch.float32), out=out).abs_()
    dy = (torch.div(q, w, rounding_mode="floor")[:, None] - torch.arange(h, device=device)[None, :]).float()
    dx = (torch.remainder(q, w)[:, None] - torch.arange(w, device=device)[None, :]).float()
    grid_out = out.view(len(q), h, w)
    if distance == "manhattan":
        torch.add(dy.abs_()[:, :, None], dx.abs_()[:, None, :], out=grid_out)
        return out
    torch.add(dy.square_()[:, :, None], dx.square_()[:, None, :], out=grid_out)
    return out.sqrt_()


def scaled_window(trained_window: int, grid_hw: tuple[int, int], train_grid: tuple[int, int]) -> int:
    """The window (tokens per side) covering at grid_hw what `trained_window` covered on the
    pretraining grid: trained × long side / pretraining side, rounded half up, at least 1."""
    long_side, train_side = max(grid_hw), max(train_grid)
    # Integer half-up rounding: float round() is half-to-even and 14·1.5 must not depend on it.
    return max(1, (2 * trained_window * long_side + train_side) // (2 * train_side))


@lru_cache(maxsize=8)
def _cached_excess_distance(grid_hw, distance, offset, device) -> torch.Tensor:
    return (token_distance(grid_hw, distance, slice(None), device) - offset).clamp_min(0)


# A distance table is cached whole only below this many entries (64 MiB of float32); bigger grids
# build their rows chunk by chunk, which costs little next to the attention matmul.
DISTANCE_CACHE_ENTRIES = 16 * 2**20

# Every parameter BA-SAM adds (learnable slopes, the official variant's gains) is named
# `….attn.mode.…`: checkpoints, exports and tuning find them by this part of the name.
BASAM_PARAMETER = ".attn.mode."


def excess_distance(
    grid_hw: tuple[int, int], distance: str, offset: float, rows: slice, device, out: torch.Tensor | None = None
) -> torch.Tensor:
    """max(0, dist − offset) for query rows `rows` of the grid: (len(rows), H·W) float32.
    Cached per (grid, distance, offset, device) and shared by every block with those settings;
    beyond the cache, written into `out` when given."""
    grid_hw = (int(grid_hw[0]), int(grid_hw[1]))  # under the ONNX tracer sizes are tensors, which miss the cache
    n = grid_hw[0] * grid_hw[1]
    if n * n <= DISTANCE_CACHE_ENTRIES:
        return _cached_excess_distance(grid_hw, distance, float(offset), torch.device(device))[rows]
    return token_distance(grid_hw, distance, rows, device, out).sub_(offset).clamp_min_(0)


class BlockAttentionMode(nn.Module):
    """What one encoder block's attention adds to plain SAM, decided once from the config.

    Holds the BM-AM slopes (a buffer, or a parameter when learnable) and, for the `official`
    preset, the released code's per-block gain on the rel-pos term. For the `sam` preset it holds
    nothing, so the state dict is exactly SAM's.
    """

    def __init__(
        self,
        cfg: AttentionConfig,
        num_heads: int,
        head_dim: int,
        is_global: bool,
        attn_grid: tuple[int, int],
        train_grid: tuple[int, int],
    ):
        """attn_grid: the grid this block attends over in pretraining (its window, or the whole
        pretraining grid in a global block); train_grid: the pretraining token grid (N_train)."""
        super().__init__()
        self.head_dim = head_dim
        self.n_train = train_grid[0] * train_grid[1]
        self.use_nsf = cfg.nsf and (is_global or cfg.nsf_blocks == "all")
        self.use_bias = cfg.bias and (is_global or cfg.bm_blocks == "all")
        self.distance = cfg.bm_distance
        # A windowed block was trained on its window, so "train" means the diameter of the window it
        # attends over (the trained window, or the scaled one covering the same content).
        self.offset_from_window = cfg.bm_offset == "train" and not is_global
        self.offset = grid_diameter(attn_grid, cfg.bm_distance) if cfg.bm_offset == "train" else float(cfg.bm_offset)
        self.chunk_bytes = int(cfg.chunk_mb * 2**20)
        if self.use_bias:
            slopes = torch.tensor(alibi_slopes(num_heads)) * cfg.bm_slope_scale
            if cfg.bm_learnable:
                self.slopes = nn.Parameter(slopes)
            else:
                self.register_buffer("slopes", slopes, persistent=False)
        if cfg.official:
            self.relpos_gain = nn.Parameter(torch.tensor([0.1]))

    def bias_offset(self, grid_hw: tuple[int, int]) -> float:
        """The BM-AM offset for attention over grid_hw (a window, or the whole image grid)."""
        return grid_diameter(grid_hw, self.distance) if self.offset_from_window else self.offset

    def scale(self, n_image_tokens: int) -> float:
        """The softmax temperature: λ(N) of the whole image grid when NSF applies, else 1/√d."""
        if self.use_nsf:
            return nsf_scale(n_image_tokens, self.n_train, self.head_dim)
        return self.head_dim**-0.5


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid_hw: tuple[int, int],
    mode: BlockAttentionMode,
    scale: float,
    rel_pos: Callable[[slice], tuple[torch.Tensor, torch.Tensor]] | None = None,
    pos_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(scale·q kᵀ + relpos + bias) v, in query chunks.

    q, k, v: (B, heads, N, d) with N = H·W tokens of `grid_hw` (a window or the whole image).
    rel_pos: SAM's decomposed rel-pos terms of query rows, rel_pos(rows) → rel_h (B, heads, rows, H)
             and rel_w (B, heads, rows, W), asked chunk by chunk (whole, they are 1.6 GB for ViT-B
             at 4096 px); or a learned positional bias pos_bias (heads, N, N) (TinyViT's biases).
    Returns (B, heads, N, d).
    """
    b, heads, n, _ = q.shape
    gain = getattr(mode, "relpos_gain", None)
    bytes_per_row = b * heads * n * max(q.element_size(), 4)
    chunk = max(1, min(n, mode.chunk_bytes // bytes_per_row))
    # Inside the offset the bias is exactly zero (e.g. the checkpoint's own grid with offset "train");
    # inference skips it (an ONNX export then holds no all-zero bias); training keeps the slopes in the graph.
    offset = mode.bias_offset(grid_hw) if mode.use_bias else 0.0
    use_bias = mode.use_bias and (torch.is_grad_enabled() or grid_diameter(grid_hw, mode.distance) > offset)
    neg_slopes = -mode.slopes.view(-1, 1, 1) if use_bias else None

    def terms(rows: slice, dist_buffer: torch.Tensor | None = None) -> tuple:
        """The rows' rel-pos terms, positional bias, rel-pos gain, −slopes and excess distances."""
        dist = excess_distance(grid_hw, mode.distance, offset, rows, q.device, dist_buffer) if use_bias else None
        return rel_pos(rows) if rel_pos else None, pos_bias, rows, gain, neg_slopes, dist

    inference = not (torch.is_grad_enabled() or torch.jit.is_tracing())
    kernel = fused_kernel()
    if (
        kernel is not None
        and inference
        and rel_pos is not None
        and pos_bias is None
        and q.dtype in (torch.float32, torch.bfloat16)
        and q.device.type == "cpu"
    ):
        return _attend_fused(kernel, q, k, v, grid_hw, mode, scale, rel_pos, gain, neg_slopes, offset)
    if chunk >= n or not inference:
        # Each chunk builds its own mask: autograd needs them (the slopes' gradient), the ONNX tracer
        # follows plain ops, and one chunk has nothing to reuse.
        outputs = [
            F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=_new_mask(q.dtype, *terms(rows)), scale=scale)
            for rows in _chunks(n, chunk)
        ]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    # Inference in several chunks: every chunk writes into one mask buffer (and one distance
    # buffer), and its result goes straight into the output. A fresh chunk mask (hundreds of MB at
    # 4096 px) is a fresh mmap whose first touch costs page faults and system time, chunk after chunk.
    has_mask = rel_pos is not None or pos_bias is not None or use_bias
    mask_buffer = q.new_empty(b * heads * chunk * n) if has_mask else None
    dist_buffer = torch.empty(chunk, n, device=q.device) if use_bias and n * n > DISTANCE_CACHE_ENTRIES else None
    out = q.new_empty(b, n, heads, v.shape[-1]).transpose(1, 2)  # SDPA's own layout: the caller's transpose is free
    for rows in _chunks(n, chunk):
        size = rows.stop - rows.start
        mask = None
        if mask_buffer is not None:
            mask = mask_buffer[: b * heads * size * n].view(b, heads, size, n)
            _write_mask(mask, *terms(rows, None if dist_buffer is None else dist_buffer[:size]))
        out[:, :, rows] = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask, scale=scale)
    return out


def _attend_fused(kernel, q, k, v, grid_hw, mode, scale, rel_pos, gain, neg_slopes, offset) -> torch.Tensor:
    """`attend` through the C++ kernel (basam.runtime.kernels), which adds the rel-pos term and the bias per
    tile of scores: no mask is written. Chunks bound only the rel-pos terms, (B, heads, rows, H + W).
    bf16 inputs stay bf16 where the kernel has bf16 products (AVX512-BF16), else they are cast to
    float32 and the output back."""
    dtype = q.dtype
    if not (dtype == torch.bfloat16 and kernel.bf16_native() and q.shape[-1] % 2 == 0):
        q, k, v = q.float(), k.float(), v.float()
    b, heads, n, _ = q.shape
    chunk = max(1, mode.chunk_bytes // (b * heads * sum(grid_hw) * 4))
    slopes = q.new_empty(0) if neg_slopes is None else neg_slopes.detach().flatten().float().contiguous()
    out = q.new_empty(b, n, heads, v.shape[-1]).transpose(1, 2)
    for rows in _chunks(n, chunk):
        rel_h, rel_w = rel_pos(rows)
        if gain is not None:
            rel_h, rel_w = gain * rel_h, gain * rel_w
        kernel.relpos_attention(
            q[:, :, rows],
            k,
            v,
            rel_h.float().contiguous(),
            rel_w.float().contiguous(),
            out[:, :, rows],
            rows.start,
            scale,
            slopes,
            offset,
            _KERNEL_DISTANCES.index(mode.distance),
        )
    return out.to(dtype)


_KERNEL_DISTANCES = ("euclidean", "manhattan", "raster")  # the kernel's distance codes


def _chunks(n: int, chunk: int) -> list[slice]:
    return [slice(start, min(n, start + chunk)) for start in range(0, n, chunk)]


def _new_mask(dtype, rel, pos_bias, rows, gain, neg_slopes, dist) -> torch.Tensor | None:
    """The additive mask of query `rows`, (B, heads, rows, N) in `dtype`: relpos (rel = the rows'
    (rel_h, rel_w), times the gain) plus the BM-AM bias −slope·dist, as new tensors that autograd
    follows; None if there is none."""
    mask = None
    if rel is not None:
        mask = (rel[0][..., :, None] + rel[1][..., None, :]).flatten(-2)
    if pos_bias is not None:
        mask = pos_bias[:, rows] if mask is None else mask + pos_bias[:, rows]
    if mask is not None and gain is not None:
        mask = gain * mask
    if dist is not None:
        # In place where the mask is our own: one chunk-sized tensor instead of three (bias, sum, mask).
        if mask is None:
            mask = neg_slopes * dist
        else:
            mask = mask.addcmul_(neg_slopes, dist) if rel is not None else mask.addcmul(neg_slopes, dist)
    if mask is not None and mask.dim() == 3:
        # (heads, rows, N) → (1, heads, rows, N): PyTorch's CPU SDPA takes its fused (flash) path
        # only for a 4-D mask; a 3-D one falls back to the unfused math path.
        mask = mask[None]
    return None if mask is None else mask.to(dtype)


def _write_mask(mask, rel, pos_bias, rows, gain, neg_slopes, dist) -> None:
    """`_new_mask` written into the buffer `mask` (B, heads, rows, N), without autograd."""
    if rel is not None:
        rel_h, rel_w = rel
        grid_mask = mask.view(*mask.shape[:3], rel_h.shape[-1], rel_w.shape[-1])
        torch.add(rel_h[..., :, None], rel_w[..., None, :], out=grid_mask)
        if pos_bias is not None:
            mask.add_(pos_bias[:, rows])
    elif pos_bias is not None:
        mask.copy_(pos_bias[:, rows])
    else:
        mask.zero_()
    if gain is not None:
        mask.mul_(gain)
    if dist is not None:
        mask.addcmul_(neg_slopes, dist)
