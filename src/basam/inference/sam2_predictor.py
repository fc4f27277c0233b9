"""SAM2ImagePredictor: the contract of sam2.sam2_image_predictor.SAM2ImagePredictor on basam's
Predictor, with its resolution policies.

Names, arguments and returns are the official ones: `set_image` (H×W×3 RGB array or PIL image),
`set_image_batch`, `predict(..., return_logits, normalize_coords)` returning float32 masks,
`predict_batch`, `get_image_embedding`, `reset_predictor`, `mask_threshold`, `max_hole_area`,
`max_sprinkle_area`. The default resolution is SAM 2's own ("square": the image stretched to
1024×1024), so a drop-in gives the official output; N, "native" and "auto" keep the aspect ratio.

Small holes and sprinkles (`max_hole_area`, `max_sprinkle_area`) are removed on the low-res logits
by 8-connected components, as the release does with its CUDA extension (which it skips, with a
warning, where the extension is missing: on every CPU-only install).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from basam.inference.predictor import ImageEmbedding, Predictor
from basam.inference.transforms import AUTO_MAX_SIDE

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class SAM2ImagePredictor(Predictor):
    """sam_model: a SAM 2 model (basam.load_model("sam2.1_hiera_t", ...) or basam.build_sam2)."""

    def __init__(
        self,
        sam_model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        resolution=None,
        max_side: int = AUTO_MAX_SIDE,
        windows: str | None = None,
        **kwargs,
    ):
        if getattr(sam_model.cfg, "encoder", None) != "hiera":
            raise ValueError(f"SAM2ImagePredictor needs a SAM 2 model, got {sam_model.cfg.name}; use basam.Predictor")
        super().__init__(sam_model, resolution, max_side, windows)
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area

    def reset_image(self) -> None:
        super().reset_image()
        self._batch: list[ImageEmbedding] | None = None

    def reset_predictor(self) -> None:
        """Forget the current image or batch."""
        self.reset_image()

    @property
    def _is_image_set(self) -> bool:
        return self.is_image_set

    @property
    def _is_batch(self) -> bool:
        return self._batch is not None

    @property
    def _orig_hw(self) -> list[tuple[int, int]] | None:
        if self._batch is not None:
            return [e.orig_hw for e in self._batch]
        return None if self.orig_hw is None else [self.orig_hw]

    # Predictor keeps the embedding tensor in `_features`; SAM 2's release names its feature dict so.
    @property
    def features(self) -> torch.Tensor | None:
        return self.__dict__.get("_embedding")

    @features.setter
    def features(self, value: torch.Tensor | None) -> None:
        self.__dict__["_embedding"], self.early_features = value, None

    @property
    def _features(self) -> dict | None:
        """{"image_embed": (B, C, Hg, Wg), "high_res_feats": [(B, C/8, …), (B, C/4, …)]}, as the release keeps."""
        embeddings = self._batch or ([self._current()] if self.is_image_set else None)
        if embeddings is None:
            return None
        return {
            "image_embed": torch.cat([e.features for e in embeddings]),
            "high_res_feats": [torch.cat(level) for level in zip(*(e.high_res for e in embeddings))],
        }

    @_features.setter
    def _features(self, value: torch.Tensor | None) -> None:
        self.__dict__["_embedding"] = value

    def _current(self) -> ImageEmbedding:
        return ImageEmbedding(
            self.features, self.orig_hw, self.resized_hw, self.padded_hw, self.note, high_res=self.high_res
        )

    def set_image_batch(self, image_list: list[np.ndarray], batch_size: int | None = None) -> None:
        """Encode several H×W×3 RGB arrays for `predict_batch`; images of one model-input size go
        through the encoder together, `batch_size` (default: all) at a time."""
        if not isinstance(image_list, list) or not image_list:
            raise ValueError("set_image_batch expects a non-empty list of H×W×3 arrays")
        self.reset_image()
        self._batch = self.encode_images(image_list, batch_size or len(image_list))
        self.set_embedding(self._batch[0])

    def get_image_embedding(self) -> torch.Tensor:
        """The image embedding (B, C, Hg, Wg): one image after set_image, B after set_image_batch."""
        self._check_image_set()
        return self._features["image_embed"]

    @torch.no_grad()
    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ):
        """point_coords (N, 2) or (B, N, 2) xy, point_labels (N,) or (B, N), box (4,) or (B, 4) xyxy,
        in original pixels (normalize_coords=True) or as fractions of the width and height
        (normalize_coords=False); mask_input (1, h, w) or (B, 1, h, w) low-res logits. Returns masks
        (M, H, W) or (B, M, H, W) float32 (0/1, or logits with return_logits), IoU predictions and
        low-res logits clamped to ±32, as the release does."""
        self._check_image_set()
        coords = labels = boxes = masks = None
        h, w = self.orig_hw
        unit = np.array([1.0, 1.0]) if normalize_coords else np.array([w, h], dtype=np.float64)
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied")
            xy = np.asarray(point_coords, dtype=np.float64) * unit
            xy = xy[None] if xy.ndim == 2 else xy
            coords = torch.as_tensor(
                self.transform.apply_coords(xy, self.orig_hw), dtype=torch.float32, device=self.device
            )
            labels = torch.as_tensor(np.asarray(point_labels), device=self.device)
            labels = labels[None] if labels.dim() == 1 else labels
        if box is not None:
            corners = np.asarray(box, dtype=np.float64).reshape(-1, 2, 2) * unit
            boxes = torch.as_tensor(
                self.transform.apply_boxes(corners.reshape(-1, 4), self.orig_hw),
                dtype=torch.float32,
                device=self.device,
            )
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input, dtype=np.float32), device=self.device)
            masks = masks[None] if masks.dim() == 3 else masks
        out, scores, low_res = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        single = out.shape[0] == 1
        return tuple((t[0] if single else t).float().cpu().numpy() for t in (out, scores, low_res))

    def predict_batch(
        self,
        point_coords_batch=None,
        point_labels_batch=None,
        box_batch=None,
        mask_input_batch=None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ):
        """`predict` for each image of `set_image_batch`, with the i-th entry of each list →
        lists of masks, IoU predictions and low-res logits."""
        if self._batch is None:
            raise RuntimeError("predict_batch needs images set with set_image_batch(...)")
        results = ([], [], [])
        for i, embedding in enumerate(self._batch):
            self.set_embedding(embedding)
            picked = [
                None if items is None else items[i]
                for items in (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)
            ]
            out = self.predict(*picked, multimask_output, return_logits, normalize_coords)
            for store, value in zip(results, out):
                store.append(value)
        return results

    def postprocess_masks(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """Holes and sprinkles removed on the low-res logits (when asked), then to the original size."""
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            low_res_logits = self.remove_small_regions(low_res_logits)
        return super().postprocess_masks(low_res_logits)

    def remove_small_regions(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, M, h, w) logits: background components of at most max_hole_area pixels set to
        threshold + 10, foreground ones of at most max_sprinkle_area to threshold − 10 (both found
        on the logits as given, 8-connected)."""
        values = logits.detach().float().cpu().numpy()
        out = values.copy()
        for index in np.ndindex(values.shape[:2]):
            mask = values[index] > self.mask_threshold
            for region, area, fill in ((~mask, self.max_hole_area, 10.0), (mask, self.max_sprinkle_area, -10.0)):
                if area <= 0:
                    continue
                labels, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
                if count:
                    sizes = np.bincount(labels.ravel())
                    small = (labels > 0) & (sizes[labels] <= area)
                    out[index][small] = self.mask_threshold + fill
        return torch.from_numpy(out).to(logits.device, logits.dtype)


def build_sam2(config_file: str, ckpt_path=None, device: str = "cpu", mode: str = "eval", **kwargs):
    """sam2.build_sam.build_sam2's signature: a released config name or path
    ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_t") and an optional checkpoint. Keywords
    are load_model's (attn=, windows=, dtype=, …)."""
    from basam.formats.checkpoint import load_model

    name = str(config_file).removesuffix(".yaml").rsplit("/", 1)[-1]
    model = load_model(name, checkpoint=ckpt_path, device=device, **kwargs)
    return model.train() if mode == "train" else model
