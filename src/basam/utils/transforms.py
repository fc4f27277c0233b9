"""segment_anything.utils.transforms.ResizeLongestSide: resize images, points and boxes so that the
long side is `target_length`, for numpy arrays and batched torch tensors.

What a predictor needs under basam's resolution policies is `predictor.transform` (a
basam.inference.transforms.ResolutionTransform with the same methods); this class is SAM's fixed
policy alone, for code that builds one itself, e.g. `ResizeLongestSide(sam.image_encoder.img_size)`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from basam.inference.transforms import coords_to_model, get_preprocess_shape, resize_image


class ResizeLongestSide:
    """The long side of an image to `target_length` px (sides rounded half up), bilinear."""

    def __init__(self, target_length: int) -> None:
        if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < 1:
            raise ValueError(f"ResizeLongestSide target_length={target_length!r}: expected a positive integer")
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """(h, w) of an oldh × oldw image with its long side scaled to long_side_length."""
        return get_preprocess_shape(oldh, oldw, long_side_length)

    def _new_hw(self, original_size) -> tuple[int, int]:
        return get_preprocess_shape(original_size[0], original_size[1], self.target_length)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 → (h, w, 3) uint8 (PIL bilinear, the pixels SAM's torchvision resize gives)."""
        return resize_image(image, self._new_hw(image.shape[:2]))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 2) xy in pixels of an image of original_size (H, W) → resized-image pixels, float64."""
        return coords_to_model(coords, original_size, self._new_hw(original_size))

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(B, 4) xyxy → (B, 4) in resized-image pixels."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float → (B, 3, h, w), antialiased bilinear (close to, not equal to, apply_image).
        The size comes from H and W; segment_anything's reads the batch and channel sizes instead."""
        hw = self._new_hw(image.shape[-2:])
        return F.interpolate(image, hw, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """(..., 2) xy → resized-image pixels, float32."""
        return coords_to_model(coords, original_size, self._new_hw(original_size))

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """(B, 4) xyxy → (B, 4) in resized-image pixels, float32."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
