"""HQ-SAM: the released checkpoints' names and shapes, the official SamPredictor's numbers (ViT and
TinyViT), and the HQ decoder at any resolution with every attention preset."""

import numpy as np
import pytest
import torch

import basam
from basam.config import ATTENTION_PRESETS, MODEL_CONFIGS, AttentionConfig, hq_config
from basam.formats.checkpoint import CheckpointError, load_state
from basam.inference.transforms import normalize_and_pad
from official import randomize
from official_hq import official_hq, official_hq_sam

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest: faster on the shared 2-core machines

TINY_HQ = hq_config(MODEL_CONFIGS["tiny"])


@pytest.fixture(scope="module")
def models():
    off = randomize(official_hq_sam(TINY_HQ), seed=11)
    ours = basam.Sam(TINY_HQ).eval()
    ours.load_state_dict(off.state_dict())
    return off, ours


def smooth_image(h, w, seed=0):
    """A picture with large regions (random weights still give masks that are not all or nothing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    return np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))[:h, :w]


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def test_the_released_vit_b_state_dict_loads_strictly(tmp_path):
    released = official_hq().sam_model_registry["vit_b"](checkpoint=None).state_dict()
    path = tmp_path / "sam_hq_vit_b.pth"
    torch.save(released, path)
    model = basam.load_model("vit_b", checkpoint=path)  # recognised by its keys
    assert model.cfg.name == "hq_vit_b" and model.is_hq
    ours = model.state_dict()
    assert set(ours) == set(released)
    assert all(torch.equal(ours[k], released[k]) for k in released)
    assert type(model.mask_decoder).__name__ == "MaskDecoderHQ"

    # a plain SAM file on the HQ model: one line naming what is missing and what the file is
    plain = {k: v for k, v in released.items() if not k.startswith(HQ_PREFIXES)}
    missing = r"hq_vit_b; 25 missing: mask_decoder\.hf_token\.weight.*looks like vit_b$"
    with pytest.raises(CheckpointError, match=missing):
        load_state(model, plain, "sam_vit_b.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected: mask_decoder\.hf_extra\.weight.*looks like hq_vit_b$"):
        load_state(model, {**released, "mask_decoder.hf_extra.weight": torch.zeros(1)}, "x.pth")
    assert basam.load_model("hq_vit_tiny").cfg.encoder == "tiny_vit"  # the names segment_anything_hq uses


HQ_PREFIXES = tuple(
    f"mask_decoder.{p}."
    for p in ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
)


def official_predictor(model, img):
    predictor = official_hq().predictor.SamPredictor(model)
    predictor.set_image(img)
    return predictor


PROMPTS = {
    "point": dict(point_coords=np.array([[120.0, 60.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[120.0, 60.0], [30.0, 100.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([40.0, 20.0, 250.0, 150.0])),
    "box+point": dict(
        box=np.array([40.0, 20.0, 250.0, 150.0]), point_coords=np.array([[100.0, 80.0]]), point_labels=np.array([1])
    ),
}


def assert_same(theirs, ours, low_res_atol=1e-4):
    (m0, s0, l0), (m1, s1, l1) = theirs, ours
    assert m1.shape == m0.shape and s1.shape == s0.shape and l1.shape == l0.shape
    assert all(iou(a, b) >= 0.99 for a, b in zip(m0, m1))
    assert np.abs(s1 - s0).max() <= 1e-4
    assert np.abs(l1 - l0).max() <= low_res_atol * max(1.0, np.abs(l0).max())


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("hq_token_only", [False, True])
def test_predict_matches_the_official_hq_predictor(models, prompt, multimask, hq_token_only):
    off, ours = models
    img = smooth_image(180, 300)
    official = official_predictor(off, img)
    mine = basam.Predictor(ours)
    mine.set_image(img)
    kw = dict(PROMPTS[prompt], multimask_output=multimask, hq_token_only=hq_token_only)
    theirs = official.predict(**kw)
    result = mine.predict(**kw)
    assert result[0].shape == (1, 180, 300)  # HQ-SAM returns one mask either way
    assert_same(theirs, result)
    # random weights may leave the thresholded mask empty: compare at a level that cuts it too
    logits0 = official.predict(**kw, return_logits=True)[0]
    logits1 = mine.predict(**kw, return_logits=True)[0]
    level = np.median(logits0)
    assert 0.2 < (logits0 > level).mean() < 0.8 and iou(logits0 > level, logits1 > level) >= 0.99
    # the low-res logits fed back as mask_input
    again = dict(kw, mask_input=theirs[2])
    assert_same(official.predict(**again), mine.predict(**dict(kw, mask_input=result[2])))


def test_predict_torch_batches_match_the_official(models):
    off, ours = models
    img = smooth_image(200, 160, seed=2)
    official = official_predictor(off, img)
    mine = basam.Predictor(ours)
    mine.set_image(img)
    points = torch.tensor([[[40.0, 50.0]], [[120.0, 150.0]], [[10.0, 190.0]]])
    coords = official.transform.apply_coords_torch(points, img.shape[:2])
    labels = torch.ones(3, 1, dtype=torch.int64)
    for hq_token_only in (False, True):
        m0, s0, l0 = official.predict_torch(coords, labels, multimask_output=True, hq_token_only=hq_token_only)
        m1, s1, l1 = mine.predict_torch(coords, labels, multimask_output=True, hq_token_only=hq_token_only)
        assert m1.shape == m0.shape == (3, 1, 200, 160)
        assert torch.allclose(s1, s0, atol=1e-4) and torch.allclose(l1, l0, atol=1e-4, rtol=1e-4)


def test_hq_token_only_needs_an_hq_model():
    pred = basam.Predictor(basam.Sam(MODEL_CONFIGS["tiny"]).eval())
    pred.set_image(smooth_image(64, 64))
    with pytest.raises(ValueError, match="hq_token_only needs an HQ-SAM model"):
        pred.predict(box=np.array([0, 0, 30, 30]), hq_token_only=True)


def test_vit_tiny_hq_matches_the_official_at_1024(tmp_path):
    off = randomize(official_hq().sam_model_registry["vit_tiny"](checkpoint=None), seed=5, std=0.02)
    off.train().eval()  # the release's TinyViT caches its attention biases on eval(): refresh them
    path = tmp_path / "sam_hq_vit_tiny.pth"
    torch.save(off.state_dict(), path)
    ours = basam.load_model("vit_t", checkpoint=path)  # its classifier head is dropped
    assert ours.cfg.name == "hq_vit_tiny" and ours.cfg.encoder == "tiny_vit"
    img = smooth_image(600, 800, seed=4)
    official = official_predictor(off, img)
    mine = basam.Predictor(ours, resolution=1024)
    mine.set_image(img)
    torch.testing.assert_close(mine.features, official.features, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(
        mine.early_features, official.interm_features[0].permute(0, 3, 1, 2), atol=2e-4, rtol=1e-3
    )
    for hq_token_only in (False, True):
        kw = dict(PROMPTS["box+point"], multimask_output=True, hq_token_only=hq_token_only)
        assert_same(official.predict(**kw), mine.predict(**kw), low_res_atol=1e-3)


def plain_twin(hq_model):
    """The same weights without the HQ parts, as a plain SAM model."""
    plain = basam.Sam(MODEL_CONFIGS["tiny"], hq_model.attn_cfg).eval()
    plain.load_state_dict({k: v for k, v in hq_model.state_dict().items() if not k.startswith(HQ_PREFIXES)})
    return plain


def early_by_hook(model, x, windows):
    """The output of the first global block, (B, C, Hg, Wg), caught by a hook."""
    caught = []
    index = min(model.cfg.encoder_global_attn_indexes)
    handle = model.image_encoder.blocks[index].register_forward_hook(lambda m, i, o: caught.append(o))
    try:
        model.image_encoder(x, windows=windows)
    finally:
        handle.remove()
    return caught[0].permute(0, 3, 1, 2)


@pytest.mark.parametrize("preset", ATTENTION_PRESETS)
def test_hq_at_768x1024_with_every_preset_and_scaled_windows(models, preset):
    ours = models[1]
    ours.set_attention(AttentionConfig.from_preset(preset, windows="scaled"))
    try:
        check_any_resolution(models, smooth_image(768, 1024, seed=6), "native", grid=(48, 64))
    finally:
        ours.set_attention(AttentionConfig())


def test_hq_at_2048(models):
    ours = models[1]
    ours.set_attention(AttentionConfig.from_preset("basam", windows="scaled"))
    try:
        check_any_resolution(models, smooth_image(2048, 2048, seed=8), "native", grid=(128, 128), against_plain=False)
    finally:
        ours.set_attention(AttentionConfig())


def check_any_resolution(models, img, resolution, grid, against_plain=True):
    """The early feature is the first global block's output on this image's grid; the encoder's
    embedding is that of the same weights without HQ; the official HQ decoder, given this grid's
    embedding, early feature and prompt embeddings, returns our masks and scores."""
    off, ours = models
    pred = basam.Predictor(ours, resolution=resolution)
    pred.set_image(img)
    assert pred.features.shape[-2:] == grid and pred.early_features.shape == (1, TINY_HQ.encoder_embed_dim, *grid)
    if against_plain:  # two more encoder runs
        x = normalize_and_pad(torch.from_numpy(pred.transform.apply_image(img)).permute(2, 0, 1)[None], pred.padded_hw)
        with torch.no_grad():
            torch.testing.assert_close(pred.early_features, early_by_hook(ours, x, None), atol=1e-5, rtol=1e-5)
        plain = basam.Predictor(plain_twin(ours), resolution=resolution)
        plain.set_image(img)
        torch.testing.assert_close(pred.features, plain.features, atol=1e-5, rtol=1e-5)
    box = np.array([100.0, 80.0, img.shape[1] * 0.6, img.shape[0] * 0.7])
    boxes = torch.as_tensor(pred.transform.apply_boxes(box[None], img.shape[:2]), dtype=torch.float32)
    sparse, dense = ours.prompt_encoder(None, boxes, None, pred.padded_hw)
    for multimask in (False, True):
        for hq_token_only in (False, True):
            masks, scores, low_res = pred.predict(box=box, multimask_output=multimask, hq_token_only=hq_token_only)
            assert masks.shape == (1, *img.shape[:2]) and low_res.shape == (1, 4 * grid[0], 4 * grid[1])
            with torch.no_grad():
                lr, iou_pred = off.mask_decoder(
                    pred.features,
                    ours.prompt_encoder.get_dense_pe(grid),
                    sparse,
                    dense,
                    multimask,
                    hq_token_only,
                    [pred.early_features.permute(0, 2, 3, 1)],
                )
            np.testing.assert_allclose(scores, iou_pred[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(low_res, lr[0].numpy(), atol=1e-4, rtol=1e-4)


def test_a_training_step_reaches_the_hq_parts(models):
    """The trainer's step on an HQ-SAM model: its decoder gets the early feature, and the loss's
    gradient reaches the HQ parts (HQ-SAM's own training trains only those)."""
    from basam.training.loss import TrainStep

    model = basam.Sam(TINY_HQ).train()
    model.load_state_dict(models[1].state_dict())
    images = torch.randn(2, 3, 256, 256)
    targets = torch.zeros(2, 256, 256)
    targets[:, 60:180, 40:200] = 1
    valid = torch.ones(2, 256, 256, dtype=torch.bool)
    groups = {"box": (torch.arange(2), None, None, torch.tensor([[40.0, 60.0, 200.0, 180.0]] * 2))}
    loss, parts = TrainStep(model, None, refine_iters=1)(images, targets, valid, groups, torch.rand(2, 1))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    for name in ("hf_token.weight", "compress_vit_feat.0.weight", "embedding_maskfeature.3.weight"):
        assert model.mask_decoder.get_parameter(name).grad.abs().sum() > 0, name


def test_features_written_by_hand_need_their_early_feature_too(models):
    """A micro-sam-style client writes features by hand: HQ-SAM must not pair them with the early
    feature of the image set before."""
    _, ours = models
    first, second = smooth_image(128, 128, seed=3), smooth_image(128, 128, seed=4)
    pred = basam.Predictor(ours)
    pred.set_image(second)
    box = np.array([10, 10, 90, 100])
    expected, expected_scores, _ = pred.predict(box=box, multimask_output=False)
    embedding, early = pred.features, pred.early_features
    pred.set_image(first)
    pred.features = embedding  # the second image's embedding, the first image's early feature still held
    with pytest.raises(RuntimeError, match="early_features"):
        pred.predict(box=box, multimask_output=False)
    pred.early_features = early
    masks, scores, _ = pred.predict(box=box, multimask_output=False)
    assert np.array_equal(masks, expected) and np.allclose(scores, expected_scores)
