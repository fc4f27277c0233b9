"""segment_anything.utils.amg's helpers, with its names, arguments and results, on basam's
implementations (basam.inference.amg_utils: no OpenCV, int64 pixel counts).

Differences, all outside what the official functions are documented for: calculate_stability_score
counts in int64 (the official int16 row sums overflow on rows wider than 32,767 px);
box_xyxy_to_xywh converts along the last axis, so (N, 4) boxes work too (the official one indexes the
first axis: right for one (4,) box only); bad arguments raise ValueError / TypeError instead of
failing an assert.
"""

from __future__ import annotations

import copy
from collections.abc import Generator, ItemsView
from typing import Any

import numpy as np
import torch

from basam.inference import amg_utils

_KINDS = (list, np.ndarray, torch.Tensor)


class MaskData:
    """Per-mask fields of equal length (lists, numpy arrays or tensors), filtered and concatenated
    together."""

    def __init__(self, **kwargs) -> None:
        for key, value in kwargs.items():
            _check_kind(key, value)
        self._stats = dict(kwargs)

    def __setitem__(self, key: str, item: Any) -> None:
        _check_kind(key, item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the entries `keep` selects in every field: a bool mask or indices (a tensor)."""
        for key, value in self._stats.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                self._stats[key] = value[torch.as_tensor(keep, device=value.device)]
            elif isinstance(value, np.ndarray):
                self._stats[key] = value[keep.detach().cpu().numpy()]
            elif isinstance(value, list):
                chosen = torch.as_tensor(keep)
                if chosen.dtype == torch.bool:
                    chosen = chosen.nonzero().flatten()
                self._stats[key] = [value[i] for i in chosen.tolist()]
            else:
                raise TypeError(f"MaskData field {key} has the unsupported type {type(value).__name__}")

    def cat(self, new_stats: MaskData) -> None:
        """Append another MaskData's entries to every field (fields new here are copied)."""
        for key, value in new_stats.items():
            mine = self._stats.get(key)
            if mine is None:
                self._stats[key] = copy.deepcopy(value)
            elif isinstance(value, torch.Tensor):
                self._stats[key] = torch.cat([mine, value], dim=0)
            elif isinstance(value, np.ndarray):
                self._stats[key] = np.concatenate([mine, value], axis=0)
            elif isinstance(value, list):
                self._stats[key] = mine + copy.deepcopy(value)
            else:
                raise TypeError(f"MaskData field {key} has the unsupported type {type(value).__name__}")

    def to_numpy(self) -> None:
        """Every tensor field to a numpy array (on the CPU)."""
        for key, value in self._stats.items():
            if isinstance(value, torch.Tensor):
                self._stats[key] = value.detach().cpu().numpy()


def _check_kind(key: str, value: Any) -> None:
    if not isinstance(value, _KINDS):
        raise TypeError(
            f"MaskData field {key}: expected a list, numpy array or torch tensor, got {type(value).__name__}"
        )


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """(K, 4) xyxy boxes in the crop's frame → (K,) bool: within atol of a crop edge that is not an
    edge of the original image (orig_box)."""
    return amg_utils.near_crop_edge(uncrop_boxes_xyxy(boxes, crop_box), crop_box, orig_box, atol)


def box_xyxy_to_xywh(box_xyxy: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy → xywh (a copy)."""
    out = copy.deepcopy(box_xyxy)
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def batch_iterator(batch_size: int, *args) -> Generator[list[Any], None, None]:
    """Slices of `batch_size` of every argument together (all of the same length); the last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_iterator batch_size={batch_size}: expected at least 1")
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError(f"batch_iterator needs arguments of one length, got {[len(a) for a in args]}")
    for start in range(0, len(args[0]), batch_size):
        yield [a[start : start + batch_size] for a in args]


def mask_to_rle_pytorch(tensor: torch.Tensor) -> list[dict[str, Any]]:
    """(B, H, W) bool → B uncompressed RLEs {"size": [H, W], "counts": [int, ...]} (column-major,
    starting with a run of zeros), pycocotools' format."""
    b, h, w = tensor.shape
    rles = amg_utils.masks_to_rle(tensor.bool(), [0, 0], (h, w))
    return [{"size": [h, w], "counts": [int(c) for c in rle["counts"]]} for rle in rles]


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE → (H, W) bool."""
    return amg_utils.rle_to_mask(rle)


def area_from_rle(rle: dict[str, Any]) -> int:
    return amg_utils.rle_area(rle)


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """(..., H, W) logits → (...) IoU of the masks thresholded at mask_threshold ± threshold_offset."""
    lead = masks.shape[:-2]
    return amg_utils.stability_score(masks.reshape(-1, *masks.shape[-2:]), mask_threshold, threshold_offset).reshape(
        lead
    )


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n², 2) points evenly spaced in [0, 1]² (cell centres), row by row."""
    return amg_utils.point_grid(n_per_side)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer, layer i with n_per_side / scale_per_layer**i points per side."""
    return amg_utils.layer_point_grids(n_per_side, n_layers, scale_per_layer)


def generate_crop_boxes(
    im_size: tuple[int, ...], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """xyxy crop boxes of an (H, W) image (the whole image, then (2**i)**2 boxes for layer i) and their layers."""
    return amg_utils.crop_boxes(tuple(im_size[:2]), n_layers, overlap_ratio)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """(..., 4) xyxy boxes in a crop's frame → the image's."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """(..., 2) xy points in a crop's frame → the image's."""
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: list[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """(..., h, w) masks of a crop → (..., orig_h, orig_w), zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    return torch.nn.functional.pad(masks, (x0, orig_w - x1, y0, orig_h - y1), value=0)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """mode "holes": fill holes smaller than area_thresh; "islands": drop islands smaller than it
    (8-connected). Returns the mask and whether it changed."""
    return amg_utils.remove_small_regions(mask, area_thresh, mode)


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE → COCO's compressed RLE with a str `counts`."""
    return amg_utils.coco_rle(uncompressed_rle)


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool → (..., 4) xyxy boxes (x1, y1 inclusive); [0, 0, 0, 0] for an empty mask."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device)
    flat = masks.reshape(-1, *masks.shape[-2:]).bool()
    return amg_utils.masks_to_boxes(flat).reshape(*masks.shape[:-2], 4)
