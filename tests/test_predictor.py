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
from basam.transforms import resize_image
from official import official_sam, randomize

TINY = MODEL_CONFIGS["tiny"]
SAMPLE = Path(basam.__file__).parent / "assets" / "sample.jpg"


@pytest.fixture(scope="module")
def models():
    off = randomize(official_sam(TINY), seed=7)
    ours = basam.Sam(TINY).eval()
    ours.load_state_dict(off.state_dict())
    return off, ours


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


@pytest.mark.parametrize("make, note", [
    (lambda: image()[..., 0], "grayscale"),
    (lambda: np.dstack([image(), np.full((180, 300), 255, np.uint8)]), "alpha"),
    (lambda: image().astype(np.uint16) * 257, "16-bit"),
    (lambda: Image.fromarray(image()), None),
])
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


def test_cli_predict_writes_mask_and_overlay(tmp_path):
    r = run_cli("predict", str(SAMPLE), "--model", "tiny", "--point", "190,120", "--point", "20,20,0",
                "--box", "100,20,300,380", "--resolution", "native", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    mask = np.asarray(Image.open(tmp_path / "sample_mask.png"))
    assert mask.shape == (384, 384) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "sample_overlay.png")).shape == (384, 384, 3)
    assert "resolution native" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["missing.jpg"], "image not found"),
    ([str(SAMPLE), "--box", "1,2,3"], "--box '1,2,3': expected 4"),
    ([str(SAMPLE), "--point", "9999,5"], "outside"),
    ([str(SAMPLE), "--resolution", "999"], "multiple of 16"),
    ([str(SAMPLE), "--checkpoint", "nope.pth"], "checkpoint not found"),
    ([str(SAMPLE), "--attn", "magic"], "unknown attention preset"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = run_cli("predict", *args, "--model", "tiny", "--out", str(tmp_path))
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
