"""Thresholded masks straight from the decoder's low-res logits, without the upsampled logits.

SAM's mask is its low-res logits (K, h, w) upsampled bilinearly (align_corners=False) by f = 4 to
the padded input, cut to the resized image and thresholded. Each upsampled pixel is a convex
combination of the 2×2 low-res values around it: with the low-res map padded by one replicated
row and column on each side, the output is a grid of cells, cell (a, b) holding up to f×f pixels
interpolated from the corners (a, b), (a, b+1), (a+1, b), (a+1, b+1). A cell whose four corners
all lie above a threshold has every pixel above it, one whose corners all lie at or below it has
none: only the cells that straddle the threshold need their pixels computed. Pixel counts
(the area, the stability score's two masks) and the run-length encoding's run boundaries come out
of those cells alone. Pixel values are computed as PyTorch's kernel computes them (width, then
height), so a pixel can differ from F.interpolate's only by float round-off.

This holds when the resized image is the original one (the image's long side is the model input
side, as in SAM's usual 1024 px or the embedded model's 256 px); `applies` says when.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from basam.inference.amg_utils import nonzero

FACTOR = 4  # SAM's low-res logits are a quarter of the padded input side


def applies(
    low_hw: tuple[int, int], padded_hw: tuple[int, int], resized_hw: tuple[int, int], orig_hw: tuple[int, int]
) -> bool:
    """Whether SAM's postprocessing of (h, w) low-res logits is one ×4 upsampling and a cut."""
    return tuple(orig_hw) == tuple(resized_hw) and tuple(padded_hw) == (FACTOR * low_hw[0], FACTOR * low_hw[1])


def _axis(n: int, kept: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One axis of n low-res values upsampled ×f and cut to `kept` pixels: for each of the n + 1
    cells and each of its f slots, the output index (cells + 1, f) int64, its weight on the cell's
    second corner (float32) and whether the index is a kept pixel."""
    a = np.arange(n + 1)[:, None]
    r = np.arange(FACTOR)[None]
    index = a * FACTOR - FACTOR // 2 + r  # the output pixel whose source lies in cell a, slot r
    lam = np.broadcast_to((r + 0.5) / FACTOR, index.shape)
    valid = (index >= 0) & (index < kept)
    return torch.from_numpy(index), torch.from_numpy(lam.astype(np.float32)), torch.from_numpy(valid)


def _corner_extremes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, a, b) -> min and max of each 2×2 block of neighbours (K, a-1, b-1) (cheaper than pooling)."""
    lo, hi = torch.minimum(x[:, :-1], x[:, 1:]), torch.maximum(x[:, :-1], x[:, 1:])
    return torch.minimum(lo[:, :, :-1], lo[:, :, 1:]), torch.maximum(hi[:, :, :-1], hi[:, :, 1:])


class LowResMasks:
    """low: (K, h, w) low-res logits; kept_hw: (H', W') the resized image inside the 4h×4w padded
    input. Counts of pixels above a threshold and the masks' run boundaries, exact up to round-off."""

    def __init__(self, low: torch.Tensor, kept_hw: tuple[int, int]) -> None:
        self.k, h, w = low.shape
        self.kept_hw = (int(kept_hw[0]), int(kept_hw[1]))
        # Replicated edges: output pixels beyond the outer low-res centres repeat the edge value.
        self.padded = F.pad(low.float()[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (K, h+2, w+2)
        self.cell_min, self.cell_max = _corner_extremes(self.padded)  # (K, h+1, w+1)
        self.rows, self.row_lam, self.row_valid = _axis(h, self.kept_hw[0])
        self.cols, self.col_lam, self.col_valid = _axis(w, self.kept_hw[1])
        self.pixels = self.row_valid.sum(1)[:, None] * self.col_valid.sum(1)[None]  # (h+1, w+1) per cell

    def uncertain(self, threshold: float) -> torch.Tensor:
        """(K, h+1, w+1) bool: cells with kept pixels whose corners straddle the threshold."""
        return (self.cell_min <= threshold) & (self.cell_max > threshold) & (self.pixels > 0)

    def _width_interpolated(self, k: torch.Tensor, rows: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Padded low-res rows `rows` (U, R) of masks k (U,), interpolated to the f slot columns of
        column cell b (U,) -> (U, R, f); rows are clamped into the padded map (mask such rows)."""
        _, hp, wp = self.padded.shape
        flat = (k[:, None] * hp + rows.clamp(0, hp - 1)) * wp + b[:, None]  # (U, R): the left corner
        left = self.padded.view(-1)[flat][:, :, None]
        right = self.padded.view(-1)[flat + 1][:, :, None]
        col_lam = self.col_lam[b][:, None, :]
        return (1 - col_lam) * left + col_lam * right

    def _sure_pixels(self, sure: torch.Tensor) -> torch.Tensor:
        """(K, h+1, w+1) bool cells → (K,) int64 pixels they cover: kept rows × kept columns per
        cell, a matrix-vector product each way (exact in float32 below 2²⁴ pixels)."""
        rows, cols = self.row_valid.sum(1).float(), self.col_valid.sum(1).float()
        return ((sure.float() @ cols) @ rows).round().long()

    def count_above(self, *thresholds: float) -> list[torch.Tensor]:
        """For each threshold, (K,) int64: pixels of the kept upsampled logits above it. The cells
        that straddle any of them are interpolated once for all."""
        kept = self.pixels > 0
        counts = [self._sure_pixels(self.cell_min > t) for t in thresholds]
        lowest, highest = min(thresholds), max(thresholds)
        k, a, b = nonzero((self.cell_min <= highest) & (self.cell_max > lowest) & kept)
        if len(k):
            across = self._width_interpolated(k, torch.stack([a, a + 1], 1), b)  # (U, 2, f)
            row_lam = self.row_lam[0][None, :, None]
            values = (1 - row_lam) * across[:, :1] + row_lam * across[:, 1:]  # (U, f, f)
            valid = self.row_valid[a][:, :, None] & self.col_valid[b][:, None, :]
            cmin, cmax = self.cell_min[k, a, b], self.cell_max[k, a, b]
            for t, count in zip(thresholds, counts):
                straddles = ((cmin <= t) & (cmax > t))[:, None, None]  # the others are counted as sure cells
                count.index_add_(0, k, ((values > t) & valid & straddles).flatten(1).sum(1))
        return counts

    def run_boundaries(self, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run boundaries of the masks (logits > threshold) in column-major order: (mask, column,
        row r) sorted, r in 0..H' meaning that the value changes between rows r-1 and r (rows -1
        and H' count as background), as amg_utils.masks_to_rle finds them on the full masks."""
        h_kept, w_kept = self.kept_hw
        uncertain = self.uncertain(threshold)
        k, a, b = nonzero(uncertain)
        # Candidate boundaries of an uncertain cell: its f rows and the row after it. That row is
        # the next cell's first one, left to that cell when it is uncertain too. Two sure cells
        # side by side never differ (they share two corners), so no other boundary exists but
        # those at the image's top and bottom edges.
        rows = torch.cat([self.rows[a][:, :1] - 1, self.rows[a], self.rows[a][:, -1:] + 1], 1)  # (U, f + 2)
        # Row -1 of the cell is the last slot of the cell above (padded rows a-1, a), row f the
        # first slot of the cell below (padded rows a+1, a+2).
        across = self._width_interpolated(k, a[:, None] + torch.arange(-1, 3), b)  # (U, 4, f)
        lam = self.row_lam[0]
        first, last = lam[:1][None, :, None], lam[-1:][None, :, None]
        inner = lam[None, :, None]
        values = torch.cat(
            [
                (1 - last) * across[:, :1] + last * across[:, 1:2],
                (1 - inner) * across[:, 1:2] + inner * across[:, 2:3],
                (1 - first) * across[:, 2:3] + first * across[:, 3:],
            ],
            1,
        )  # (U, f + 2, f)
        above = (values > threshold) & ((rows >= 0) & (rows < h_kept))[:, :, None]
        change = above[:, 1:] != above[:, :-1]  # (U, f + 1, f): a boundary at rows[:, 1:]
        position = rows[:, 1:]
        wanted = (position >= 0) & (position <= h_kept)
        last = a + 1 >= uncertain.shape[1]
        next_uncertain = uncertain[k, (a + 1).clamp(max=uncertain.shape[1] - 1), b] & ~last
        wanted[:, -1] &= ~next_uncertain
        change &= wanted[:, :, None] & self.col_valid[b][:, None, :]
        u, r, c = nonzero(change)
        parts = [(k[u], self.cols[b[u], c], position[u, r])]
        for edge_row, position in ((0, 0), (h_kept - 1, h_kept)):  # sure cells on the image's edges
            cell = int(self.rows.eq(edge_row).any(1).nonzero()[0])
            kk, bb = nonzero((self.cell_min[:, cell] > threshold) & (self.pixels[cell] > 0))
            e, c = nonzero(self.col_valid[bb])
            parts.append((kk[e], self.cols[bb[e], c], torch.full_like(e, position)))
        mask_idx, col, row = (torch.cat(p) for p in zip(*parts))
        order = torch.sort((mask_idx * w_kept + col) * (h_kept + 1) + row).indices
        return mask_idx[order], col[order], row[order]
