"""Resolution policies, resizing, normalisation, coordinate and mask maps, image input checks."""

import numpy as np
import pytest
import torch
from PIL import Image

from basam.inference.transforms import (
    PIXEL_MEAN,
    PIXEL_STD,
    boxes_to_model,
    coords_to_model,
    coords_to_original,
    get_preprocess_shape,
    masks_to_original,
    model_input_size,
    normalize_and_pad,
    parse_resolution,
    resize_image,
    to_rgb_uint8,
)


@pytest.mark.parametrize(
    "orig, policy, resized, padded",
    [
        ((1024, 1024), 1024, (1024, 1024), (1024, 1024)),
        ((480, 640), 1024, (768, 1024), (1024, 1024)),
        ((1000, 333), 1024, (1024, 341), (1024, 1024)),  # 340.99 rounds half up
        ((480, 640), 512, (384, 512), (512, 512)),
        ((640, 480), "512", (512, 384), (512, 512)),
        ((512, 512), "native", (512, 512), (512, 512)),
        ((480, 640), "native", (480, 640), (480, 640)),
        ((500, 333), " Native ", (496, 336), (496, 336)),
        ((30, 1000), "native", (64, 1008), (64, 1008)),  # never below 64 px
    ],
)
def test_policy_sizes(orig, policy, resized, padded):
    assert model_input_size(orig, policy) == (resized, padded)


@pytest.mark.parametrize("bad", [1000, 32, 4112, 0, -16, "big", "1024px", 1024.0, True, None])
def test_invalid_policies_raise(bad):
    with pytest.raises(ValueError, match="resolution"):
        parse_resolution(bad)
    with pytest.raises(ValueError):
        model_input_size((100, 100), bad)


def test_invalid_image_size_raises():
    with pytest.raises(ValueError, match="positive"):
        model_input_size((0, 100), 1024)


def test_preprocess_shape_rounding():
    assert get_preprocess_shape(3, 2, 1024) == (1024, 683)  # 682.67
    assert get_preprocess_shape(600, 800, 64) == (48, 64)


def test_resize_matches_pil():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for hw in [(20, 29), (74, 106), (37, 53)]:
        out = resize_image(img, hw)
        ref = np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))
        assert out.dtype == np.uint8 and out.shape == (*hw, 3)
        np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError):
        resize_image(img.astype(np.float32), (10, 10))


def test_normalize_and_pad():
    img = np.zeros((3, 5, 3), np.uint8)
    img[0, 0] = (255, 128, 0)
    x = normalize_and_pad(img, (16, 32))
    assert x.shape == (1, 3, 16, 32) and x.dtype == torch.float32
    for c in range(3):
        assert x[0, c, 0, 0].item() == pytest.approx((img[0, 0, c] - PIXEL_MEAN[c]) / PIXEL_STD[c], abs=1e-5)
        assert x[0, c, 1, 1].item() == pytest.approx(-PIXEL_MEAN[c] / PIXEL_STD[c], abs=1e-5)
    assert (x[..., 3:, :] == 0).all() and (x[..., :, 5:] == 0).all()
    with pytest.raises(ValueError):
        normalize_and_pad(img, (2, 32))


def test_coords_and_boxes_mapping():
    orig, resized = (300, 500), (154, 256)
    pts = np.array([[0.0, 0.0], [500.0, 300.0], [125.0, 60.0]])
    m = coords_to_model(pts, orig, resized)
    np.testing.assert_allclose(m[1], [256.0, 154.0])
    np.testing.assert_allclose(m[2], [125 * 256 / 500, 60 * 154 / 300])
    np.testing.assert_allclose(coords_to_original(m, orig, resized), pts)
    assert pts[2, 0] == 125.0  # input untouched
    t = coords_to_model(torch.tensor(pts), orig, resized)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor(m, dtype=torch.float32))
    boxes = np.array([[10, 20, 400, 290]])
    np.testing.assert_allclose(
        boxes_to_model(boxes, orig, resized), [[10 * 256 / 500, 20 * 154 / 300, 400 * 256 / 500, 290 * 154 / 300]]
    )


def test_masks_to_original_places_mask():
    orig = (300, 500)
    resized, padded = model_input_size(orig, 256)
    assert resized == (154, 256) and padded == (256, 256)
    # A rectangle x 100..300, y 60..200 in the original, drawn in the 64×64 low-res model frame.
    x0, y0, x1, y1 = boxes_to_model(np.array([[100, 60, 300, 200]]), orig, resized)[0] / 4
    low = torch.full((1, 1, 64, 64), -10.0)
    low[..., round(y0) : round(y1), round(x0) : round(x1)] = 10.0
    out = masks_to_original(low, padded, resized, orig)
    assert out.shape == (1, 1, 300, 500)
    got = (out[0, 0] > 0).numpy()
    want = np.zeros(orig, bool)
    want[60:200, 100:300] = True
    iou = (got & want).sum() / (got | want).sum()
    assert iou > 0.93, iou


def test_masks_to_original_native_is_plain_resize():
    low = torch.randn(2, 3, 30, 40)
    out = masks_to_original(low, (120, 160), (120, 160), (117, 163))
    ref = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(low, (120, 160), mode="bilinear"), (117, 163), mode="bilinear"
    )
    assert out.shape == (2, 3, 117, 163) and torch.allclose(out, ref)


def test_rgb_passthrough():
    img = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out, note = to_rgb_uint8(img)
    assert note is None and np.array_equal(out, img)
    out, note = to_rgb_uint8(Image.fromarray(img))
    assert note is None and np.array_equal(out, img)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_gray(shape):
    g = np.arange(20, dtype=np.uint8).reshape(shape)
    out, note = to_rgb_uint8(g)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 1], g.reshape(4, 5)) and "grayscale" in note
    out2, _ = to_rgb_uint8(Image.fromarray(g.reshape(4, 5)))
    assert np.array_equal(out2, out)


def test_rgba_drops_alpha():
    rgba = np.random.default_rng(2).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    for src in (rgba, Image.fromarray(rgba, "RGBA")):
        out, note = to_rgb_uint8(src)
        assert np.array_equal(out, rgba[..., :3]) and "alpha" in note


def test_uint16():
    img = np.array([[0, 128, 129, 257, 65535]], np.uint16)
    out, note = to_rgb_uint8(img)
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 255] and "16-bit" in note
    rgb16 = np.full((2, 2, 3), 65535, np.uint16)
    assert (to_rgb_uint8(rgb16)[0] == 255).all()
    out, note = to_rgb_uint8(Image.fromarray(np.array([[1000, 65535]], np.uint16)))
    assert out[0, :, 0].tolist() == [4, 255] and "16-bit" in note


def test_float():
    img = np.array([[0.0, 0.5, 1.0]], np.float32)
    out, note = to_rgb_uint8(np.stack([img] * 3, axis=-1))
    assert out[0, :, 0].tolist() == [0, 128, 255] and "float" in note


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.zeros((5,), np.uint8), "shape"),
        (np.zeros((2, 3, 3, 3), np.uint8), "shape"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((3, 8, 8), np.uint8), "channels last"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.array([[0.1, np.nan]]), "NaN"),
        (np.array([[0.0, 2.0]]), r"\[0, 1\]"),
        (np.array([[-1, 5]], np.int32), "outside"),
        (np.zeros((2, 2), np.complex64), "dtype"),
        ([[1, 2], [3, 4]], "numpy array or a PIL image"),
    ],
)
def test_bad_images_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        to_rgb_uint8(bad)


def test_native_refuses_images_beyond_4096_px():
    from basam.inference.transforms import model_input_size

    assert model_input_size((3000, 4090), "native") == ((3008, 4096), (3008, 4096))
    with pytest.raises(ValueError, match="larger than 4096"):
        model_input_size((3000, 5000), "native")
