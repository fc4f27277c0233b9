"""Image and prompt preprocessing for SAM at any resolution, without torchvision.

Three frames of reference: the *original* image (orig_hw), the *resized* image (resized_hw, what
the pixels were scaled to) and the *padded* model input (padded_hw, resized plus zero padding at
the bottom/right). Prompts go original -> resized; masks come back padded -> resized -> original.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

MIN_SIDE, MAX_SIDE, MULTIPLE = 64, 4096, 16
# `auto`'s cap on the long side; beyond it the image is resized down to it. At 2048 px the default
# model's encoder with scaled windows peaks at 0.89 GB RSS (`python -m benchmarks windows`); vit_b's
# at 1.38 GB with fixed windows and 1.44 GB with scaled ones (docs/resolution.md).
AUTO_MAX_SIDE = 2048

Resolution = int | str


def parse_resolution(resolution: Resolution) -> int | str:
    """Validate a resolution policy: an int N (or "N"), "native", "auto" or "square". Returns N or the name."""
    value = resolution
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("native", "auto", "square"):
            return text
        if not text.isdigit():
            raise ValueError(f"resolution {resolution!r}: expected an integer like 1024, 'native' or 'auto'")
        value = int(text)
    # bool is an int subclass, but True is never a meaningful resolution.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"resolution {resolution!r}: expected an integer like 1024, 'native' or 'auto'")
    value = int(value)
    if value % MULTIPLE or not MIN_SIDE <= value <= MAX_SIDE:
        raise ValueError(f"resolution {value}: must be a multiple of {MULTIPLE} between {MIN_SIDE} and {MAX_SIDE}")
    return value


def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
    """(h, w) with the longest side scaled to long_side_length, rounded half up as SAM does."""
    scale = long_side_length * 1.0 / max(oldh, oldw)
    return int(oldh * scale + 0.5), int(oldw * scale + 0.5)


def _round_to_multiple(x: int, multiple: int = MULTIPLE) -> int:
    return max(MIN_SIDE, int(x / multiple + 0.5) * multiple)


def model_input_size(
    orig_hw: tuple[int, int],
    resolution: Resolution,
    train_side: int = 1024,
    max_side: int = AUTO_MAX_SIDE,
    multiple: int = MULTIPLE,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Sizes (resized_hw, padded_hw) of the model input for an image of orig_hw under a policy.

    N (int): longest side resized to N, zero-padded to N×N (SAM's behaviour; N = 1024 is SAM).
    "native": each side rounded to the nearest multiple of 16 (at least 64), no padding, so
              resized_hw == padded_hw and the aspect ratio changes only by that rounding.
    "auto":   an image whose long side is below `train_side` (the model's pretraining side) is
              resized up to it as SAM does (N = train_side); a larger one runs at its native size
              (long side at most `max_side`, else resized down to it), meant for scaled windows.
    "square": both sides resized to `train_side`, the aspect ratio not kept (SAM 2's own resize).
    multiple: what the sides must be multiples of (16 for SAM's ViT, 32 for SAM 2's Hiera).
    """
    h, w = int(orig_hw[0]), int(orig_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size {h}x{w}: both sides must be positive")
    policy = parse_resolution(resolution)
    if isinstance(policy, int) and policy % multiple:
        raise ValueError(f"resolution {policy}: this model needs a multiple of {multiple}")
    if policy == "square":
        return (train_side, train_side), (train_side, train_side)
    if policy == "auto":
        parse_resolution(max_side)
        if max(h, w) < train_side:
            policy = train_side
        else:
            scale = min(1.0, max_side / max(h, w))
            size = (
                min(max_side, _round_to_multiple(h * scale, multiple)),
                min(max_side, _round_to_multiple(w * scale, multiple)),
            )
            return size, size
    if policy == "native":
        size = (_round_to_multiple(h, multiple), _round_to_multiple(w, multiple))
        if max(size) > MAX_SIDE:
            raise ValueError(
                f"image {w}x{h} is larger than {MAX_SIDE} px on a side; use --resolution {MAX_SIDE} "
                f"(or smaller) instead of native"
            )
        return size, size
    return get_preprocess_shape(h, w, policy), (policy, policy)


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to hw = (h, w) -> (h, w, 3) uint8.

    PIL bilinear (which antialiases when shrinking) is what the official ResizeLongestSide runs on
    numpy input through torchvision, so SAM sees the same pixels here as there.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"resize_image expects an HxWx3 uint8 array, got {image.dtype} {image.shape}")
    h, w = int(hw[0]), int(hw[1])
    if (h, w) == image.shape[:2]:
        return image.copy()
    return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def normalize_and_pad(image: np.ndarray | torch.Tensor, padded_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 numpy, or a (1, 3, H, W) tensor of 0..255 values -> (1, 3, Hp, Wp) float32,
    normalised by SAM's pixel mean/std (on the tensor's device).

    Padding is applied after normalising, so padded pixels are 0 in the normalised space (the
    mean colour), as in the official Sam.preprocess.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    h, w = image.shape[-2:]
    hp, wp = int(padded_hw[0]), int(padded_hw[1])
    if hp < h or wp < w:
        raise ValueError(f"cannot pad a {h}x{w} image to the smaller size {hp}x{wp}")
    mean = torch.tensor(PIXEL_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=image.device).view(3, 1, 1)
    x = (image.float() - mean) / std
    return F.pad(x, (0, wp - w, 0, hp - h))


def _scale_xy(coords, sx: float, sy: float):
    """Scale the last axis (x, y) of a numpy array or torch tensor; returns float64 / float32."""
    if isinstance(coords, torch.Tensor):
        out = coords.clone().float()
    else:
        out = np.array(coords, dtype=np.float64)
    out[..., 0] = out[..., 0] * sx
    out[..., 1] = out[..., 1] * sy
    return out


def coords_to_model(coords, orig_hw: tuple[int, int], resized_hw: tuple[int, int]):
    """(..., 2) xy in original pixels -> xy in model-input pixels."""
    return _scale_xy(coords, resized_hw[1] / orig_hw[1], resized_hw[0] / orig_hw[0])


def coords_to_original(coords, orig_hw: tuple[int, int], resized_hw: tuple[int, int]):
    """Inverse of coords_to_model: (..., 2) xy in model-input pixels -> original pixels."""
    return _scale_xy(coords, orig_hw[1] / resized_hw[1], orig_hw[0] / resized_hw[0])


def boxes_to_model(boxes, orig_hw: tuple[int, int], resized_hw: tuple[int, int]):
    """(B, 4) xyxy in original pixels -> xyxy in model-input pixels."""
    corners = coords_to_model(boxes.reshape(-1, 2, 2), orig_hw, resized_hw)
    return corners.reshape(-1, 4)


def masks_to_original(
    low_res_logits: torch.Tensor,
    padded_hw: tuple[int, int],
    resized_hw: tuple[int, int],
    orig_hw: tuple[int, int],
) -> torch.Tensor:
    """(B, M, h, w) low-res logits -> (B, M, H, W) logits at the original image size.

    Upsample to the padded input, cut the padding off, upsample to the original: the official
    Sam.postprocess_masks with the actual sizes instead of a fixed 1024.
    """
    masks = F.interpolate(low_res_logits, tuple(int(s) for s in padded_hw), mode="bilinear", align_corners=False)
    masks = masks[..., : int(resized_hw[0]), : int(resized_hw[1])]
    return F.interpolate(masks, tuple(int(s) for s in orig_hw), mode="bilinear", align_corners=False)


class ResolutionTransform:
    """SAM's ResizeLongestSide under a resolution policy (`Predictor.transform`): the sizes of the
    model input for an original image, and the maps of images, points and boxes into it."""

    def __init__(
        self,
        resolution: Resolution,
        train_side: int = 1024,
        max_side: int = AUTO_MAX_SIDE,
        multiple: int = MULTIPLE,
        float_resize: bool = False,
    ):
        """multiple: what the model input's sides must be multiples of; float_resize: resize images
        as SAM 2 does (antialiased bilinear on float values, `image_tensor`) instead of SAM's PIL
        bilinear on uint8."""
        self.resolution, self.train_side, self.max_side = resolution, train_side, max_side
        self.multiple, self.float_resize = multiple, float_resize
        self.sizes((64, 64))  # validate the policy now, not at the first image

    get_preprocess_shape = staticmethod(get_preprocess_shape)  # segment_anything's ResizeLongestSide has it

    @property
    def target_length(self) -> int:
        """The long side of the resized image, ResizeLongestSide's attribute: only an integer
        resolution has one."""
        policy = parse_resolution(self.resolution)
        if isinstance(policy, str):
            raise AttributeError(
                f"resolution {policy!r} has no single target_length: the size depends on the "
                f"image; use transform.sizes(original_size)"
            )
        return policy

    @property
    def square(self) -> bool:
        """Whether images are resized to a square whatever their aspect ratio (SAM 2's default)."""
        return parse_resolution(self.resolution) == "square"

    def sizes(self, original_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(resized_hw, padded_hw) for an image of original_size (H, W)."""
        return model_input_size(original_size, self.resolution, self.train_side, self.max_side, self.multiple)

    def image_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) values 0..255 at the resized size: uint8 from PIL, or
        float32 from SAM 2's resize (of the image scaled to [0, 1], then back to 0..255)."""
        hw = self.sizes(image.shape[:2])[0]
        if not self.float_resize:
            return torch.from_numpy(resize_image(image, hw)).permute(2, 0, 1)[None]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        if tuple(hw) != tuple(image.shape[:2]):
            x = F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)
        return x * 255.0

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (h, w, 3) uint8 at the resized size."""
        return resize_image(image, self.sizes(image.shape[:2])[0])

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float -> (B, 3, h, w); antialiased bilinear, close to (not equal to) apply_image."""
        hw = self.sizes(tuple(image.shape[-2:]))[0]
        return F.interpolate(image, hw, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(..., 2) xy in original pixels -> model-input pixels, float64."""
        return coords_to_model(coords, original_size, self.sizes(original_size)[0])

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(B, 4) or (4,) xyxy -> (B, 4) in model-input pixels."""
        return boxes_to_model(np.asarray(boxes), original_size, self.sizes(original_size)[0])

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return coords_to_model(coords, original_size, self.sizes(original_size)[0])

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return boxes_to_model(boxes, original_size, self.sizes(original_size)[0])


def _int_to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return arr.astype(np.uint8)
    # round(x / 257) in integers: maps 0..65535 onto 0..255 with 65535 -> 255 exactly.
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _pil_to_array(image: Image.Image, notes: list[str]) -> np.ndarray:
    if image.mode in ("RGB", "RGBA", "L") or image.mode.startswith("I;16"):
        return np.asarray(image)
    if image.mode == "I":
        # 32-bit integer mode: in practice how PIL opens 16-bit grayscale files.
        arr = np.asarray(image)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("integer image has values outside 0..65535; cannot convert to 8-bit")
        return arr.astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image)
    if image.mode == "P" and "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    notes.append(f"converted {image.mode} to RGB")
    return np.asarray(image.convert("RGB"))


def to_rgb_uint8(image) -> tuple[np.ndarray, str | None]:
    """Any common image -> ((H, W, 3) uint8 RGB, note or None).

    Accepts numpy arrays or PIL images: RGB, grayscale (HxW or HxWx1), RGBA (alpha dropped);
    uint8, 16-bit (scaled by 1/257), float in [0, 1], bool. The note says what was converted.
    Raises ValueError for anything else.
    """
    notes: list[str] = []
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image, notes)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise ValueError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")

    if arr.size == 0:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
        notes.append("dropped alpha channel")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"image of shape {arr.shape}: expected HxW, HxWx1, HxWx3 or HxWx4 (channels last)")

    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = _int_to_uint8(arr, 16)
        notes.append("converted 16-bit to 8-bit")
    elif kind == "b":
        arr = arr.astype(np.uint8) * 255
        notes.append("converted boolean to 8-bit")
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("float image contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"float image values must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]")
        arr = np.round(arr.astype(np.float64) * 255).astype(np.uint8)
        notes.append("converted float to 8-bit")
    elif kind in "iu":
        # An integer type without a fixed depth: judge the depth from the values.
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ValueError(f"{arr.dtype} image has values in [{lo}, {hi}], outside 0..65535")
        bits = 8 if hi <= 255 else 16
        notes.append(f"converted {arr.dtype} ({bits}-bit values) to 8-bit")
        arr = _int_to_uint8(arr, bits)
    else:
        raise ValueError(f"unsupported image dtype {arr.dtype}")

    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
        notes.append("converted grayscale to RGB")
    return np.ascontiguousarray(arr), ("; ".join(notes) or None)
