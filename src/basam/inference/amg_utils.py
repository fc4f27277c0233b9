"""The pieces of automatic mask generation, without torchvision or OpenCV: point grids, crop and
tile boxes, masks → boxes and run-length encodings, the stability score, box NMS, small-region
removal. Boxes are xyxy in pixels, with x1/y1 the last covered column/row, as in SAM."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage


def point_grid(n_per_side: int) -> np.ndarray:
    """(n², 2) xy points at the centres of an n×n grid of cells over [0, 1]², row by row."""
    side = np.linspace(1 / (2 * n_per_side), 1 - 1 / (2 * n_per_side), n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has n_per_side / downscale**i points per side."""
    return [point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def crop_boxes(hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """SAM's crops of an (H, W) image: the whole image (layer 0), then for layer i ≥ 1 a
    2^i × 2^i grid of overlapping crops. Returns (xyxy boxes, layer of each)."""
    h, w = hw
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        crop_w = math.ceil((overlap * (n - 1) + w) / n)
        crop_h = math.ceil((overlap * (n - 1) + h) / n)
        for x0 in [int((crop_w - overlap) * i) for i in range(n)]:
            for y0 in [int((crop_h - overlap) * i) for i in range(n)]:
                boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
                layers.append(layer)
    return boxes, layers


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of `tile` px covering `length` px with neighbours overlapping by
    at least `overlap` px, spread evenly (the last tile ends at the border)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_boxes(hw: tuple[int, int], tile: int, overlap: int) -> list[list[int]]:
    """xyxy tiles of at most tile×tile px covering an (H, W) image, row by row."""
    h, w = hw
    return [
        [x0, y0, min(x0 + tile, w), min(y0 + tile, h)]
        for y0 in tile_starts(h, tile, overlap)
        for x0 in tile_starts(w, tile, overlap)
    ]


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(K, H, W) logits -> (K,) IoU of the masks thresholded at threshold ± offset (the higher one
    lies inside the lower one). Counted in int64: SAM's int16 row sums overflow past 32,767 px."""
    inner = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int64)
    outer = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int64)
    return inner.double().div(outer.double()).float()


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool -> (K, 4) int64 xyxy (x1, y1 inclusive); an empty mask gives 0, 0, 0, 0."""

    def first_last(any_along: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(any_along.shape[-1], device=any_along.device)
        last = torch.where(any_along, idx, -1).amax(-1)
        first = torch.where(any_along, idx, any_along.shape[-1]).amin(-1)
        return first, last

    if masks.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    x0, x1 = first_last(masks.any(-2))
    y0, y1 = first_last(masks.any(-1))
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where((x1 < 0)[:, None], 0, boxes)


def near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_box: list[int], atol: float = 20.0) -> torch.Tensor:
    """(K, 4) boxes in the image frame -> (K,) bool: within atol of a crop edge that is not also an
    image edge (such a mask is probably cut by the crop)."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float32, device=boxes.device)
    boxes = boxes.float()
    at_crop = (boxes - crop).abs() <= atol
    at_image = (boxes - image).abs() <= atol
    return (at_crop & ~at_image).any(dim=1)


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, as torchvision.ops.nms: visit boxes by decreasing score
    (ties in index order), drop every later box whose IoU with a kept one exceeds the threshold.
    Box areas are (x1 - x0)·(y1 - y0) in float32. Returns kept indices, best first."""
    order = torch.sort(scores, descending=True, stable=True).indices.cpu().numpy()
    b = boxes.detach().cpu().float().numpy()[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    removed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if removed[i]:
            continue
        keep.append(order[i])
        rest = slice(i + 1, None)
        w = np.maximum(np.float32(0), np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]))
        h = np.maximum(np.float32(0), np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]))
        inter = w * h
        union = area[i] + area[rest] - inter
        # Two empty boxes: 0/0, NaN in torchvision, which suppresses nothing; IoU 0 does the same.
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        # float32 IoU compared in float64, as torchvision's kernel compares with a double.
        removed[rest] |= iou.astype(np.float64) > iou_threshold
    return torch.as_tensor(np.array(keep, dtype=np.int64))


def masks_to_rle(masks: torch.Tensor, crop_box: list[int], image_hw: tuple[int, int]) -> list[dict]:
    """(K, h, w) bool masks of a crop -> K uncompressed RLEs of the masks placed at crop_box in the
    (H, W) image: {"size": [H, W], "counts": int64 array}, column-major runs starting with a
    (possibly empty) run of zeros, as COCO. The full-size mask is never built."""
    return rles_from_boundaries(*run_boundaries(masks.transpose(1, 2)), len(masks), crop_box, image_hw)


def nonzero(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """mask.nonzero(as_tuple=True), in the same (row-major) order; on the CPU through numpy,
    several times faster than torch's for a sparse mask."""
    if mask.device.type != "cpu":
        return mask.nonzero(as_tuple=True)
    flat = np.flatnonzero(mask.numpy())
    return tuple(torch.from_numpy(i) for i in np.unravel_index(flat, mask.shape))


def run_boundaries(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K, w, h) bool masks stored column by column -> their run boundaries (mask, column, row r),
    sorted, r in 0..h meaning that the value changes between rows r-1 and r (rows -1 and h count
    as background): in each column a run starts at one boundary and ends before the next."""
    k, w, _ = columns.shape
    edge = torch.zeros(k, w, 1, dtype=torch.bool, device=columns.device)
    change = torch.cat([edge, columns, edge], dim=2).diff(dim=2)  # True where a run starts or ends
    return nonzero(change)


def boxes_from_boundaries(mask_idx: torch.Tensor, col: torch.Tensor, row: torch.Tensor, k: int) -> torch.Tensor:
    """The masks_to_boxes of K masks from their run boundaries (run_boundaries' order) -> (K, 4)
    int64 xyxy (x1, y1 inclusive); an empty mask gives 0, 0, 0, 0."""
    boxes = torch.zeros(k, 4, dtype=torch.int64, device=col.device)
    if len(mask_idx):
        starts, ends = slice(0, None, 2), slice(1, None, 2)  # boundaries pair up within each column
        for j, (values, where, reduce) in enumerate(
            [
                (col[starts], mask_idx[starts], "amin"),
                (row[starts], mask_idx[starts], "amin"),
                (col[starts], mask_idx[starts], "amax"),
                (row[ends] - 1, mask_idx[ends], "amax"),
            ]
        ):
            boxes[:, j].scatter_reduce_(0, where, values.long(), reduce, include_self=False)
    return boxes


def rles_from_boundaries(
    mask_idx: torch.Tensor, col: torch.Tensor, row: torch.Tensor, k: int, crop_box: list[int], image_hw: tuple[int, int]
) -> list[dict]:
    """K masks of a crop given by their run boundaries (run_boundaries) -> their RLEs placed at
    crop_box in the (H, W) image (masks_to_rle)."""
    img_h, img_w = image_hw
    x0, y0 = crop_box[0], crop_box[1]
    if k == 0:  # np.split below would still give one (empty) part
        return []
    flat = ((col + x0) * img_h + row + y0).cpu().numpy()  # boundary r: a run starts or ends at crop row r
    splits = np.searchsorted(mask_idx.cpu().numpy(), np.arange(1, k))
    out = []
    for changes in np.split(flat, splits):
        # A run ending at the bottom of a column and one starting at the top of the next one meet.
        starts, ends = changes[0::2], changes[1::2]
        if len(starts) == 0:
            out.append({"size": [img_h, img_w], "counts": np.array([img_h * img_w])})
            continue
        joined = np.r_[ends[:-1] == starts[1:], False]  # sorted: only the next start can meet an end
        bounds = np.sort(np.concatenate([starts[np.r_[True, ~joined[:-1]]], ends[~joined]]))
        bounds = bounds[bounds < img_h * img_w]  # a run to the last pixel ends with the image
        out.append({"size": [img_h, img_w], "counts": np.diff(np.concatenate([[0], bounds, [img_h * img_w]]))})
    return out


def rle_to_mask(rle: dict) -> np.ndarray:
    """Uncompressed RLE -> (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: dict) -> int:
    return int(np.asarray(rle["counts"])[1::2].sum())


def coco_rle(rle: dict) -> dict:
    """Uncompressed RLE -> COCO's compressed RLE with a str `counts` (JSON-ready)."""
    from pycocotools import mask as mask_utils

    h, w = rle["size"]
    out = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in rle["counts"]]}, h, w)
    out["counts"] = out["counts"].decode("utf-8")
    return out


_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_area: float, mode: str) -> tuple[np.ndarray, bool]:
    """mode "holes": fill background components (8-connected) smaller than min_area; "islands":
    drop foreground components smaller than min_area (the largest stays if all are small).
    Returns (mask, whether it changed)."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    labels, n = ndimage.label(mask != holes, structure=_EIGHT_NEIGHBOURS)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), True
