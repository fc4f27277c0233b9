"""Predictor: encode an image once at a resolution policy, then answer prompts.

Same contract as segment_anything.SamPredictor (numpy in, numpy out, masks at the original image
size), plus `resolution` and a prompt-free call.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit

from .modeling.sam import Sam
from .transforms import (
    AUTO_MAX_SIDE,
    Resolution,
    boxes_to_model,
    coords_to_model,
    masks_to_original,
    model_input_size,
    normalize_and_pad,
    parse_resolution,
    resize_image,
    to_rgb_uint8,
)


class Predictor:
    """resolution: None → the model's pretraining side (SAM's resize-longest-side + pad: 1024 px
    for SAM checkpoints, 256 px for the default model), any multiple of 16 (long side → N),
    "native" (the image's own size rounded to a multiple of 16), or "auto" (smaller images resized
    up to the pretraining side, larger ones at native size up to `max_side`, with scaled windows
    whatever the model's own setting; at or below the pretraining side these equal fixed ones)."""

    mask_threshold = 0.0

    def __init__(self, model: Sam, resolution: Resolution | None = None, max_side: int = AUTO_MAX_SIDE):
        self.model = model.eval()
        self.resolution = model.cfg.img_size if resolution is None else resolution
        self.max_side = max_side
        model_input_size((64, 64), self.resolution, model.cfg.img_size, max_side)  # validate now, not at the first image
        self.windows = "scaled" if parse_resolution(self.resolution) == "auto" else None  # None: the model's
        self.features: torch.Tensor | None = None
        self.note: str | None = None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """image: H×W×3 uint8 RGB numpy or PIL (gray, RGBA and 16-bit are converted; `self.note`
        says how). Runs the image encoder once."""
        rgb, self.note = to_rgb_uint8(image)
        self.orig_hw = rgb.shape[:2]
        self.resized_hw, self.padded_hw = model_input_size(self.orig_hw, self.resolution, self.model.cfg.img_size,
                                                           self.max_side)
        x = normalize_and_pad(resize_image(rgb, self.resized_hw), self.padded_hw).to(self.model.device)
        self.features = self.model.image_encoder(x, windows=self.windows)  # 1, C, Hg, Wg

    @torch.no_grad()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """point_coords (N, 2) xy and point_labels (N,) (1 foreground, 0 background) in original
        pixels; box (4,) xyxy; mask_input (1, h, w) low-res logits from a previous call.
        No prompt at all is the prompt-free call. Returns masks (M, H, W) bool (float logits with
        return_logits), scores (M,), low-res logits (M, h, w); M = 3 with multimask_output else 1.
        """
        if self.features is None:
            raise RuntimeError("call set_image(image) before predict(...)")
        device = self.model.device
        points = boxes = masks = None
        if point_coords is not None:
            coords = self._check_xy(np.asarray(point_coords, dtype=np.float64).reshape(-1, 2), "point")
            if point_labels is None or len(point_labels) != len(coords):
                raise ValueError("point_labels must give one label per point")
            coords = coords_to_model(coords, self.orig_hw, self.resized_hw)
            points = (torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
                      torch.as_tensor(np.asarray(point_labels), dtype=torch.int64, device=device)[None])
        if box is not None:
            xyxy = self._check_xy(np.asarray(box, dtype=np.float64).reshape(2, 2), "box corner").reshape(1, 4)
            if xyxy[0, 2] < xyxy[0, 0] or xyxy[0, 3] < xyxy[0, 1]:
                raise ValueError(f"box {box} is not x0,y0,x1,y1 with x0≤x1 and y0≤y1")
            boxes = torch.as_tensor(boxes_to_model(xyxy, self.orig_hw, self.resized_hw), dtype=torch.float32, device=device)
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=device).reshape(1, 1, *np.shape(mask_input)[-2:])
        low_res, scores = self.model.decode(self.features, self.padded_hw, points, boxes, masks, multimask_output)
        full = masks_to_original(low_res, self.padded_hw, self.resized_hw, self.orig_hw)[0]
        out = full if return_logits else full > self.mask_threshold
        return out.cpu().numpy(), scores[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_proba(self, **prompt) -> np.ndarray:
        """The foreground probability (H, W) float32 at the original size, single-mask output:
        what the evaluation metrics take."""
        logits, _, _ = self.predict(**prompt, multimask_output=False, return_logits=True)
        return expit(logits[0]).astype(np.float32)

    def _check_xy(self, xy: np.ndarray, what: str) -> np.ndarray:
        h, w = self.orig_hw
        bad = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h) | ~np.isfinite(xy).all(1)
        if bad.any():
            raise ValueError(f"{what} {xy[bad][0].tolist()} lies outside the {w}×{h} image")
        return xy
