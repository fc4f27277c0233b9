"""Predictor and `basam predict`: the official pipeline's numbers, any policy, any input type."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.config import MODEL_CONFIGS
from basam.inference.transforms import resize_image
from official import official_predictor_and_generator

TINY = MODEL_CONFIGS["tiny"]
SAMPLE = Path(basam.__file__).parent / "assets" / "sample.jpg"


@pytest.fixture(scope="module")
def models(twins):
    return twins(TINY, seed=7)


def image(h=180, w=300, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_predict_matches_the_official_pipeline(models):
    off, ours = models
    img = image()
    point, label, box = np.array([[120.0, 60.0]]), np.array([1]), np.array([40.0, 20.0, 250.0, 150.0])
    pred = basam.Predictor(ours, resolution=TINY.img_size)
    pred.set_image(img)
    masks, scores, low_res = pred.predict(point_coords=point, point_labels=label, box=box, return_logits=True)

    # The official SamPredictor, step by step (its own class needs torchvision): resize the long
    # side, Sam.preprocess, encoder, prompts scaled by new/old size, decoder, Sam.postprocess_masks.
    scale = TINY.img_size / max(img.shape[:2])
    new_hw = (int(img.shape[0] * scale + 0.5), int(img.shape[1] * scale + 0.5))
    x = torch.as_tensor(resize_image(img, new_hw)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        emb = off.image_encoder(off.preprocess(x))
        ratio = torch.tensor([new_hw[1] / img.shape[1], new_hw[0] / img.shape[0]])
        pts = (torch.as_tensor(point, dtype=torch.float32)[None] * ratio, torch.as_tensor(label)[None])
        boxes = (torch.as_tensor(box, dtype=torch.float32).reshape(2, 2) * ratio).reshape(1, 4)
        sparse, dense = off.prompt_encoder(points=pts, boxes=boxes, masks=None)
        lr, iou = off.mask_decoder(emb, off.prompt_encoder.get_dense_pe(), sparse, dense, True)
        full = off.postprocess_masks(lr, new_hw, img.shape[:2])
    assert masks.shape == (3, *img.shape[:2])
    assert np.abs(masks - full[0].numpy()).max() <= 1e-4
    assert np.abs(scores - iou[0].numpy()).max() <= 1e-5
    assert np.abs(low_res - lr[0].numpy()).max() <= 1e-5


@pytest.mark.parametrize("resolution, padded", [(512, (512, 512)), ("native", (176, 304)), (128, (128, 128))])
def test_masks_come_back_at_the_original_size(models, resolution, padded):
    pred = basam.Predictor(models[1], resolution=resolution)
    pred.set_image(image(170, 300))
    assert pred.padded_hw == padded
    masks, scores, low_res = pred.predict(box=np.array([10, 10, 200, 150]), multimask_output=False)
    assert masks.shape == (1, 170, 300) and masks.dtype == bool
    assert scores.shape == (1,) and low_res.shape == (1, padded[0] // 4, padded[1] // 4)
    # Feeding the low-res logits back as a mask prompt is accepted at any policy.
    again, _, _ = pred.predict(box=np.array([10, 10, 200, 150]), mask_input=low_res, multimask_output=False)
    assert again.shape == masks.shape


def test_prompt_free_call(models):
    pred = basam.Predictor(models[1], resolution=256)
    pred.set_image(image())
    prob = pred.predict_proba()
    assert prob.shape == (180, 300) and 0 <= prob.min() and prob.max() <= 1


@pytest.mark.parametrize(
    "make, note",
    [
        (lambda: image()[..., 0], "grayscale"),
        (lambda: np.dstack([image(), np.full((180, 300), 255, np.uint8)]), "alpha"),
        (lambda: image().astype(np.uint16) * 257, "16-bit"),
        (lambda: Image.fromarray(image()), None),
    ],
)
def test_input_types_are_converted_with_a_note(models, make, note):
    pred = basam.Predictor(models[1], resolution=128)
    pred.set_image(make())
    assert (note is None and pred.note is None) or note in pred.note
    masks, _, _ = pred.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))
    assert masks.shape[1:] == (180, 300)


def test_bad_prompts_are_refused(models):
    pred = basam.Predictor(models[1], resolution=128)
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict()
    pred.set_image(image())
    with pytest.raises(ValueError, match="point_labels"):
        pred.predict(point_coords=np.array([[4, 5]]))
    with pytest.raises(ValueError, match="one label per point"):
        pred.predict(point_coords=np.array([[4, 5], [6, 7]]), point_labels=np.array([1]))
    for label in (7, 2, 0.5):
        with pytest.raises(ValueError, match="label"):
            pred.predict(point_coords=np.array([[4, 5]]), point_labels=np.array([label]))
    with pytest.raises(ValueError, match="x0≤x1"):
        pred.predict(box=np.array([50, 50, 10, 60]))
    with pytest.raises(ValueError, match="resolution"):
        basam.Predictor(models[1], resolution=1000)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "basam.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.subprocess
def test_cli_predict_writes_mask_and_overlay(tmp_path):
    r = run_cli(
        "predict",
        str(SAMPLE),
        "--model",
        "tiny",
        "--point",
        "190,120",
        "--point",
        "20,20,0",
        "--box",
        "100,20,300,380",
        "--resolution",
        "native",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    mask = np.asarray(Image.open(tmp_path / "sample_mask.png"))
    assert mask.shape == (384, 384) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "sample_overlay.png")).shape == (384, 384, 3)
    assert "resolution native" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jpg"], "image not found"),
        ([str(SAMPLE), "--box", "1,2,3"], "--box '1,2,3': expected 4"),
        ([str(SAMPLE), "--point", "9999,5"], "outside"),
        ([str(SAMPLE), "--resolution", "999"], "multiple of 16"),
        ([str(SAMPLE), "--checkpoint", "nope.pth"], "checkpoint not found"),
        ([str(SAMPLE), "--attn", "magic"], "unknown attention preset"),
    ],
)
@pytest.mark.subprocess
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = run_cli("predict", *args, "--model", "tiny", "--out", str(tmp_path))
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- SamPredictor's whole contract, against the official class itself ----------------------------


@pytest.fixture(scope="module")
def both_predictors(models):
    off, ours = models
    SamPredictor, _ = official_predictor_and_generator()
    img = image(150, 260, seed=3)
    official = SamPredictor(off)
    official.set_image(img)
    mine = basam.Predictor(ours, resolution=TINY.img_size)
    mine.set_image(img)
    return official, mine, img


def test_state_and_transform_match_the_official_predictor(both_predictors):
    official, mine, img = both_predictors
    assert mine.is_image_set and official.is_image_set
    assert mine.original_size == tuple(official.original_size) and mine.input_size == official.input_size
    assert mine.device == official.device
    assert torch.allclose(mine.get_image_embedding(), official.get_image_embedding(), atol=1e-5)
    assert mine.features.shape == official.features.shape
    xy = np.array([[10.0, 20.0], [259.0, 149.0], [-5.0, 300.0]])
    boxes = np.array([[1.0, 2.0, 30.0, 40.0], [0.0, 0.0, 260.0, 150.0]])
    ours, theirs, hw = mine.transform, official.transform, img.shape[:2]
    np.testing.assert_allclose(ours.apply_coords(xy, hw), theirs.apply_coords(xy, hw))
    np.testing.assert_allclose(ours.apply_boxes(boxes, hw), theirs.apply_boxes(boxes, hw))
    t = torch.as_tensor(xy, dtype=torch.float32)
    assert torch.allclose(ours.apply_coords_torch(t, hw), theirs.apply_coords_torch(t, hw))
    tb = torch.as_tensor(boxes, dtype=torch.float32)
    assert torch.allclose(ours.apply_boxes_torch(tb, hw), theirs.apply_boxes_torch(tb, hw))
    assert np.array_equal(mine.transform.apply_image(img), official.transform.apply_image(img))


@pytest.mark.parametrize("multimask, logits", [(True, False), (False, True)])
def test_predict_equals_the_official_predictor(both_predictors, multimask, logits):
    official, mine, _ = both_predictors
    # A point outside the image is a valid prompt in SAM: both accept it.
    kwargs = dict(
        point_coords=np.array([[60.0, 40.0], [300.0, -10.0]]),
        point_labels=np.array([1, 0]),
        box=np.array([20.0, 10.0, 200.0, 120.0]),
        multimask_output=multimask,
        return_logits=logits,
    )
    with torch.no_grad():
        expected = official.predict(**kwargs)
        again = official.predict(**kwargs, mask_input=expected[2][:1])
    got = mine.predict(**kwargs)
    got_again = mine.predict(**kwargs, mask_input=got[2][:1])
    for g, e in zip(got + got_again, expected + again):
        assert g.shape == e.shape and g.dtype == e.dtype
        if g.dtype == bool:
            assert (g != e).mean() < 1e-4
        else:
            np.testing.assert_allclose(g, e, atol=1e-4)


def test_predict_torch_with_a_batch_equals_the_official_predictor(both_predictors):
    official, mine, img = both_predictors
    rng = np.random.default_rng(1)
    points = torch.as_tensor(rng.uniform(0, 150, (3, 2, 2)), dtype=torch.float32)
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    boxes = torch.tensor([[10.0, 10.0, 100.0, 90.0], [50.0, 20.0, 250.0, 140.0], [0.0, 0.0, 259.0, 149.0]])
    args = (
        official.transform.apply_coords_torch(points, img.shape[:2]),
        labels,
        official.transform.apply_boxes_torch(boxes, img.shape[:2]),
    )
    with torch.no_grad():
        expected = official.predict_torch(*args, return_logits=True)
    got = mine.predict_torch(*args, return_logits=True)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert torch.allclose(g, e, atol=1e-4)
    assert got[0].shape == (3, 3, *img.shape[:2])
    masks, _, _ = mine.predict_torch(*args, multimask_output=False)
    assert masks.dtype == torch.bool and masks.shape == (3, 1, *img.shape[:2])


def test_set_torch_image_and_bgr_give_the_same_embedding(both_predictors, models):
    official, mine, img = both_predictors
    pred = basam.Predictor(models[1], resolution=TINY.img_size)
    x = torch.as_tensor(pred.transform.apply_image(img)).permute(2, 0, 1)[None]
    pred.set_torch_image(x, img.shape[:2])
    assert torch.allclose(pred.get_image_embedding(), official.get_image_embedding(), atol=1e-5)
    pred.set_image(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
    assert torch.equal(pred.get_image_embedding(), mine.get_image_embedding())
    with pytest.raises(ValueError, match="image_format"):
        pred.set_image(img, image_format="HSV")
    with pytest.raises(ValueError, match="set_torch_image expects"):
        pred.set_torch_image(x[..., :-1], img.shape[:2])


def test_a_failed_set_image_leaves_no_stale_embedding(models):
    pred = basam.Predictor(models[1], resolution="native")
    pred.set_image(image(100, 120))
    assert pred.is_image_set
    with pytest.raises(ValueError, match="larger than 4096"):
        pred.set_image(np.zeros((300, 5000, 3), np.uint8))
    assert not pred.is_image_set and pred.features is None and pred.original_size is None
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        pred.get_image_embedding()
    pred.set_image(image(100, 120))
    pred.reset_image()
    assert not pred.is_image_set


@pytest.mark.parametrize("resolution", ["native", 512, 256])
def test_sams_256_mask_input_is_accepted_at_any_resolution(models, resolution):
    """A low-res mask from a square-padded run (SAM's 256×256 at 1024 px) means the same region at
    another policy: feeding it back gives the mask it came from, up to resampling."""
    img = image(160, 240, seed=4)
    sam = basam.Predictor(models[1], resolution=1024)
    sam.set_image(img)
    prompt = dict(box=np.array([30.0, 20.0, 200.0, 140.0]), multimask_output=False)
    _, _, low_res = sam.predict(**prompt)
    assert low_res.shape == (1, 256, 256)
    pred = basam.Predictor(models[1], resolution=resolution)
    pred.set_image(img)
    got = pred._mask_to_grid(torch.as_tensor(low_res)[None])
    _, _, own = pred.predict(**prompt)
    assert got.shape[-2:] == own.shape[-2:]
    # Upsampled to the image, the mask prompt covers what the 1024 px run's mask covered.
    ref = sam.postprocess_masks(torch.as_tensor(low_res)[None]) > 0
    back = pred.postprocess_masks(got) > 0
    assert (ref != back).float().mean() < 0.02
    masks, _, _ = pred.predict(**prompt, mask_input=low_res)
    assert masks.shape == (1, 160, 240)
