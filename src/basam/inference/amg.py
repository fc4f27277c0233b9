"""AutomaticMaskGenerator: "segment everything", the official SamAutomaticMaskGenerator's
parameters, pipeline and records, at any resolution, in bounded memory, with tiles for very large
images.

Pipeline (as SAM's): for each crop (the whole image, then crop_n_layers layers of overlapping
crops) encode the crop once, prompt it with a grid of single foreground points, keep masks whose
predicted IoU and stability score pass the thresholds and that are not cut by the crop's edge,
remove duplicates by box NMS within the crop, then across crops (smaller crops win), optionally
clean small holes and islands.

What differs, so that memory stays bounded at any image size: masks are filtered on predicted IoU
*before* they are upsampled (a point with no mask above the threshold skips even the decoder's
mask upscaling), upsampled and thresholded a few at a time (`chunk_mb`), and the kept
ones are run-length encoded at once, in the image frame, without building the full-size mask.

Tiles (`tile_size=N`): an image larger than N px on a side is covered by overlapping tiles of
N×N px (neighbours overlap by at least `tile_overlap` px), which replace the whole-image crop:
each tile is encoded at its own resolution and the whole image is never encoded at a low one.
Masks near a tile edge that is not an image edge are dropped (a cut piece), so an object comes
out as one mask, from a tile that holds it whole, when its extent across a tile border is at most
the overlap (less the 20 px edge margin); duplicates from several tiles go through the cross-crop
NMS. Larger objects across a border are lost rather than returned in pieces.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from basam.inference import low_res_masks
from basam.inference.amg_utils import (
    box_nms,
    boxes_from_boundaries,
    coco_rle,
    crop_boxes,
    layer_point_grids,
    masks_to_boxes,
    masks_to_rle,
    near_crop_edge,
    remove_small_regions,
    rle_area,
    rle_to_mask,
    rles_from_boundaries,
    run_boundaries,
    tile_boxes,
)
from basam.inference.checks import check_generator_options, check_number
from basam.inference.predictor import ImageEmbedding, Predictor, check_batch_size
from basam.inference.transforms import AUTO_MAX_SIDE, Resolution, masks_to_original, to_rgb_uint8
from basam.modeling.sam import Sam

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
_TENSOR_FIELDS = ("boxes", "iou_preds", "points", "stability_score", "crop_boxes")


class AutomaticMaskGenerator:
    """The official generator's arguments and defaults (see segment_anything's
    SamAutomaticMaskGenerator), plus:

    resolution: the policy each crop or tile is encoded at (N | "native" | "auto", see Predictor);
        default: the model's pretraining side as SAM (1024 for SAM checkpoints), "auto" with tiles
        (a tile at least that large is encoded at its native size, with scaled windows).
    max_side: "auto"'s largest long side (a larger crop is resized down to it).
    tile_size: None, or N: images larger than N px are processed as N×N tiles (module docstring).
    tile_overlap: least overlap of neighbouring tiles in px; default tile_size // 4.
    chunk_mb: about how much memory one step of mask upsampling or decoding may take.
    progress: show a progress bar over the point batches of each crop.
    multimask_output: SAM's three masks per point (the official pipeline), or the single-mask
        output only, for models trained on it alone (the embedded default model).
    batch_size: crops (and, in `generate_batch`, images) encoded per encoder forward when their
        model inputs have the same size; the masks are those of one-by-one encoding.
    hq_token_only: HQ-SAM models only, as Predictor.predict's. HQ-SAM gives one mask per point
        (segment_anything_hq's generator: SAM's best multimask output plus the HQ mask).

    SAM 2 models take SAM2AutomaticMaskGenerator's parameters and defaults: pred_iou_thresh 0.8
    (None → 0.88 for SAM, 0.8 for SAM 2), mask_threshold (the logit a mask is cut at) and use_m2m
    (each mask decoded once more with its own low-res logits as the mask prompt, single-mask
    output); the default resolution is then SAM 2's square resize of each crop.
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        resolution: Resolution | None = None,
        max_side: int = AUTO_MAX_SIDE,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        chunk_mb: float = 256,
        progress: bool = False,
        multimask_output: bool = True,
        batch_size: int = 1,
        hq_token_only: bool = False,
        mask_threshold: float = 0.0,
        use_m2m: bool = False,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if pred_iou_thresh is None:  # SAM2AutomaticMaskGenerator's default for SAM 2, SamAutomaticMaskGenerator's else
            pred_iou_thresh = 0.8 if getattr(model.cfg, "encoder", None) == "hiera" else 0.88
        check_generator_options(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids,
            min_mask_region_area=min_mask_region_area,
        )
        check_number("chunk_mb", chunk_mb, 0, math.inf)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode {output_mode!r}: expected one of {', '.join(OUTPUT_MODES)}")
        if points_per_batch < 1 or (points_per_side is not None and points_per_side < 1):
            raise ValueError("points_per_side and points_per_batch must be positive")
        if tile_size is not None:
            tile_overlap = tile_size // 4 if tile_overlap is None else tile_overlap
            if tile_size < 64 or not 0 <= tile_overlap < tile_size:
                raise ValueError(
                    f"tile_size {tile_size} / tile_overlap {tile_overlap}: need tile_size ≥ 64 and "
                    f"0 ≤ tile_overlap < tile_size"
                )
        if points_per_side is not None:
            point_grids = layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        if len(point_grids) < crop_n_layers + 1:
            raise ValueError(f"point_grids has {len(point_grids)} grids for {crop_n_layers + 1} crop layers")
        if resolution is None and tile_size:
            resolution = "auto"
        if hq_token_only and not model.is_hq:
            raise ValueError(f"hq_token_only needs an HQ-SAM model; {model.cfg.name} has no HQ token")
        self.hq_token_only = hq_token_only
        self.predictor = Predictor(model, resolution, max_side)
        self.predictor.mask_threshold = mask_threshold
        if use_m2m and not self.predictor.is_sam2:
            raise ValueError("use_m2m is SAM 2's mask-to-mask refinement: it needs a SAM 2 model")
        self.use_m2m = use_m2m
        self.point_grids = point_grids
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.tile_size, self.tile_overlap = tile_size, tile_overlap
        self.chunk_bytes = chunk_mb * 2**20
        self.progress = progress
        self.multimask_output = multimask_output
        self.batch_size = check_batch_size(batch_size)
        self._image_side: dict | None = None

    @torch.no_grad()
    def generate(self, image) -> list[dict]:
        """image: (H, W, 3) uint8 RGB (or anything Predictor.set_image takes). Returns one record
        per mask: segmentation ((H, W) bool, or an uncompressed / COCO RLE dict by output_mode),
        area, bbox (XYWH), predicted_iou, point_coords [[x, y]], stability_score, crop_box (XYWH)."""
        return self.generate_batch([image])[0]

    @torch.no_grad()
    def generate_batch(self, images: list) -> list[list[dict]]:
        """`generate` for several images → their records, in order; the crops of all of them go
        through the encoder `batch_size` at a time (those of one input size together)."""
        images = [to_rgb_uint8(image)[0] for image in images]
        crops = [
            (n, box, layer) for n, image in enumerate(images) for box, layer in zip(*self.crop_boxes(image.shape[:2]))
        ]
        parts = [[] for _ in images]
        for start in range(0, len(crops), self.batch_size):
            group = crops[start : start + self.batch_size]
            embeddings = self.predictor.encode_images(
                [images[n][y0:y1, x0:x1] for n, (x0, y0, x1, y1), _ in group], self.batch_size
            )
            for (n, box, layer), embedding in zip(group, embeddings):
                parts[n].append(self._process_crop(embedding, box, layer, images[n].shape[:2]))
        return [self._records(self._merge_crops(crop_parts)) for crop_parts in parts]

    def _records(self, data: dict) -> list[dict]:
        if self.min_mask_region_area > 0:
            data = self._remove_small_regions(data)
        records = []
        for i, rle in enumerate(data["rles"]):
            if self.output_mode == "coco_rle":
                segmentation = coco_rle(rle)
            elif self.output_mode == "binary_mask":
                segmentation = rle_to_mask(rle)
            else:
                segmentation = {"size": rle["size"], "counts": [int(c) for c in rle["counts"]]}
            records.append(
                {
                    "segmentation": segmentation,
                    "area": rle_area(rle),
                    "bbox": _xywh(data["boxes"][i]),
                    "predicted_iou": data["iou_preds"][i].item(),
                    "point_coords": [data["points"][i].tolist()],
                    "stability_score": data["stability_score"][i].item(),
                    "crop_box": _xywh(data["crop_boxes"][i]),
                }
            )
        return records

    def crop_boxes(self, image_hw: tuple[int, int]) -> tuple[list[list[int]], list[int]]:
        """xyxy crops of an (H, W) image and their layers: SAM's crops, or with tiles, every tile
        as a layer-0 crop with its own crop layers inside it."""
        if self.tile_size is None or max(image_hw) <= self.tile_size:
            return crop_boxes(image_hw, self.crop_n_layers, self.crop_overlap_ratio)
        boxes, layers = [], []
        for tx0, ty0, tx1, ty1 in tile_boxes(image_hw, self.tile_size, self.tile_overlap):
            inner, inner_layers = crop_boxes((ty1 - ty0, tx1 - tx0), self.crop_n_layers, self.crop_overlap_ratio)
            boxes += [[x0 + tx0, y0 + ty0, x1 + tx0, y1 + ty0] for x0, y0, x1, y1 in inner]
            layers += inner_layers
        return boxes, layers

    def _merge_crops(self, parts: list[dict]) -> dict:
        """The kept masks of all crops of one image; duplicates between crops: the smaller crop wins."""
        data = _cat(parts)
        if len(parts) > 1:
            x0, y0, x1, y1 = data["crop_boxes"].unbind(1)
            data = _filter(data, box_nms(data["boxes"], 1 / ((x1 - x0) * (y1 - y0)), self.crop_nms_thresh))
        return data

    def _process_crop(
        self, embedding: ImageEmbedding, crop_box: list[int], layer: int, image_hw: tuple[int, int]
    ) -> dict:
        x0, y0, x1, y1 = crop_box
        self.predictor.set_embedding(embedding)
        points = self.point_grids[layer] * np.array(embedding.orig_hw[::-1])[None]
        starts = range(0, len(points), self.points_per_batch)
        if self.progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"crop {crop_box}", unit="batch", leave=False)
        self._image_side = None  # the decoder's prompt-independent work on this crop, made by the first group
        data = _cat([self._process_batch(points[s : s + self.points_per_batch], crop_box, image_hw) for s in starts])
        self.predictor.reset_image()
        self._image_side = None
        data = _filter(data, box_nms(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        data["boxes"] = data["boxes"] + torch.tensor([x0, y0, x0, y0])
        data["points"] = data["points"] + torch.tensor([x0, y0], dtype=torch.float64)
        data["crop_boxes"] = torch.tensor([crop_box] * len(data["rles"]), dtype=torch.int64).reshape(-1, 4)
        return data

    def _process_batch(self, points: np.ndarray, crop_box: list[int], image_hw: tuple[int, int]) -> dict:
        """(B, 2) xy points in crop pixels -> the masks that pass the filters, as RLEs in the image
        frame, with boxes in the crop frame. On a large grid the points go through the decoder a
        few at a time, and each group's masks are filtered and encoded before the next group is
        decoded."""
        pred = self.predictor
        c, gh, gw = pred.features.shape[1:]
        image_pe = pred.model.prompt_encoder.get_dense_pe((gh, gw))
        step = max(1, int(self.chunk_bytes // (64 * c * gh * gw)))  # ~16 float copies of the embedding per point
        hq = None
        if pred.model.is_hq:  # the HQ features are the image's, shared by its points; HQ masks take ~2× the memory
            hq, step = pred.model.mask_decoder.hq_features(pred.features, pred.early_features), max(1, step // 2)
        out = {"rles": [], "boxes": [], "iou_preds": [], "points": [], "stability_score": []}
        for s in range(0, len(points), step):
            rows, low_res, iou_preds = self._decode_points(points[s : s + step], image_pe, hq)
            point_of = torch.as_tensor(np.repeat(points[s : s + step][rows.numpy()], low_res.shape[1], axis=0))
            self._filter_and_encode(low_res.flatten(0, 1), iou_preds.flatten(0, 1), point_of, crop_box, image_hw, out)
        for k in _TENSOR_FIELDS[:-1]:
            out[k] = torch.cat(out[k]) if out[k] else _empty(k)
        return out

    def _decode_points(
        self, points: np.ndarray, image_pe: torch.Tensor, hq_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Single foreground points (b, 2) in crop pixels -> which of them have a mask above the
        predicted-IoU threshold (b,) bool, and for those points only, low-res logits (b', M, h, w)
        and IoU predictions (b', M); M = 3 with multimask_output, else 1. The others' masks would be
        dropped unseen, so they are not upscaled (most of a point's cost after the transformer).
        HQ-SAM (hq_features given, (1, C/8, 4Hg, 4Wg)): M = 1, the release's combined mask."""
        pred = self.predictor
        coords = torch.as_tensor(pred.transform.apply_coords(points, pred.original_size), dtype=torch.float32)
        coords = coords.to(pred.device)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=pred.device)
        if pred.is_sam2:
            return self._decode_points_sam2(coords, labels)
        sparse, dense = pred.model.prompt_encoder((coords, labels), None, None, pred.padded_hw)
        decoder = pred.model.mask_decoder
        if self._image_side is None:  # the same image and dense (no-mask) embedding for every point
            self._image_side = decoder.prepare_image(pred.features, image_pe, dense[:1])
        iou_preds, mask_tokens, keys = decoder.run_transformer(
            pred.features, image_pe, sparse, dense[:1], prepared=self._image_side
        )
        if hq_features is not None:
            return self._decode_hq(iou_preds, mask_tokens, keys, hq_features)
        tokens = slice(1, None) if self.multimask_output else slice(0, 1)
        iou_preds = iou_preds[:, tokens]
        rows = torch.ones(len(points), dtype=torch.bool, device=iou_preds.device)
        if self.pred_iou_thresh > 0:
            rows = (iou_preds > self.pred_iou_thresh).any(1)
        low_res = decoder.upscale_masks(mask_tokens[rows], keys[rows], pred.features.shape[-2:], tokens)
        return rows.cpu(), low_res.float().cpu(), iou_preds[rows].float().cpu()

    def _decode_hq(
        self, iou_preds: torch.Tensor, mask_tokens: torch.Tensor, keys: torch.Tensor, hq_features: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """_decode_points for HQ-SAM: SAM's mask token the release pairs with the HQ one, chosen
        and thresholded on its predicted IoU before any mask is upscaled."""
        decoder = self.predictor.model.mask_decoder
        token, score = decoder.select_sam_mask(iou_preds, self.multimask_output)
        rows = score[:, 0] > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(score[:, 0]).bool()
        low_res = decoder.hq_masks(
            mask_tokens[rows],
            keys[rows],
            self.predictor.features.shape[-2:],
            hq_features,
            None if self.hq_token_only else token[rows],
        )
        return rows.cpu(), low_res.float().cpu(), score[rows].float().cpu()

    def _decode_points_sam2(self, coords: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`_decode_points` for SAM 2 (coords (b, 1, 2) in model-input pixels): the decoder with the
        image's high-resolution maps; with use_m2m every mask decoded again from its own clamped
        low-res logits, single-mask output, before any filtering (as the release does)."""
        pred = self.predictor
        low_res, iou_preds = pred.model.decode(
            pred.features,
            pred.padded_hw,
            (coords, labels),
            None,
            None,
            self.multimask_output,
            high_res_features=pred.high_res,
        )
        if self.use_m2m:
            b, m = low_res.shape[:2]
            prior = low_res.clamp(-32.0, 32.0).flatten(0, 1)[:, None]
            points = (coords.repeat_interleave(m, 0), labels.repeat_interleave(m, 0))
            low_res, iou_preds = pred.model.decode(
                pred.features, pred.padded_hw, points, None, prior, False, high_res_features=pred.high_res
            )
            low_res, iou_preds = low_res.view(b, m, *low_res.shape[-2:]), iou_preds.view(b, m)
        rows = torch.ones(len(coords), dtype=torch.bool, device=iou_preds.device)
        if self.pred_iou_thresh > 0:
            rows = (iou_preds > self.pred_iou_thresh).any(1)
        return rows.cpu(), low_res[rows].float().cpu(), iou_preds[rows].float().cpu()

    def _filter_and_encode(
        self,
        low_res: torch.Tensor,
        iou_preds: torch.Tensor,
        point_of: torch.Tensor,
        crop_box: list[int],
        image_hw: tuple[int, int],
        out: dict,
    ) -> None:
        """Masks (K, h, w) low-res logits: keep those that pass the predicted-IoU and stability
        thresholds and are not cut by the crop edge, appending their RLEs and fields to `out`.
        Where the crop's masks are one ×4 upsampling of the logits (the crop's long side is the
        model input side), counts and run boundaries come from the low-res logits (low_res_masks);
        otherwise the masks are upsampled as the predictor upsamples them (SAM 2: in one step), column by
        column, a few at a time."""
        pred = self.predictor
        keep = torch.arange(len(low_res))
        if self.pred_iou_thresh > 0:
            keep = keep[iou_preds > self.pred_iou_thresh]
        if low_res_masks.applies(low_res.shape[-2:], pred.padded_hw, pred.resized_hw, pred.original_size):
            chunks, per_mask = [keep], None
        else:
            h, w = pred.original_size
            per_mask = 4 * (h * w * 2 + pred.padded_hw[0] * pred.padded_hw[1])  # logits, bilinear steps, bool
            chunks = torch.split(keep, max(1, int(self.chunk_bytes // per_mask)))
        t, offset = pred.mask_threshold, self.stability_score_offset
        for chunk in chunks:
            if per_mask is None:
                cells = low_res_masks.LowResMasks(low_res[chunk], pred.resized_hw)
                inner, outer = cells.count_above(t + offset, t - offset)
            else:
                columns = _upsampled_columns(pred, low_res[chunk])
                inner, outer = (columns > t + offset).flatten(1).sum(1), (columns > t - offset).flatten(1).sum(1)
            stability = inner.double().div(outer.double()).float()
            passed = stability >= self.stability_score_thresh
            if self.stability_score_thresh <= 0:  # off, as SAM: even an empty mask's NaN score passes
                passed = torch.ones_like(passed)
            if per_mask is None:
                kept = (
                    cells if bool(passed.all()) else low_res_masks.LowResMasks(low_res[chunk][passed], pred.resized_hw)
                )
                mask_idx, col, row = kept.run_boundaries(t)
            else:
                mask_idx, col, row = run_boundaries(columns[passed] > t)
                del columns
            boxes = boxes_from_boundaries(mask_idx, col, row, int(passed.sum()))
            whole = ~near_crop_edge(boxes + torch.tensor(crop_box[:2] * 2), crop_box, [0, 0, image_hw[1], image_hw[0]])
            chosen = chunk[passed][whole]
            on = whole[mask_idx]
            renumbered = whole.cumsum(0) - 1
            out["rles"] += rles_from_boundaries(
                renumbered[mask_idx[on]], col[on], row[on], len(chosen), crop_box, image_hw
            )
            out["boxes"].append(boxes[whole])
            out["iou_preds"].append(iou_preds[chosen])
            out["points"].append(point_of[chosen])
            out["stability_score"].append(stability[passed][whole])

    def _remove_small_regions(self, data: dict) -> dict:
        """Fill small holes and drop small islands of every mask, then NMS again with changed
        masks ranked below unchanged ones (SAM's postprocess_small_regions)."""
        if not data["rles"]:
            return data
        new_rles, boxes, unchanged = [], [], []
        for rle in data["rles"]:
            mask = rle_to_mask(rle)
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, dropped = remove_small_regions(mask, self.min_mask_region_area, "islands")
            changed = filled or dropped
            unchanged.append(float(not changed))
            tensor = torch.from_numpy(mask)[None]
            boxes.append(masks_to_boxes(tensor)[0])
            new_rles.append(masks_to_rle(tensor, [0, 0], mask.shape)[0] if changed else rle)
        boxes = torch.stack(boxes)
        keep = box_nms(boxes, torch.tensor(unchanged), max(self.box_nms_thresh, self.crop_nms_thresh))
        data["rles"] = new_rles
        data["boxes"] = torch.where(torch.tensor(unchanged)[:, None] == 0, boxes, data["boxes"])
        return _filter(data, keep)


def _upsampled_columns(pred: Predictor, low_res: torch.Tensor) -> torch.Tensor:
    """(K, h, w) low-res logits -> (K, W, H) logits at the crop's size, transposed: the transposed
    logits upsample to the transposed masks, in RLE order. As the predictor's postprocess_masks:
    under "square" (SAM 2) one bilinear step to the crop, else ×4 to the padded input, the cut and
    a second resize (SAM's). The two differ by up to a few tenths of a logit on a non-square crop."""
    columns = low_res[:, None].transpose(-1, -2)
    if pred.transform.square:
        out = F.interpolate(columns, tuple(pred.original_size[::-1]), mode="bilinear", align_corners=False)
    else:
        out = masks_to_original(columns, pred.padded_hw[::-1], pred.resized_hw[::-1], pred.original_size[::-1])
    return out[:, 0]


def _empty(field: str) -> torch.Tensor:
    shapes = {"boxes": (0, 4), "points": (0, 2), "crop_boxes": (0, 4)}
    dtypes = {"boxes": torch.int64, "points": torch.float64, "crop_boxes": torch.int64}
    return torch.zeros(shapes.get(field, (0,)), dtype=dtypes.get(field, torch.float32))


def _cat(parts: list[dict]) -> dict:
    out = {"rles": [rle for part in parts for rle in part["rles"]]}
    for k in _TENSOR_FIELDS if not parts else [k for k in parts[0] if k != "rles"]:
        out[k] = torch.cat([part[k] for part in parts]) if parts else _empty(k)
    return out


def _filter(data: dict, keep: torch.Tensor) -> dict:
    out = {k: v[keep] for k, v in data.items() if k != "rles"}
    out["rles"] = [data["rles"][i] for i in keep.tolist()]
    return out


def _xywh(box: torch.Tensor) -> list[int]:
    x0, y0, x1, y1 = box.tolist()
    return [x0, y0, x1 - x0, y1 - y0]
