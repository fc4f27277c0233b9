"""AutomaticMaskGenerator with HQ-SAM against segment_anything_hq's generator, on shared weights:
the shipped model's SAM weights plus random HQ parts (small, so that the HQ mask refines SAM's
rather than replacing it, and the records are real masks)."""

import numpy as np
import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, hq_config
from basam.data.synth import make_scene, render
from basam.inference.amg import AutomaticMaskGenerator
from official_hq import official_hq, official_hq_sam

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest: faster on the shared 2-core machines

MINI_HQ = hq_config(MODEL_CONFIGS["mini"])
HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
LOW = dict(points_per_side=6, pred_iou_thresh=0.05, stability_score_thresh=0.3, stability_score_offset=0.05)


@pytest.fixture(scope="module")
def models():
    shipped = basam.load_model("default").state_dict()
    ours = basam.Sam(MINI_HQ).eval()
    g = torch.Generator().manual_seed(3)
    state = dict(shipped)
    for name, p in ours.state_dict().items():
        if name.split(".")[1] in HQ_PARTS:
            weight_of_norm = name.endswith("weight") and p.dim() == 1 and ".1." in name  # the LayerNorm2d
            state[name] = (1.0 if weight_of_norm else 0.0) + 0.02 * torch.randn(p.shape, generator=g)
    ours.load_state_dict(state)
    official = official_hq_sam(MINI_HQ)
    official.load_state_dict(state)
    return official, ours


def scene(seed, h=192, w=256):
    return render(make_scene(seed, "salient"), h, w).image


@pytest.mark.parametrize(
    "settings, multimask",
    [
        (dict(LOW), True),
        (dict(LOW, crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=30), True),
        (dict(LOW), False),
    ],
)
def test_records_match_the_official_hq_generator(models, settings, multimask):
    official, ours = models
    image = scene(3)
    generator = official_hq().automatic_mask_generator.SamAutomaticMaskGenerator
    with torch.no_grad():
        expected = generator(official, **settings).generate(image, multimask_output=multimask)
    got = AutomaticMaskGenerator(ours, resolution=256, multimask_output=multimask, **settings).generate(image)
    assert len(expected) > 3
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        assert g["bbox"] == e["bbox"] and g["crop_box"] == e["crop_box"]
        assert g["point_coords"][0] == pytest.approx(e["point_coords"][0])
        assert abs(g["predicted_iou"] - e["predicted_iou"]) <= 1e-4
        assert abs(g["stability_score"] - e["stability_score"]) <= 1e-4 + 1.5 / e["area"]
        a, b = g["segmentation"], e["segmentation"]
        assert a.shape == b.shape == image.shape[:2]
        assert (a & b).sum() / max(1, (a | b).sum()) >= 0.99


def test_hq_token_only_gives_the_hq_masks(models):
    official, ours = models
    image = scene(5)
    plain = AutomaticMaskGenerator(ours, resolution=256, **LOW).generate(image)
    hq_only = AutomaticMaskGenerator(ours, resolution=256, hq_token_only=True, **dict(LOW, stability_score_thresh=0))
    records = hq_only.generate(image)
    # the HQ token's masks on these weights are not SAM's + HQ's: the records differ
    assert len(records) > 0 and [r["bbox"] for r in records] != [r["bbox"] for r in plain]
    # each record's mask is the HQ mask of its point, as the predictor gives it
    pred = basam.Predictor(ours, resolution=256)
    pred.set_image(image)
    for r in records[:3]:
        mask, score, _ = pred.predict(
            point_coords=np.array(r["point_coords"]), point_labels=np.array([1]), hq_token_only=True
        )
        assert abs(score[0] - r["predicted_iou"]) <= 1e-4
        assert (mask[0] & r["segmentation"]).sum() / max(1, (mask[0] | r["segmentation"]).sum()) >= 0.99
    with pytest.raises(ValueError, match="needs an HQ-SAM model"):
        AutomaticMaskGenerator(basam.load_model("default"), hq_token_only=True)
