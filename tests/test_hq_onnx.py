"""ONNX export of HQ-SAM: the encoder's early features, and the decoder against segment_anything_hq's
SamOnnxModel (its PyTorch forward) and against basam's own decode at a non-square input."""

import numpy as np
import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, hq_config
from basam.formats.onnx import export_onnx, fit_inside
from basam.inference.transforms import masks_to_original
from official import randomize
from official_hq import official_hq, official_hq_sam

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

TINY_HQ = hq_config(MODEL_CONFIGS["tiny"])


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def models():
    official = randomize(official_hq_sam(TINY_HQ), seed=4)
    ours = basam.Sam(TINY_HQ).eval()
    ours.load_state_dict(official.state_dict())
    return official, ours


def feeds(early, rng):
    return {
        "image_embeddings": rng.normal(size=(1, 32, 16, 16)).astype(np.float32),
        "early_features": early,
        "point_coords": np.array([[[30, 40], [200, 100], [0, 0]]], np.float32),
        "point_labels": np.array([[1, 0, -1]], np.float32),
        "mask_input": rng.normal(size=(1, 1, 64, 64)).astype(np.float32),
        "has_mask_input": np.ones(1, np.float32),
        "orig_im_size": np.array([200, 300], np.float32),
    }


@pytest.mark.parametrize("hq_token_only, multimask", [(False, False), (True, True)])
def test_decoder_is_the_official_hq_export(models, tmp_path, hq_token_only, multimask):
    official, ours = models
    export_onnx(ours, tmp_path, (256, 256), hq_token_only=hq_token_only, multimask=multimask)
    decoder = session(tmp_path / "decoder.onnx")
    assert [i.name for i in decoder.get_inputs()][:2] == ["image_embeddings", "early_features"]
    rng = np.random.default_rng(0)
    feed = feeds(rng.normal(size=(1, 64, 16, 16)).astype(np.float32), rng)
    official_hq()
    from segment_anything_hq.utils.onnx import SamOnnxModel

    onnx_model = SamOnnxModel(official, hq_token_only=hq_token_only, multimask_output=multimask)
    args = {k: torch.from_numpy(v) for k, v in feed.items()}
    args["interm_embeddings"] = args.pop("early_features").permute(0, 2, 3, 1)[None]  # the release's layout
    with torch.no_grad():
        theirs = onnx_model(**args)
    for feed_kind in (feed, {**feed, "has_mask_input": np.zeros(1, np.float32)}):
        if feed_kind is not feed:
            args["has_mask_input"] = torch.zeros(1)
            with torch.no_grad():
                theirs = onnx_model(**args)
        mine = decoder.run(None, feed_kind)
        for a, b in zip(mine, theirs):
            assert a.shape == tuple(b.shape) and np.abs(a - b.numpy()).max() <= 1e-4


def test_encoder_and_decoder_at_a_non_square_input_with_basam(tmp_path):
    model = randomize(basam.Sam(TINY_HQ, basam.AttentionConfig.from_preset("basam", windows="scaled")), seed=6).eval()
    input_hw, orig_hw = (192, 320), (300, 500)
    export_onnx(model, tmp_path, input_hw)
    image = torch.randn(1, 3, *input_hw)
    embeddings, early = session(tmp_path / "encoder.onnx").run(None, {"image": image.numpy()})
    with torch.no_grad():
        ref_emb, ref_early = model.image_encoder(image)
    assert early.shape == (1, 64, 12, 20)
    assert np.abs(embeddings - ref_emb.numpy()).max() <= 1e-4 and np.abs(early - ref_early.numpy()).max() <= 1e-4
    box = np.array([[[30, 20], [250, 150]]], np.float32)
    masks, scores, low_res = session(tmp_path / "decoder.onnx").run(
        None,
        {
            "image_embeddings": embeddings,
            "early_features": early,
            "point_coords": box,
            "point_labels": np.array([[2, 3]], np.float32),
            "mask_input": np.zeros((1, 1, 48, 80), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(orig_hw, np.float32),
        },
    )
    with torch.no_grad():
        ref_low, ref_scores = model.decode(
            ref_emb, input_hw, boxes=torch.from_numpy(box).reshape(1, 4), early_features=ref_early
        )
    ref_masks = masks_to_original(ref_low, input_hw, fit_inside(orig_hw, input_hw), orig_hw)
    assert masks.shape == (1, 1, *orig_hw)
    assert np.abs(low_res - ref_low.numpy()).max() <= 1e-4 and np.abs(scores - ref_scores.numpy()).max() <= 1e-4
    assert np.abs(masks - ref_masks.numpy()).max() <= 2e-4


def test_hq_options_need_an_hq_model(tmp_path):
    with pytest.raises(ValueError, match="HQ-SAM export options"):
        export_onnx(basam.Sam(MODEL_CONFIGS["tiny"]).eval(), tmp_path, (256, 256), hq_token_only=True)
