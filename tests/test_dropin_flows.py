"""Code written for segment_anything runs on basam with only the import changed: every flow of
client_flows runs once on the installed segment_anything and once on basam, on the same
official-format checkpoint, and gives the same masks (IoU ≥ 0.99) and scores (within 1e-4).

The flows run on the embedded model's trained weights saved as an official .pth (random weights
give near-constant masks whatever the prompt, which would compare nothing); the by-hand build is
also checked on random weights of another size."""

import numpy as np
import pytest
import torch

import basam
import basam.utils.onnx
import client_flows as flows
from basam.config import MODEL_CONFIGS
from basam.data.synth import make_scene, render
from official import basam_package, official_package, official_sam, randomize


def size_of(cfg):
    """The by-hand constructor arguments of a basam ModelConfig."""
    return dict(
        img_size=cfg.img_size,
        depth=cfg.encoder_depth,
        embed_dim=cfg.encoder_embed_dim,
        num_heads=cfg.encoder_num_heads,
        global_attn_indexes=list(cfg.encoder_global_attn_indexes),
        window_size=cfg.window_size,
        prompt_dim=cfg.prompt_embed_dim,
        mask_in_chans=cfg.mask_in_chans,
        mlp_dim=cfg.decoder_mlp_dim,
        decoder_heads=cfg.decoder_num_heads,
        iou_hidden=cfg.iou_head_hidden_dim,
    )


TINY, MINI = size_of(MODEL_CONFIGS["tiny"]), size_of(MODEL_CONFIGS["mini"])


@pytest.fixture(scope="module")
def packages(one_thread):
    return {"official": official_package(), "basam": basam_package()}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Random official-format weights of the tiny size (every parameter non-trivial)."""
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny_random.pth"
    torch.save(randomize(official_sam(MODEL_CONFIGS["tiny"]), seed=7).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def mini_checkpoint(tmp_path_factory):
    """The embedded model's weights as an official .pth: trained weights whose masks pass the
    official thresholds, for the generator flows."""
    path = tmp_path_factory.mktemp("ckpt") / "sam_mini.pth"
    torch.save(basam.load_model("default").state_dict(), path)
    return path


def models(packages, checkpoint, size):
    return {name: flows.build_by_hand(sa, checkpoint, size) for name, sa in packages.items()}


def photo(h=180, w=240, seed=1):
    """A smooth random picture (blobs of colour), so that masks have structure."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 6, 8, generator=g) * 255
    return torch.nn.functional.interpolate(low, (h, w), mode="bicubic").clamp(0, 255)[0].permute(1, 2, 0).byte().numpy()


def lesion(seed=3, h=192, w=256):
    return render(make_scene(seed, "lesion"), h, w).image


def assert_same_masks(got, expected, score_tol=1e-4):
    masks_a, scores_a = got
    masks_b, scores_b = expected
    assert masks_a.shape == masks_b.shape and masks_a.dtype == masks_b.dtype == bool
    assert np.abs(np.asarray(scores_a) - np.asarray(scores_b)).max() <= score_tol
    for a, b in zip(masks_a.reshape(-1, *masks_a.shape[-2:]), masks_b.reshape(-1, *masks_b.shape[-2:])):
        assert (a & b).sum() >= 0.99 * (a | b).sum()  # two empty masks agree


def assert_same_records(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        assert g["bbox"] == e["bbox"] and g["crop_box"] == e["crop_box"]
        assert abs(g["predicted_iou"] - e["predicted_iou"]) <= 1e-4
        # a pixel on the stability band's edge may fall either side: 1 px moves a score by ~1/area
        assert abs(g["stability_score"] - e["stability_score"]) <= 1e-4 + 1.5 / e["area"]
        a, b = g["segmentation"], e["segmentation"]
        assert (a & b).sum() >= 0.99 * (a | b).sum()


def test_the_by_hand_build_is_the_same_model(packages, tiny_checkpoint):
    sams = models(packages, tiny_checkpoint, TINY)
    assert isinstance(sams["basam"], basam.Sam)
    ours, theirs = sams["basam"].state_dict(), sams["official"].state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.rand(1, 3, 200, 256) * 255
    with torch.no_grad():
        a, b = (s.image_encoder(s.preprocess(x)) for s in (sams["basam"], sams["official"]))
    assert isinstance(a, torch.Tensor) and a.shape == b.shape == (1, 32, 16, 16)
    assert (a - b).abs().max() <= 1e-4


def test_predictor_notebook(packages, mini_checkpoint):
    sams = models(packages, mini_checkpoint, MINI)
    image = lesion(4)
    got = flows.predictor_notebook(packages["basam"], sams["basam"], image)
    expected = flows.predictor_notebook(packages["official"], sams["official"], image)
    assert got.keys() == expected.keys()
    for step in expected:
        assert_same_masks(got[step], expected[step])
    assert expected["batched boxes"][0].shape == (3, 1, *image.shape[:2])
    assert not np.array_equal(got["box"][0], got["point"][0][:1])  # the prompts did something


@pytest.mark.slow  # the official generator takes ~25 s over its 1024 default points
def test_generator_notebook_defaults(packages, mini_checkpoint):
    sams = models(packages, mini_checkpoint, MINI)
    image = lesion()
    got = flows.generator_notebook(packages["basam"], sams["basam"], image)
    expected = flows.generator_notebook(packages["official"], sams["official"], image)
    assert len(expected) > 0
    assert_same_records(got, expected)


def test_generator_notebook_tuned(packages, mini_checkpoint):
    sams = models(packages, mini_checkpoint, MINI)
    image = lesion()
    # the notebook's tuned generator: crops, fewer points in them, small regions removed (its
    # thresholds lowered to what these small trained weights reach)
    tuned = dict(
        points_per_side=12,
        pred_iou_thresh=0.5,
        stability_score_thresh=0.8,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
    )
    got = flows.generator_notebook(packages["basam"], sams["basam"], image, **tuned)
    expected = flows.generator_notebook(packages["official"], sams["official"], image, **tuned)
    assert any(r["crop_box"] != [0, 0, image.shape[1], image.shape[0]] for r in expected)  # masks from the crops
    assert_same_records(got, expected)


def test_onnx_notebook(packages, mini_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    sams = models(packages, mini_checkpoint, MINI)
    # 2:3 as the notebook's dummy orig_im_size (1500, 2250): the official graph keeps the dummy's
    # resized size as a constant (its traced int(...) slice), so only that aspect comes out right
    image = lesion(5, 160, 240)
    got = flows.onnx_notebook(packages["basam"], sams["basam"], image, tmp_path / "basam.onnx")
    expected = flows.onnx_notebook(packages["official"], sams["official"], image, tmp_path / "official.onnx")
    for step in expected:
        assert got[step][0].shape == (1, 1, *image.shape[:2])
        assert_same_masks(got[step], expected[step])
    # and the exported decoder answers as the predictor does
    predictor = basam.SamPredictor(sams["basam"])
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=np.array([[240 * 0.4, 160 * 0.45]]), point_labels=np.array([1]))
    best = int(np.argmax(scores))
    assert_same_masks((got["point"][0][0], got["point"][1][0]), (masks[best : best + 1], scores[best : best + 1]))


def test_micro_sam_embedding_by_hand(packages, mini_checkpoint):
    sams = models(packages, mini_checkpoint, MINI)
    image = lesion(6, 130, 256)
    points, labels = np.array([[60.0, 40.0], [200.0, 90.0]]), np.array([1, 0])
    f_ours, *got = flows.micro_sam_embedding(packages["basam"], sams["basam"], image, points, labels)
    f_theirs, *expected = flows.micro_sam_embedding(packages["official"], sams["official"], image, points, labels)
    assert (f_ours - f_theirs).abs().max() <= 1e-4
    assert_same_masks(got, expected)
    # the hand-made state gives what set_image gives
    predictor = basam.SamPredictor(sams["basam"])
    predictor.set_image(image)
    assert torch.allclose(predictor.features, f_ours, atol=1e-5)
    assert_same_masks(predictor.predict(point_coords=points, point_labels=labels, multimask_output=False)[:2], got)


def test_geospatial_tiles(packages, mini_checkpoint):
    sams = models(packages, mini_checkpoint, MINI)
    raster = np.concatenate([lesion(3), lesion(5)], axis=1)  # 192 × 512: two tiles of 256 side by side
    settings = dict(points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    labels_ours, got = flows.geospatial_tiles(packages["basam"], sams["basam"], raster, 256, **settings)
    labels_theirs, expected = flows.geospatial_tiles(packages["official"], sams["official"], raster, 256, **settings)
    assert len(expected) == 2 and all(len(records) > 0 for records in expected)
    for g, e in zip(got, expected):
        assert_same_records(g, e)
    assert (labels_ours == labels_theirs).mean() >= 0.99


def test_basam_onnx_decoder_takes_any_image_size(mini_checkpoint, tmp_path):
    """basam's SamOnnxModel computes the resized size in the graph: exported with the notebook's
    1500 × 2250 dummy, it gives the predictor's masks on an image of another aspect ratio."""
    onnxruntime = pytest.importorskip("onnxruntime")
    sam = flows.build_by_hand(basam_package(), mini_checkpoint, MINI)
    dummy = dict(
        image_embeddings=torch.randn(1, 128, 16, 16),
        point_coords=torch.rand(1, 5, 2) * 256,
        point_labels=torch.randint(0, 4, (1, 5)).float(),
        mask_input=torch.randn(1, 1, 64, 64),
        has_mask_input=torch.tensor([1.0]),
        orig_im_size=torch.tensor([1500.0, 2250.0]),
    )
    torch.onnx.export(
        basam.utils.onnx.SamOnnxModel(sam, return_single_mask=True),
        tuple(dummy.values()),
        str(tmp_path / "d.onnx"),
        input_names=list(dummy),
        output_names=["masks", "iou", "low_res"],
        dynamic_axes={"point_coords": {1: "n"}, "point_labels": {1: "n"}},
        opset_version=17,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"))
    image = lesion(5, 150, 256)
    predictor = basam.SamPredictor(sam)
    predictor.set_image(image)
    coords = predictor.transform.apply_coords(np.array([[[100.0, 60.0], [0.0, 0.0]]]), image.shape[:2])
    masks, scores, _ = session.run(
        None,
        dict(
            image_embeddings=predictor.features.numpy(),
            point_coords=coords.astype(np.float32),
            point_labels=np.array([[1, -1]], np.float32),
            mask_input=np.zeros((1, 1, 64, 64), np.float32),
            has_mask_input=np.zeros(1, np.float32),
            orig_im_size=np.array(image.shape[:2], np.float32),
        ),
    )
    expected, expected_scores, _ = predictor.predict(
        point_coords=np.array([[100.0, 60.0]]), point_labels=np.array([1]), return_logits=True
    )
    best = int(np.argmax(expected_scores))
    assert masks.shape == (1, 1, 150, 256)
    assert np.abs(masks[0, 0] - expected[best]).max() <= 1e-4 and abs(scores[0, 0] - expected_scores[best]) <= 1e-5
