"""Predictor: encode an image once at a resolution policy, then answer prompts.

segment_anything.SamPredictor's public contract (names, arguments, shapes, dtypes, returns: numpy
in and out for `predict`, torch for `predict_torch`, masks at the original image size), plus
`resolution`, a prompt-free call and `predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit

from basam.inference.checks import check_prompt_arrays, check_prompt_tensors
from basam.inference.transforms import (
    AUTO_MAX_SIDE,
    Resolution,
    ResolutionTransform,
    masks_to_original,
    normalize_and_pad,
    parse_resolution,
    to_rgb_uint8,
)
from basam.modeling.sam import Sam

POINT_LABELS = (-1, 0, 1)  # padding point, background, foreground: what the prompt encoder knows


def check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return batch_size


@dataclass
class ImageEmbedding:
    """One encoded image: what `set_image` leaves in the predictor, held apart so that several
    images can be encoded in one forward (`encode_images`) and prompted in turn (`set_embedding`)."""

    features: torch.Tensor  # (1, C, Hg, Wg)
    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    note: str | None = None
    early_features: torch.Tensor | None = None  # HQ-SAM: the encoder's early feature (1, C_vit, Hg, Wg)
    high_res: list[torch.Tensor] | None = None  # SAM 2: (1, C/8, 4Hg, 4Wg), (1, C/4, 2Hg, 2Wg)


class Predictor:
    """resolution: None → the model's own preprocessing (SAM: resize-longest-side to the pretraining
    side + pad, 1024 px for SAM checkpoints, 256 px for the default model; SAM 2: "square"), any
    multiple of 16 (32 for SAM 2) (long side → N, padded), "native" (the image's own size rounded to
    that multiple), "auto" (smaller images resized up to the pretraining side, larger ones at
    native size up to `max_side`, with scaled windows whatever the model's own setting; at or below
    the pretraining side these equal fixed ones) or "square" (both sides resized to the pretraining
    side, the aspect ratio not kept, as SAM 2 does)."""

    mask_threshold = 0.0

    def __init__(
        self,
        model: Sam,
        resolution: Resolution | None = None,
        max_side: int = AUTO_MAX_SIDE,
        windows: str | None = None,
    ):
        """windows: "fixed" | "scaled" for this predictor's encodings; None → "scaled" under auto,
        else the model's setting. The model is never changed."""
        self.model = model.eval()
        self.is_sam2 = getattr(model.cfg, "encoder", "vit") == "hiera"
        if resolution is None:
            resolution = "square" if self.is_sam2 else model.cfg.img_size
        self.resolution = resolution
        self.max_side = max_side
        # SAM 2 resizes as its release does (float antialiased bilinear), at multiples of Hiera's stride.
        self.transform = ResolutionTransform(
            self.resolution,
            model.cfg.img_size,
            max_side,
            multiple=getattr(model.cfg, "input_multiple", 16),
            float_resize=self.is_sam2,
        )
        if windows not in (None, "fixed", "scaled"):
            raise ValueError(f"windows={windows!r}: expected 'fixed' or 'scaled'")
        self.windows = windows or ("scaled" if parse_resolution(self.resolution) == "auto" else None)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image (its embedding, sizes and conversion note)."""
        self.is_image_set = False
        self.note: str | None = None
        self._features: torch.Tensor | None = None
        self.early_features: torch.Tensor | None = None
        self.high_res: list[torch.Tensor] | None = None
        self.orig_hw = self.resized_hw = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None  # segment_anything's, never read

    # The image's state, as segment_anything's SamPredictor holds it: a client may compute the
    # embedding itself and write features, original_size, input_size and is_image_set by hand.
    @property
    def features(self) -> torch.Tensor | None:
        """(1, C, Hg, Wg) image embedding of the current image."""
        return self._features

    @features.setter
    def features(self, value: torch.Tensor | None) -> None:
        # An embedding written by hand belongs to another image than the HQ-SAM early feature held
        # so far: drop that feature, so that predict asks for this image's one instead of mixing two.
        self._features, self.early_features = value, None

    @property
    def original_size(self) -> tuple[int, int] | None:
        """(H, W) of the image as given."""
        return self.orig_hw

    @original_size.setter
    def original_size(self, hw) -> None:
        self.orig_hw = None if hw is None else (int(hw[0]), int(hw[1]))

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(h, w) of the resized image inside the (padded) model input."""
        return self.resized_hw

    @input_size.setter
    def input_size(self, hw) -> None:
        self.resized_hw = None if hw is None else (int(hw[-2]), int(hw[-1]))

    @property
    def padded_hw(self) -> tuple[int, int] | None:
        """(Hp, Wp) of the padded model input: the embedding's token grid times the patch size."""
        if self.features is None:
            return None
        patch = self.model.cfg.patch_size
        return self.features.shape[-2] * patch, self.features.shape[-1] * patch

    def set_image(self, image, image_format: str = "RGB") -> None:
        """image: H×W×3 uint8 numpy or PIL, RGB or (image_format="BGR") BGR; gray, RGBA and 16-bit
        are converted (`self.note` says how). Runs the image encoder once. If anything fails the
        predictor is left without an image, never with the previous one's embedding."""
        self.reset_image()
        self.set_embedding(self.encode_images([image], image_format=image_format)[0])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, int]) -> None:
        """transformed_image: (1, 3, h, w) RGB values 0..255, already resized by `self.transform`
        (h, w = transform.sizes(original_image_size)[0]); original_image_size: (H, W)."""
        self.reset_image()
        self.set_embedding(self._encode([(transformed_image, original_image_size)], 1)[0])

    @torch.no_grad()
    def encode_images(self, images: list, batch_size: int = 1, image_format: str = "RGB") -> list[ImageEmbedding]:
        """Encode several images as `set_image` would, without changing the current one: images
        whose padded model inputs have the same size go through the encoder up to `batch_size` at a
        time. Returns one ImageEmbedding per image, in order, for `set_embedding`."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        inputs, notes = [], []
        for image in images:
            rgb, note = to_rgb_uint8(image)
            if image_format == "BGR":
                rgb = np.ascontiguousarray(rgb[..., ::-1])
            inputs.append((self.transform.image_tensor(rgb), rgb.shape[:2]))
            notes.append(note)
        embeddings = self._encode(inputs, batch_size)
        for embedding, note in zip(embeddings, notes):
            embedding.note = note
        return embeddings

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make an image encoded by `encode_images` the current one, as if `set_image` had run."""
        self._features, self.early_features = embedding.features, embedding.early_features
        self.high_res = embedding.high_res
        self.orig_hw, self.resized_hw = embedding.orig_hw, embedding.resized_hw
        self.note = embedding.note
        self.is_image_set = True

    def _encode(self, inputs: list[tuple[torch.Tensor, tuple[int, int]]], batch_size: int) -> list[ImageEmbedding]:
        """(transformed image (1, 3, h, w), original (H, W)) pairs → their embeddings, one encoder
        forward per `batch_size` images of the same padded input size."""
        check_batch_size(batch_size)
        sizes, groups = [], {}
        for i, (image, original_size) in enumerate(inputs):
            orig_hw = (int(original_size[0]), int(original_size[1]))
            resized_hw, padded_hw = self.transform.sizes(orig_hw)
            shape = tuple(image.shape)
            if len(shape) != 4 or shape[:2] != (1, 3) or shape[2:] != resized_hw:
                raise ValueError(
                    f"set_torch_image expects a (1, 3, {resized_hw[0]}, {resized_hw[1]}) image for an "
                    f"original size {orig_hw} at resolution {self.resolution}, got {shape}"
                )
            sizes.append((orig_hw, resized_hw, padded_hw))
            groups.setdefault(padded_hw, []).append(i)
        out = [None] * len(inputs)
        for padded_hw, members in groups.items():
            for start in range(0, len(members), batch_size):
                part = members[start : start + batch_size]
                x = torch.cat([normalize_and_pad(inputs[i][0].to(self.device), padded_hw) for i in part])
                # the second output: HQ-SAM's early feature, SAM 2's high-resolution maps, else None
                features, extra = self.model.encode(x, windows=self.windows)  # b, C, Hg, Wg
                for j, i in enumerate(part):
                    early_j = None if extra is None or self.is_sam2 else extra[j : j + 1]
                    maps = [level[j : j + 1] for level in extra] if self.is_sam2 else None
                    out[i] = ImageEmbedding(features[j : j + 1], *sizes[i], early_features=early_j, high_res=maps)
        return out

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding (1, C, Hg, Wg)."""
        self._check_image_set()
        return self.features

    @torch.no_grad()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """point_coords (N, 2) xy and point_labels (N,) (1 foreground, 0 background) in original
        pixels (points outside the image are allowed, as in SAM); box (4,) xyxy; mask_input
        (1, h, w) low-res logits from a previous call, at this or any other resolution (SAM's
        256×256 included). No prompt at all is the prompt-free call. Returns masks (M, H, W) bool
        (float32 logits with return_logits), scores (M,) float32, low-res logits (M, h, w) float32;
        M = 3 with multimask_output else 1. HQ-SAM models return one mask (M = 1) either way, as
        the release does: SAM's single mask (or, with multimask_output, the multimask one with the
        highest score) plus the HQ mask, or with hq_token_only the HQ mask alone.
        """
        self._check_image_set()
        check_prompt_arrays(point_coords, point_labels, box, mask_input)
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            xy = self.transform.apply_coords(np.asarray(point_coords, dtype=np.float64).reshape(-1, 2), self.orig_hw)
            coords = torch.as_tensor(xy, dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(np.asarray(point_labels).reshape(-1), device=self.device)[None]
        if box is not None:
            xyxy = self.transform.apply_boxes(np.asarray(box, dtype=np.float64).reshape(1, 4), self.orig_hw)
            boxes = torch.as_tensor(xyxy, dtype=torch.float32, device=self.device)
        if mask_input is not None:
            mask_input = np.asarray(mask_input, dtype=np.float32)
            masks = torch.as_tensor(mask_input, device=self.device).reshape(1, 1, *mask_input.shape[-2:])
        out, scores, low_res = self.predict_torch(
            coords, labels, boxes, masks, multimask_output, return_logits, hq_token_only
        )
        # under bf16 autocast (the trainer's validation) the floats come back bf16; numpy has none
        floats = (t if t.dtype == torch.bool else t.float() for t in (out[0], scores[0], low_res[0]))
        return tuple(t.cpu().numpy() for t in floats)

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B prompt sets against the current image, already in the model-input frame
        (`self.transform.apply_coords_torch` / `apply_boxes_torch`): point_coords (B, N, 2) xy,
        point_labels (B, N), boxes (B, 4) xyxy, mask_input (B, 1, h, w) low-res logits (any h×w).
        Returns masks (B, M, H, W) bool (float32 logits with return_logits) at the original size,
        scores (B, M) and low-res logits (B, M, h', w'); hq_token_only and M as in `predict`."""
        self._check_image_set()
        check_prompt_tensors(boxes, mask_input)
        points = None
        if point_coords is not None:
            points = self._check_points(point_coords, point_labels)
        if boxes is not None:
            boxes = boxes.to(self.device, torch.float32).reshape(-1, 4)
            if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
                raise ValueError(f"box {boxes[0].tolist()} is not x0,y0,x1,y1 with x0≤x1 and y0≤y1")
        if mask_input is not None:
            mask_input = self._mask_to_grid(mask_input.to(self.device, torch.float32))
        if hq_token_only and not self.model.is_hq:
            raise ValueError(f"hq_token_only needs an HQ-SAM model; {self.model.cfg.name} has no HQ token")
        if self.is_sam2:
            low_res, scores = self.model.decode(
                self.features,
                self.padded_hw,
                points,
                boxes,
                mask_input,
                multimask_output,
                high_res_features=self.high_res,
            )
        else:
            low_res, scores = self.model.decode(
                self.features,
                self.padded_hw,
                points,
                boxes,
                mask_input,
                multimask_output,
                self.early_features,
                hq_token_only,
            )
        masks = self.postprocess_masks(low_res)
        if self.is_sam2:  # SAM 2's predictor hands back clamped low-res logits (masks come from unclamped ones)
            low_res = low_res.clamp(-32.0, 32.0)
        return (masks if return_logits else masks > self.mask_threshold), scores, low_res

    def postprocess_masks(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """(B, M, h', w') low-res logits of the current image -> (B, M, H, W) logits at its original size.
        Under "square" (no padding, the image stretched) in one step, as SAM 2 does."""
        if self.transform.square:
            return F.interpolate(low_res_logits, tuple(self.orig_hw), mode="bilinear", align_corners=False)
        return masks_to_original(low_res_logits, self.padded_hw, self.resized_hw, self.orig_hw)

    @torch.no_grad()
    def predict_proba(self, **prompt) -> np.ndarray:
        """The foreground probability (H, W) float32 at the original size, single-mask output:
        what the evaluation metrics take."""
        logits, _, _ = self.predict(**prompt, multimask_output=False, return_logits=True)
        return expit(logits[0]).astype(np.float32)

    def _check_image_set(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("call set_image(image) before predict(...)")
        missing = [name for name in ("features", "original_size", "input_size") if getattr(self, name) is None]
        if missing:
            raise RuntimeError(
                f"is_image_set is True but {', '.join(missing)} not set: set_image(image), or set "
                f"features, original_size and input_size together"
            )
        if self.model.is_hq and self.early_features is None:
            raise RuntimeError(
                "HQ-SAM also needs this image's early encoder feature: after setting features by hand, "
                "set early_features too (the encoder's second output), or call set_image(image)"
            )

    def _check_points(self, coords: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if labels is None:
            raise ValueError("point_labels must be given with point_coords")
        coords = coords.to(self.device, torch.float32)
        labels = torch.as_tensor(labels, device=self.device)
        if coords.dim() != 3 or coords.shape[-1] != 2 or tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(
                f"point_coords (B, N, 2) and point_labels (B, N) expected, got {tuple(coords.shape)} "
                f"and {tuple(labels.shape)}: one label per point"
            )
        if not torch.isfinite(coords).all():
            raise ValueError("point coordinates must be finite")
        if labels.is_floating_point() and (labels != labels.round()).any():
            raise ValueError(f"point labels must be integers {POINT_LABELS}, got {labels.flatten().tolist()[:8]}")
        labels = labels.long()
        bad = ~torch.isin(labels, torch.tensor(POINT_LABELS, device=self.device))
        if bad.any():
            raise ValueError(
                f"point label {labels[bad][0].item()}: labels must be 1 (foreground), 0 (background) or -1 (padding)"
            )
        return coords, labels

    def _mask_to_grid(self, mask_input: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) low-res logits of any run -> this image's low-res frame (B, 1, Hp/4, Wp/4).

        A square input from another square-padded run (SAM's 256×256) has the image in the same
        top-left fraction as this one, so it is resized whole; onto an unpadded ("native") frame,
        the image's part of it is cut out first. A non-square input is taken to cover the image."""
        target = (self.padded_hw[0] // 4, self.padded_hw[1] // 4)
        h, w = mask_input.shape[-2:]
        if (h, w) == target:
            return mask_input
        if h == w and self.padded_hw == self.resized_hw and self.padded_hw[0] != self.padded_hw[1]:
            scale = h / max(self.orig_hw)
            content = [max(1, round(side * scale)) for side in self.orig_hw]
            mask_input = mask_input[..., : content[0], : content[1]]
        return F.interpolate(mask_input, target, mode="bilinear", align_corners=False)
