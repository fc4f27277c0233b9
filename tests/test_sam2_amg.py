"""basam.AutomaticMaskGenerator on a SAM 2 model against the official SAM2AutomaticMaskGenerator:
the same records (masks, boxes, scores) for its parameters (mask_threshold, use_m2m,
multimask_output), on a non-square photo, with the official defaults and with lower thresholds."""

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.formats.checkpoint import ASSETS
from official_sam2 import TINY_OVERRIDES, SAM2AutomaticMaskGenerator, official_sam2, release_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    official = official_sam2(overrides=TINY_OVERRIDES, seed=11)
    with torch.no_grad():  # random weights give logits within ±0.02; larger ones spread the stability scores
        for mlp in official.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[2].weight.mul_(30.0)
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    torch.save(release_state_dict(official), path)
    return official, basam.load_model("sam2_tiny", checkpoint=path)


def photo():
    return np.ascontiguousarray(np.asarray(Image.open(ASSETS / "sample.jpg").convert("RGB"))[:250])


def official_generator(official, **kwargs):
    generator = SAM2AutomaticMaskGenerator(official, **kwargs)
    # The release writes the 1024 px feature sizes as a literal; the 256 px test model needs its own.
    generator.predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
    return generator


def by_box(records):
    return sorted(records, key=lambda r: (tuple(r["point_coords"][0]), r["predicted_iou"]))


# Random weights make near-whole-image masks, which box NMS would reduce to one: it is off here.
LOW = {
    "pred_iou_thresh": 0.5,
    "stability_score_thresh": 0.6,
    "stability_score_offset": 0.02,
    "points_per_side": 8,
    "box_nms_thresh": 1.0,
}


@pytest.mark.parametrize(
    "options",
    [
        {},  # the official defaults: pred_iou_thresh 0.8, stability 0.95, multimask
        LOW,
        {**LOW, "use_m2m": True, "stability_score_thresh": 0.3},
        {
            **LOW,
            "multimask_output": False,
            "mask_threshold": 0.01,
            "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.3,
        },
        {**LOW, "points_per_side": 6, "crop_n_layers": 1},
    ],
)
def test_records_equal_official(tiny, options):
    official, model = tiny
    image = photo()
    options = {"points_per_side": 8, **options}
    ref = by_box(official_generator(official, **options).generate(image))
    ours = by_box(basam.AutomaticMaskGenerator(model, **options).generate(image))
    if "stability_score_thresh" in options:
        # the lowered thresholds keep masks to compare (across crops, NMS keeps the whole-image one)
        assert len(ref) >= (1 if options.get("crop_n_layers") else 3)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert set(a) == set(b)
        assert a["bbox"] == b["bbox"] and a["crop_box"] == b["crop_box"]
        assert np.allclose(a["point_coords"], b["point_coords"], atol=1e-4)  # the release's points are float32
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-4
        # SAM 2 upsamples the low-res logits to the crop in one step: the same pixels up to float round-off
        assert abs(a["stability_score"] - b["stability_score"]) <= 1e-4
        assert abs(a["area"] - b["area"]) <= 2
        assert a["segmentation"].shape == image.shape[:2]
        overlap = (a["segmentation"] & b["segmentation"]).sum() / max(1, (a["segmentation"] | b["segmentation"]).sum())
        assert overlap >= 0.99


def test_sam2_defaults_and_m2m_needs_sam2(tiny):
    _, model = tiny
    assert basam.AutomaticMaskGenerator(model).pred_iou_thresh == 0.8
    assert basam.AutomaticMaskGenerator(basam.load_model("tiny")).pred_iou_thresh == 0.88
    with pytest.raises(ValueError, match="needs a SAM 2 model"):
        basam.AutomaticMaskGenerator(basam.load_model("tiny"), use_m2m=True)
