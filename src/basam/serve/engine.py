"""What `basam serve` computes, without HTTP: one model, images and their encodings in bounded LRU
caches keyed by content hash, prompts answered from the cache, and every call run on one worker
thread so that inference is serialised and the event loop never waits on it.

Requests are plain dicts (the JSON bodies); answers are JSON-ready dicts. Bad input raises
`RequestError` with an HTTP status and a one-line message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools import mask as coco_mask

from basam.config import AttentionConfig
from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from basam.inference.transforms import AUTO_MAX_SIDE, parse_resolution, to_rgb_uint8
from basam.modeling.sam import Sam
from basam.serve.samples import SAMPLES, render_sample

# Presets the page may switch between; `official` changes which weights are loaded, so it is only
# offered when the model was loaded with it.
SWITCHABLE_PRESETS = ("sam", "nsf", "bm", "basam")


class RequestError(Exception):
    """Bad input: `status` is the HTTP status, the message one line for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server. max_upload_mb bounds the request body, max_megapixels the decoded
    image (checked before its pixels are decoded)."""

    max_upload_mb: float = 25.0
    max_megapixels: float = 40.0
    cached_images: int = 8
    cached_encodings: int = 8
    resolution: str | None = None  # the page's starting policy; None: the checkpoint's training size
    max_side: int = AUTO_MAX_SIDE  # "auto": largest long side


class LRU:
    """A dict that keeps the `size` most recently used entries."""

    def __init__(self, size: int):
        self.size, self.items = max(1, size), OrderedDict()

    def get(self, key):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class Engine:
    """One model behind the page: images, their encodings, prompts and segment-everything."""

    def __init__(self, model: Sam, settings: ServeSettings = ServeSettings(), attn_overrides: dict | None = None):
        self.model = model.eval()
        self.settings = settings
        self.loaded_attn = model.attn_cfg
        self.attn_overrides = attn_overrides or {}
        own = "square" if getattr(model.cfg, "encoder", None) == "hiera" else model.cfg.img_size  # SAM 2 / SAM
        self.default_resolution = str(own if settings.resolution is None else parse_resolution(settings.resolution))
        self.images = LRU(settings.cached_images)  # image id → (H, W, 3) uint8
        self.encodings = LRU(settings.cached_encodings)  # (image id, resolution, attention, windows) → Predictor
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="basam-inference")

    async def call(self, method, *args):
        """Run `method(*args)` on the inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, method, *args)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    # --- what the page offers ----------------------------------------------------------------

    def attention_choices(self) -> list[str]:
        loaded = self.loaded_attn
        if loaded.official or loaded.bm_learnable:  # switching away would discard loaded parameters
            return [loaded.preset]
        return list(dict.fromkeys([loaded.preset, *SWITCHABLE_PRESETS]))

    def window_choices(self) -> list[str]:
        loaded = self.loaded_attn
        if loaded.official or loaded.bm_learnable:
            return [loaded.windows]
        return list(dict.fromkeys([loaded.windows, "fixed", "scaled"]))

    def info(self) -> dict:
        cfg = self.model.cfg
        return {
            "model": cfg.name,
            "train_size": cfg.img_size,
            "attention": self.loaded_attn.preset,
            "attention_choices": self.attention_choices(),
            "attention_loaded": self.loaded_attn.describe(),
            "resolution": self.default_resolution,
            "resolution_choices": list(
                dict.fromkeys([self.default_resolution, str(cfg.img_size), "512", "1024", "2048", "native", "auto"])
            ),
            "windows": self.loaded_attn.windows,
            "window_choices": self.window_choices(),
            "samples": list(SAMPLES),
            "max_upload_mb": self.settings.max_upload_mb,
            "max_megapixels": self.settings.max_megapixels,
            "everything": True,
            "hq": self.model.is_hq,  # the page offers hq_token_only only then
        }

    # --- images --------------------------------------------------------------------------------

    def add_image(self, data: bytes) -> dict:
        """Encoded image file bytes → {image_id, width, height, note}. Pixels are decoded once and
        kept; the same bytes give the same id."""
        if not data:
            raise RequestError(400, "empty upload: send the image file as the request body")
        image_id = hashlib.sha256(data).hexdigest()[:16]
        note = None
        if self.images.get(image_id) is None:
            rgb, note = self._decode(data)
            self.images.put(image_id, rgb)
        h, w = self.images.get(image_id).shape[:2]
        return {"image_id": image_id, "width": w, "height": h, "note": note}

    def add_sample(self, name: str) -> dict:
        if name not in SAMPLES:
            raise RequestError(404, f"unknown sample {name!r}; samples: {', '.join(SAMPLES)}")
        return self.add_image(render_sample(name))

    def image_png(self, image_id: str) -> bytes:
        """The image as the model sees it (orientation applied, RGB 8-bit), as PNG."""
        buf = io.BytesIO()
        Image.fromarray(self._image(image_id)).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def _image(self, image_id) -> np.ndarray:
        rgb = self.images.get(image_id) if isinstance(image_id, str) else None
        if rgb is None:
            raise RequestError(
                404,
                f"unknown image id {image_id!r}: upload the image first (or again: the "
                f"server keeps the last {self.settings.cached_images})",
            )
        return rgb

    def _decode(self, data: bytes) -> tuple[np.ndarray, str | None]:
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise RequestError(
                415, "not an image: Pillow reads no format in this upload (PNG, JPEG, TIFF, …)"
            ) from None
        megapixels = im.width * im.height / 1e6
        if megapixels > self.settings.max_megapixels:
            raise RequestError(
                413,
                f"image {im.width}×{im.height} has {megapixels:.1f} megapixels; this server "
                f"takes at most {self.settings.max_megapixels:g} (--max-megapixels)",
            )
        try:
            im = ImageOps.exif_transpose(im)  # browsers show photos upright, so the model sees them so
            rgb, note = to_rgb_uint8(im)
        except (OSError, ValueError, SyntaxError) as e:
            raise RequestError(415, f"cannot decode the image: {e}") from None
        return np.ascontiguousarray(rgb), note

    # --- prompts -------------------------------------------------------------------------------

    def _setting(self, request: dict) -> tuple[str, str, str]:
        """The request's (resolution policy, attention preset, windows), validated; omitted ones are
        the server's."""
        resolution = request.get("resolution")
        try:
            policy = str(parse_resolution(self.default_resolution if resolution is None else resolution))
        except ValueError as e:
            raise RequestError(400, str(e)) from None
        for field, choices in (("attention", self.attention_choices()), ("windows", self.window_choices())):
            value = request.get(field, choices[0])  # the first choice is the loaded one
            if not isinstance(value, str) or value not in choices:
                raise RequestError(400, f"{field} {value!r}: choose from {', '.join(choices)}")
            request = {**request, field: value}
        return policy, request["attention"], request["windows"]

    def _switch_attention(self, attention: str, windows: str) -> None:
        """Set the encoder's BA-SAM preset and windows before encoding. The decoder has neither, so
        cached encodings answer prompts whatever the encoder is set to now."""
        loaded = self.loaded_attn
        cfg = (
            loaded
            if (attention, windows) == (loaded.preset, loaded.windows)
            else AttentionConfig.from_preset(attention, **{**self.attn_overrides, "windows": windows})
        )
        if self.model.attn_cfg != cfg:
            self.model.set_attention(cfg)

    def _encoded(self, image_id: str, setting: tuple[str, str, str]) -> tuple[Predictor, float]:
        """The Predictor holding this image's embedding under setting (encoded now if not cached)
        and the encode time in ms (0 when cached)."""
        rgb = self._image(image_id)
        predictor = self.encodings.get((image_id, *setting))
        if predictor is not None:
            return predictor, 0.0
        self._switch_attention(*setting[1:])
        start = time.perf_counter()
        predictor = Predictor(self.model, resolution=setting[0], max_side=self.settings.max_side)
        try:
            predictor.set_image(rgb)
        except ValueError as e:  # e.g. "native" on an image over 4096 px
            raise RequestError(400, str(e)) from None
        self.encodings.put((image_id, *setting), predictor)
        return predictor, (time.perf_counter() - start) * 1e3

    def _hq_token_only(self, request: dict) -> bool:
        value = _flag(request, "hq_token_only")
        if value and not self.model.is_hq:
            raise RequestError(400, f"hq_token_only needs an HQ-SAM model; this server runs {self.model.cfg.name}")
        return value

    def predict(self, request: dict) -> dict:
        """request: {image_id, points [[x, y], …], labels [1|0, …], box [x0, y0, x1, y1] | null,
        multimask (bool, default false: one mask, as the embedded model was trained), hq_token_only
        (bool, HQ-SAM models only), resolution, attention, windows}. Coordinates in original pixels."""
        request = _require_dict(request)
        setting = self._setting(request)
        predictor, encode_ms = self._encoded(request.get("image_id"), setting)
        h, w = predictor.orig_hw
        prompt = parse_prompt(request, w, h)
        multimask, hq_token_only = _flag(request, "multimask"), self._hq_token_only(request)
        start = time.perf_counter()
        masks, scores, _ = predictor.predict(**prompt, multimask_output=multimask, hq_token_only=hq_token_only)
        decode_ms = (time.perf_counter() - start) * 1e3
        return {
            **_summary(request, setting, predictor.padded_hw, predictor.windows),
            "resized_size": list(predictor.resized_hw),
            "encode_ms": round(encode_ms, 1),
            "cached": encode_ms == 0.0,
            "note": predictor.note,
            "decode_ms": round(decode_ms, 1),
            "best": int(np.argmax(scores)),
            "masks": [
                {"score": float(s), "area": int(m.sum()), "png": mask_png(m), "rle": coco_rle(m)}
                for m, s in zip(masks, scores)
            ],
        }

    def everything(self, request: dict) -> dict:
        """request: {image_id, points_per_side (default 16), pred_iou_thresh (0.88),
        stability_score_thresh (0.95), multimask (false, as for prompts), hq_token_only, resolution,
        attention, windows}: basam.AutomaticMaskGenerator over the whole image, the official defaults
        otherwise. Returns its records (segmentation as COCO RLE), largest first, and a label
        image: mask k (1-based, in that order) stored as r + 256 g, smaller masks over larger."""
        request = _require_dict(request)
        rgb = self._image(request.get("image_id"))
        setting = self._setting(request)
        options = {
            "points_per_side": _number(request, "points_per_side", 16, 1, 64, int),
            "pred_iou_thresh": _number(request, "pred_iou_thresh", 0.88, 0.0, 1.0, float),
            "stability_score_thresh": _number(request, "stability_score_thresh", 0.95, 0.0, 1.0, float),
        }
        multimask, hq_token_only = _flag(request, "multimask"), self._hq_token_only(request)
        self._switch_attention(*setting[1:])
        start = time.perf_counter()
        try:
            generator = AutomaticMaskGenerator(
                self.model,
                output_mode="coco_rle",
                resolution=setting[0],
                multimask_output=multimask,
                hq_token_only=hq_token_only,
                **options,
            )
            records = generator.generate(rgb)
        except ValueError as e:
            raise RequestError(400, str(e)) from None
        generate_ms = (time.perf_counter() - start) * 1e3
        records.sort(key=lambda r: -r["area"])
        labels = np.zeros(rgb.shape[:2], np.int64)
        for k, record in enumerate(records, 1):
            labels[coco_mask.decode(record["segmentation"]).astype(bool)] = k
        label_rgb = np.stack([labels % 256, labels // 256 % 256, labels // 65536], -1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(label_rgb).save(buf, format="PNG")
        padded_hw = generator.predictor.transform.sizes(rgb.shape[:2])[1]
        return {
            **_summary(request, setting, padded_hw, generator.predictor.windows),
            "encode_ms": None,
            "generate_ms": round(generate_ms, 1),
            "options": {**options, "multimask": multimask, "hq_token_only": hq_token_only},
            "records": records,
            "labels_png": base64.b64encode(buf.getvalue()).decode("ascii"),
        }


def _summary(request: dict, setting: tuple[str, str, str], padded_hw, predictor_windows: str | None) -> dict:
    """predictor_windows: the Predictor's own choice (scaled under auto), None → the setting's."""
    return {
        "image_id": request["image_id"],
        "resolution": setting[0],
        "attention": setting[1],
        "windows": predictor_windows or setting[2],
        "input_size": list(padded_hw),
    }


def _require_dict(request) -> dict:
    if not isinstance(request, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(request).__name__}")
    return request


def _flag(request: dict, name: str) -> bool:
    value = request.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be true or false, got {value!r}")
    return value


def _number(request: dict, name: str, default, low, high, kind):
    value = request.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and value != int(value))
        or not low <= value <= high
    ):
        raise RequestError(
            400, f"{name} must be {'an integer' if kind is int else 'a number'} from {low} to {high}, got {value!r}"
        )
    return kind(value)


def _numbers(value, count: int, what: str) -> list[float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != count
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise RequestError(400, f"{what} must be a list of {count} numbers, got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise RequestError(400, f"{what} {value!r} is not finite")
    return [float(v) for v in value]


def _inside(x: float, y: float, w: int, h: int, what: str) -> None:
    if not (0 <= x <= w and 0 <= y <= h):
        raise RequestError(400, f"{what} ({x:g}, {y:g}) lies outside the {w}×{h} image")


def parse_prompt(request: dict, w: int, h: int) -> dict:
    """The request's points/labels/box → Predictor.predict keyword arguments, validated against
    a w×h image."""
    points, labels, box = request.get("points") or [], request.get("labels") or [], request.get("box")
    if not isinstance(points, list) or not isinstance(labels, list):
        raise RequestError(400, "points must be a list of [x, y] and labels a list of 1 (foreground) / 0 (background)")
    if len(points) != len(labels):
        raise RequestError(400, f"{len(points)} points but {len(labels)} labels: give one label per point")
    coords = [_numbers(p, 2, f"point {i}") for i, p in enumerate(points)]
    for i, (x, y) in enumerate(coords):
        _inside(x, y, w, h, f"point {i}")
    if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
        raise RequestError(400, f"labels must be 1 (foreground) or 0 (background), got {labels!r}")
    out = {}
    if coords:
        out = {"point_coords": np.array(coords), "point_labels": np.array(labels, dtype=np.int64)}
    if box is not None:
        x0, y0, x1, y1 = _numbers(box, 4, "box")
        _inside(x0, y0, w, h, "box corner")
        _inside(x1, y1, w, h, "box corner")
        if x1 <= x0 or y1 <= y0:
            raise RequestError(400, f"box {box!r} is not x0, y0, x1, y1 with x0 < x1 and y0 < y1")
        out["box"] = np.array([x0, y0, x1, y1])
    return out


def mask_png(mask: np.ndarray) -> str:
    """(H, W) bool → base64 of a 1-bit PNG (white = mask)."""
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def coco_rle(mask: np.ndarray) -> dict:
    """(H, W) bool → COCO compressed RLE {"size": [H, W], "counts": str}, as pycocotools writes it."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
