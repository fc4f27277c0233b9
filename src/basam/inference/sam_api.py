"""segment_anything's SamPredictor and SamAutomaticMaskGenerator: basam's Predictor and
AutomaticMaskGenerator under the official names, with the official constructor arguments first and
their defaults (SAM's resize-longest-side to the model's pretraining side), basam's after them."""

from __future__ import annotations

import torch

from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from basam.inference.transforms import AUTO_MAX_SIDE, Resolution
from basam.modeling.sam import Sam


class SamPredictor(Predictor):
    """`SamPredictor(sam_model)` as segment_anything's, plus basam's `resolution` (None: the model's
    pretraining side, as SAM; an int, "native" or "auto"), `max_side` and `windows` (see Predictor)."""

    def __init__(
        self,
        sam_model: Sam,
        resolution: Resolution | None = None,
        max_side: int = AUTO_MAX_SIDE,
        windows: str | None = None,
    ) -> None:
        super().__init__(sam_model, resolution=resolution, max_side=max_side, windows=windows)


class SamAutomaticMaskGenerator(AutomaticMaskGenerator):
    """`SamAutomaticMaskGenerator(model, points_per_side=32, ...)` with segment_anything's arguments,
    order and defaults; basam's (resolution, tile_size, ...) follow as keywords (see
    AutomaticMaskGenerator)."""

    @staticmethod
    def postprocess_small_regions(mask_data, min_area: int, nms_thresh: float):
        """segment_anything's step on a basam.utils.amg.MaskData with "rles" and "boxes": fill holes
        and drop islands smaller than min_area in every mask, then box NMS at nms_thresh ranking
        changed masks below unchanged ones; changed masks get new RLEs and boxes. Returns mask_data."""
        from basam.inference.amg_utils import box_nms, masks_to_boxes, remove_small_regions, rle_to_mask
        from basam.utils.amg import mask_to_rle_pytorch

        if len(mask_data["rles"]) == 0:
            return mask_data
        masks, unchanged = [], []
        for rle in mask_data["rles"]:
            mask, filled = remove_small_regions(rle_to_mask(rle), min_area, "holes")
            mask, dropped = remove_small_regions(mask, min_area, "islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (filled or dropped)))
        masks = torch.stack(masks)
        boxes = masks_to_boxes(masks)
        keep = box_nms(boxes.float(), torch.tensor(unchanged), nms_thresh)
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                mask_data["rles"][i] = mask_to_rle_pytorch(masks[i][None])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data
