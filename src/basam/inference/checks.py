"""Argument checks where the arguments enter: the mask generator's options and the predictor's
prompt arrays. Each failure is one ValueError line naming the argument and what it must be (the
command line prints it and exits 2); valid values pass unchanged, so the official behaviour stays."""

from __future__ import annotations

import math
import numbers

import numpy as np

# generator option → (lowest, highest, whether highest is allowed); all must be finite numbers
_RANGES = {
    "pred_iou_thresh": (0.0, 1.0, True),
    "stability_score_thresh": (0.0, 1.0, True),
    "box_nms_thresh": (0.0, 1.0, True),
    "crop_nms_thresh": (0.0, 1.0, True),
    "crop_overlap_ratio": (0.0, 1.0, False),
    "stability_score_offset": (0.0, math.inf, False),
    "min_mask_region_area": (0.0, math.inf, False),
}
# integer option → its least value (None passes for points_per_side: point_grids given instead)
_COUNTS = {"points_per_side": 1, "points_per_batch": 1, "crop_n_layers": 0, "crop_n_points_downscale_factor": 1}


def check_number(name: str, value, low: float, high: float, high_ok: bool = True) -> float:
    """value: a finite real number in [low, high] (or [low, high)); returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: expected a finite number")
    if not (low <= value <= high) or (value == high and not high_ok):
        upper = "∞" if math.isinf(high) else f"{high:g}"
        raise ValueError(f"{name}={value!r}: expected a number in [{low:g}, {upper}{']' if high_ok else ')'}")
    return value


def check_count(name: str, value, least: int) -> int:
    """value: an integer ≥ least; returns it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r}: expected an integer ≥ {least}")
    if value < least:
        raise ValueError(f"{name}={value}: expected an integer ≥ {least}")
    return int(value)


def check_generator_options(point_grids=None, **options) -> None:
    """The AutomaticMaskGenerator / SamAutomaticMaskGenerator options (the official names; others
    are not looked at): thresholds and ratios finite and in range, counts integers, every crop
    layer's point grid non-empty, point_grids (N, 2) arrays in [0, 1]²."""
    for name, (low, high, high_ok) in _RANGES.items():
        if name in options:
            check_number(name, options[name], low, high, high_ok)
    for name, least in _COUNTS.items():
        if options.get(name) is not None:
            check_count(name, options[name], least)
    side, layers = options.get("points_per_side"), options.get("crop_n_layers", 0)
    factor = options.get("crop_n_points_downscale_factor", 1)
    if side is not None:
        for layer in range(1, layers + 1):
            if int(side / factor**layer) < 1:
                raise ValueError(
                    f"crop layer {layer} would have no points: points_per_side {side} / "
                    f"crop_n_points_downscale_factor {factor}**{layer} < 1; use fewer crop layers"
                )
    for i, grid in enumerate(point_grids or []):
        grid = np.asarray(grid)
        if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
            raise ValueError(f"point_grids[{i}] of shape {grid.shape}: expected (N, 2) xy points, N ≥ 1")
        if not np.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
            raise ValueError(f"point_grids[{i}]: points must be finite and in [0, 1]² (fractions of the crop)")


def check_prompt_arrays(point_coords, point_labels, box, mask_input) -> None:
    """Predictor.predict's numpy prompts: point_coords (N, 2) with point_labels (N,), box (4,) or
    (1, 4), mask_input (1, h, w) (or (h, w))."""
    if point_coords is not None:
        coords = np.asarray(point_coords)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"point_coords of shape {coords.shape}: expected (N, 2) xy")
        if point_labels is not None and np.asarray(point_labels).shape != (len(coords),):
            raise ValueError(
                f"point_labels of shape {np.asarray(point_labels).shape} for {len(coords)} points: "
                f"expected ({len(coords)},), one label per point"
            )
    if box is not None and np.asarray(box).shape not in ((4,), (1, 4)):
        raise ValueError(
            f"box of shape {np.asarray(box).shape}: expected (4,) x0, y0, x1, y1 (one box; predict_torch takes several)"
        )
    if mask_input is not None:
        shape = np.asarray(mask_input).shape
        if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)):
            raise ValueError(f"mask_input of shape {shape}: expected (1, h, w) low-res logits")


def check_prompt_tensors(boxes, mask_input) -> None:
    """Predictor.predict_torch's boxes (B, 4) (or (B, 1, 4), what predict passes) and mask_input
    (B, 1, h, w); its points are checked with their labels."""
    if boxes is not None:
        shape = tuple(boxes.shape)
        if not (len(shape) == 2 and shape[1] == 4) and not (len(shape) == 3 and shape[1:] == (1, 4)):
            raise ValueError(f"boxes of shape {shape}: expected (B, 4) x0, y0, x1, y1 in the model-input frame")
    if mask_input is not None and (mask_input.dim() != 4 or mask_input.shape[1] != 1):
        raise ValueError(f"mask_input of shape {tuple(mask_input.shape)}: expected (B, 1, h, w) low-res logits")
