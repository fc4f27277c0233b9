"""Prompts sampled from a ground-truth mask, deterministic for a seed.

Coordinate convention: a point is the integer pixel index, x = column, y = row, as
`SamPredictor.predict` takes it (SAM's prompt encoder adds the 0.5 pixel-centre shift itself).
A tight box is [min col, min row, max col, max row] of the mask, inclusive, the convention of
SAM's own `batched_mask_to_box`. (COCO boxes are continuous xywh -> [x, y, x+w, y+h], so they
reach one pixel further right/down; the reader passes them through unchanged.)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

KINDS = ("box", "center", "point", "points", "none", "box+center")


@dataclass
class Prompt:
    """point_coords (N, 2) float xy | None; point_labels (N,) int, 1 = object, 0 = background
    | None; box (4,) float xyxy | None. The arguments of `Predictor.predict` by name."""

    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None

    def as_kwargs(self) -> dict:
        return {"point_coords": self.point_coords, "point_labels": self.point_labels, "box": self.box}


def prompt_rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one sample that depends only on (seed, sample name), so prompts are the
    same whatever the order, the rank or the number of processes that evaluate the sample."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"gt mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    # uint8 gt from the readers is 0..255 (>127 rule); anything else is a 0/1 or [0,1] map
    return mask > 127 if mask.dtype == np.uint8 else mask > 0.5


def tight_box(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) nonempty -> (4,) float [x0, y0, x1, y1], inclusive pixel indices."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def center_point(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) nonempty -> (2,) float xy of the pixel farthest from the background.

    The image border counts as background (padding), otherwise an object cut by the border
    would get its 'centre' on the border. Ties go to the first pixel in raster order."""
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([c, r], dtype=np.float64)


def _jitter_box(box: np.ndarray, frac: float, shape, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with std = frac x box side per coordinate (SAM's training recipe, without
    its 20 px cap, which would make the noise depend on the resolution), clipped to the image."""
    h, w = shape
    side = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2, dtype=np.float64)
    out = box + rng.normal(size=4) * frac * side
    out[[0, 2]] = np.clip(out[[0, 2]], 0, w - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, h - 1)
    # noise can cross the corners over; keep xyxy ordered
    return np.array([min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])])


def _random_pixels(region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n pixels of a bool (H, W) region -> (n, 2) float xy; distinct while the region allows."""
    rows, cols = np.nonzero(region)
    pick = rng.choice(len(rows), size=n, replace=n > len(rows))
    return np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64)


def sample_prompt(
    gt_mask: np.ndarray,
    kind: str,
    seed: int | np.random.Generator,
    *,
    box_jitter: float = 0.0,
    n_pos: int = 1,
    n_neg: int = 0,
) -> Prompt:
    """A prompt for the object in gt_mask (bool (H, W); uint8 0..255 is binarised at >127).

    kind: "box" (tight box, jittered by box_jitter x side), "center" (distance-transform
    maximum, one positive point), "point" (one positive point uniformly inside, SAM's first
    click in training), "points" (n_pos positives inside, n_neg negatives outside,
    uniformly at random), "box+center", "none" (prompt-free: all None; the only kind that
    accepts an empty mask). seed: int or a Generator (consumed). Empty mask -> ValueError.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {', '.join(KINDS)}")
    mask = _as_bool(gt_mask)
    if kind == "none":
        return Prompt()
    if not mask.any():
        raise ValueError("empty ground-truth mask: no object to prompt")
    if box_jitter < 0:
        raise ValueError(f"box_jitter must be >= 0, got {box_jitter}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    box = coords = labels = None
    if kind in ("box", "box+center"):
        box = tight_box(mask)
        if box_jitter > 0:
            box = _jitter_box(box, box_jitter, mask.shape, rng)
    if kind in ("center", "box+center"):
        coords, labels = center_point(mask)[None], np.ones(1, dtype=np.int64)
    if kind == "point":
        coords, labels = _random_pixels(mask, 1, rng), np.ones(1, dtype=np.int64)
    if kind == "points":
        if n_pos < 1 or n_neg < 0:
            raise ValueError(f"points need n_pos >= 1 and n_neg >= 0, got {n_pos}, {n_neg}")
        if n_neg and mask.all():
            raise ValueError("negative points requested but the mask covers the whole image")
        parts = [_random_pixels(mask, n_pos, rng)]
        if n_neg:
            parts.append(_random_pixels(~mask, n_neg, rng))
        coords = np.concatenate(parts)
        labels = np.array([1] * n_pos + [0] * n_neg, dtype=np.int64)
    return Prompt(coords, labels, box)
