"""SAM2ImagePredictor (and basam.Predictor on a SAM 2 model) against the official
sam2.SAM2ImagePredictor: masks, scores and low-res logits for points, a box, mask_input and a batch,
on a non-square photo under the default policy (SAM 2's square resize)."""

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.formats.checkpoint import ASSETS
from official_sam2 import TINY_OVERRIDES, official_sam2, release_state_dict
from official_sam2 import SAM2ImagePredictor as OfficialPredictor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROMPTS = {
    "point": dict(point_coords=np.array([[150.0, 120.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[150.0, 120.0], [40.0, 200.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([60.0, 40.0, 300.0, 220.0])),
    "box_and_point": dict(
        box=np.array([60.0, 40.0, 300.0, 220.0]), point_coords=np.array([[150.0, 120.0]]), point_labels=np.array([1])
    ),
}


def photo(hw=(250, 384), offset=0):
    """The shipped photo cut to a non-square size."""
    image = np.asarray(Image.open(ASSETS / "sample.jpg").convert("RGB"))
    return np.ascontiguousarray(image[offset : offset + hw[0], : hw[1]])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def assert_same(ours, ref, logits_tol=1e-4):
    masks, scores, low_res = ours
    ref_masks, ref_scores, ref_low_res = ref
    assert masks.dtype == np.float32 and masks.shape == ref_masks.shape
    assert np.abs(scores - ref_scores).max() <= 1e-4
    scale = max(1.0, np.abs(ref_low_res).max())
    assert np.abs(low_res - ref_low_res).max() <= logits_tol * scale
    for m, r in zip(masks.reshape(-1, *masks.shape[-2:]), ref_masks.reshape(-1, *ref_masks.shape[-2:])):
        assert iou(m, r) >= 0.99


def assert_same_features(ours, ref):
    """The embedding and the high-resolution maps: where the preprocessing shows (random decoder
    weights make the masks depend little on the image)."""
    pairs = [(ours.get_image_embedding(), ref.get_image_embedding())]
    pairs += list(zip(ours._features["high_res_feats"], ref._features["high_res_feats"]))
    for a, b in pairs:
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4 * max(1.0, b.abs().max().item())


def tiny_official_predictor(official):
    predictor = OfficialPredictor(official)
    # The release writes the 1024 px feature sizes as a literal; the 256 px test model needs its own.
    predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
    return predictor


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    official = official_sam2(overrides=TINY_OVERRIDES, seed=5)
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    torch.save(release_state_dict(official), path)
    return official, basam.load_model("sam2_tiny", checkpoint=path)


def test_hiera_t_at_1024_equals_official_predictor(tmp_path):
    official = official_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", seed=7)
    torch.save(release_state_dict(official), tmp_path / "t.pt")
    ours = basam.SAM2ImagePredictor(basam.build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", tmp_path / "t.pt"))
    ref = OfficialPredictor(official)
    image = photo()
    ref.set_image(image)
    ours.set_image(Image.fromarray(image))  # a PIL image, as the release takes it
    assert ours.get_image_embedding().shape == (1, 256, 64, 64)
    assert_same_features(ours, ref)
    for name in ("point", "box"):
        assert_same(ours.predict(**PROMPTS[name]), ref.predict(**PROMPTS[name]))


@pytest.mark.parametrize("prompt", list(PROMPTS))
@pytest.mark.parametrize("multimask", [True, False])
def test_prompts_equal_official(tiny, prompt, multimask):
    official, model = tiny
    ref, ours = tiny_official_predictor(official), basam.SAM2ImagePredictor(model)
    image = photo()
    ref.set_image(image)
    ours.set_image(image)
    assert_same_features(ours, ref)
    kwargs = dict(PROMPTS[prompt], multimask_output=multimask)
    ref_out, out = ref.predict(**kwargs), ours.predict(**kwargs)
    assert_same(out, ref_out)
    # the low-res logits back in as mask_input, and logits instead of masks
    best = int(np.argmax(out[1]))
    again = dict(kwargs, mask_input=out[2][best : best + 1], return_logits=True)
    assert_same(ours.predict(**again), ref.predict(**dict(again, mask_input=ref_out[2][best : best + 1])))


def test_normalized_coords_and_multi_object_boxes(tiny):
    official, model = tiny
    ref, ours = tiny_official_predictor(official), basam.SAM2ImagePredictor(model)
    image = photo()
    ref.set_image(image)
    ours.set_image(image)
    boxes = np.array([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.9]])
    out = ours.predict(box=boxes, normalize_coords=False, multimask_output=False)
    assert out[0].shape == (2, 1, 250, 384)
    assert_same(out, ref.predict(box=boxes, normalize_coords=False, multimask_output=False))


def test_batch_equals_official(tiny):
    official, model = tiny
    ref, ours = tiny_official_predictor(official), basam.SAM2ImagePredictor(model)
    images = [photo(), photo((320, 200), offset=30)]
    ref.set_image_batch(images)
    ours.set_image_batch(images)
    assert ours.get_image_embedding().shape == (2, 32, 16, 16)
    assert_same_features(ours, ref)
    kwargs = dict(
        point_coords_batch=[np.array([[100.0, 80.0]]), np.array([[50.0, 150.0]])],
        point_labels_batch=[np.array([1]), np.array([1])],
        box_batch=[None, np.array([10.0, 20.0, 180.0, 300.0])],
    )
    for a, b in zip(zip(*ours.predict_batch(**kwargs)), zip(*ref.predict_batch(**kwargs))):
        assert_same(a, b)


def test_basam_predictor_default_is_sam2_and_policies_keep_aspect(tiny):
    official, model = tiny
    ref = tiny_official_predictor(official)
    image = photo()
    ref.set_image(image)
    plain = basam.Predictor(model)
    plain.set_image(image)
    masks, scores, low_res = plain.predict(**PROMPTS["point"])
    assert masks.dtype == bool and plain.padded_hw == (256, 256) and plain.resized_hw == (256, 256)
    assert_same((masks.astype(np.float32), scores, low_res), ref.predict(**PROMPTS["point"]))
    for resolution, padded in ((512, (512, 512)), ("native", (256, 384)), ("auto", (256, 384))):
        predictor = basam.Predictor(model, resolution=resolution)
        predictor.set_image(image)
        masks, scores, low_res = predictor.predict(**PROMPTS["point"])
        assert predictor.padded_hw == padded and masks.shape == (3, 250, 384)
        assert low_res.shape == (3, padded[0] // 4, padded[1] // 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        basam.Predictor(model, resolution=272)


def test_holes_and_sprinkles_removed():
    model = basam.load_model("sam2_tiny")
    predictor = basam.SAM2ImagePredictor(model, max_hole_area=4, max_sprinkle_area=3)
    logits = torch.full((1, 1, 12, 12), -5.0)
    logits[0, 0, 2:9, 2:9] = 5.0
    logits[0, 0, 5, 5] = -5.0  # a one-pixel hole
    logits[0, 0, 10:12, 10] = 5.0  # a two-pixel sprinkle
    logits[0, 0, 0:2, 10:12] = 5.0  # four pixels: above the sprinkle area, kept
    out = predictor.remove_small_regions(logits)[0, 0]
    assert out[5, 5] == 10.0 and (out[10:12, 10] == -10.0).all() and (out[0:2, 10:12] == 5.0).all()
    assert torch.equal(out[2:9, 2:9] > 0, torch.ones(7, 7, dtype=torch.bool))


def test_predictor_contract_errors(tiny):
    _, model = tiny
    predictor = basam.SAM2ImagePredictor(model)
    with pytest.raises(RuntimeError):
        predictor.predict(**PROMPTS["point"])
    predictor.set_image(photo())
    predictor.reset_predictor()
    assert not predictor._is_image_set and predictor._features is None
    with pytest.raises(RuntimeError, match="set_image_batch"):
        predictor.predict_batch()
    with pytest.raises(ValueError, match="needs a SAM 2 model"):
        basam.SAM2ImagePredictor(basam.load_model("tiny"))
