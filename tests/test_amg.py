"""AutomaticMaskGenerator against the official SamAutomaticMaskGenerator on the shipped weights,
its pieces against their definitions, and tiles."""

import json
import warnings

import numpy as np
import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS
from basam.data.synth import make_scene, render
from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.amg_utils import box_nms, masks_to_rle, rle_to_mask, stability_score, tile_boxes
from official import official_predictor_and_generator, official_sam

# At the official thresholds the shipped weights keep few masks on a small scene (their IoU
# predictions rarely pass 0.88 at 256 px): lower thresholds that keep many, so the comparison
# with the official generator covers NMS, crops and small-region removal with real records.
LOW = dict(points_per_side=6, pred_iou_thresh=0.05, stability_score_thresh=0.3, stability_score_offset=0.05)


@pytest.fixture(scope="module")
def models(one_thread):
    ours = basam.load_model("default")
    official = official_sam(MODEL_CONFIGS["mini"])
    official.load_state_dict(ours.state_dict())
    return official, ours


def scene(seed, h=192, w=256, family="salient"):
    return render(make_scene(seed, family), h, w).image


def _mask(segmentation):
    if isinstance(segmentation, np.ndarray):
        return segmentation
    if isinstance(segmentation["counts"], str):
        from pycocotools import mask as mask_utils

        return mask_utils.decode(segmentation).astype(bool)
    return rle_to_mask(segmentation)


@pytest.mark.parametrize(
    "settings, output_mode, official_thresholds",
    [
        (dict(LOW), "binary_mask", False),
        (dict(LOW, crop_n_layers=1, crop_n_points_downscale_factor=2), "coco_rle", False),
        (dict(LOW, min_mask_region_area=40, box_nms_thresh=0.5), "uncompressed_rle", False),
        # The official thresholds, on a scene where the shipped weights pass them (no crops: the
        # official generator fails on a crop without masks).
        (dict(points_per_side=8, min_mask_region_area=30), "binary_mask", True),
    ],
)
def test_records_match_the_official_generator(models, settings, output_mode, official_thresholds):
    official, ours = models
    _, OfficialGenerator = official_predictor_and_generator()
    image = scene(3, family="lesion" if official_thresholds else "salient")
    with torch.no_grad():
        expected = OfficialGenerator(official, output_mode=output_mode, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, resolution=256, output_mode=output_mode, **settings).generate(image)
    assert len(expected) > 0
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        assert g["bbox"] == e["bbox"] and g["crop_box"] == e["crop_box"]
        assert g["point_coords"][0] == pytest.approx(e["point_coords"][0])
        assert abs(g["predicted_iou"] - e["predicted_iou"]) <= 1e-4
        # The logits agree to ~1e-5, so a pixel lying on the stability band's edge (±offset) can
        # fall on either side: one pixel of a small mask moves its score by ~1/area.
        assert abs(g["stability_score"] - e["stability_score"]) <= 1e-4 + 1.5 / e["area"]
        a, b = _mask(g["segmentation"]), _mask(e["segmentation"])
        assert a.shape == b.shape == image.shape[:2]
        assert (a & b).sum() / max(1, (a | b).sum()) >= 0.99
        assert abs(g["area"] - e["area"]) <= 0.01 * e["area"] + 1
        if output_mode == "uncompressed_rle":
            assert g["segmentation"]["size"] == e["segmentation"]["size"]
        if output_mode == "coco_rle":
            assert isinstance(g["segmentation"]["counts"], str)


def test_records_do_not_depend_on_the_decoder_group_size(models):
    # One point per decoder group: at this threshold about half the groups (17 of 36) have no mask
    # above it and skip the upscaling.
    _, ours = models
    image = scene(3)
    settings = dict(LOW, pred_iou_thresh=0.2)
    whole = AutomaticMaskGenerator(ours, resolution=256, **settings).generate(image)
    single = AutomaticMaskGenerator(ours, resolution=256, chunk_mb=1e-3, **settings).generate(image)
    assert len(whole) > 0
    assert len(single) == len(whole)
    for a, b in zip(single, whole):
        assert a["bbox"] == b["bbox"] and a["point_coords"] == b["point_coords"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-5
        # Batched and single GEMMs round differently (~1e-6), which may flip a pixel on the threshold.
        assert (a["segmentation"] & b["segmentation"]).sum() / (a["segmentation"] | b["segmentation"]).sum() >= 0.99


def test_rle_of_a_crop_equals_rle_of_the_full_mask():
    rng = np.random.default_rng(0)
    masks = torch.as_tensor(rng.random((4, 30, 20)) > 0.6)
    masks[1] = False
    masks[2] = True  # full columns over the whole image height: runs of neighbouring columns join
    for crop_box, hw in [([5, 7, 25, 37], (50, 40)), ([3, 0, 23, 30], (30, 26)), ([0, 0, 20, 30], (30, 20))]:
        for mask, rle in zip(masks, masks_to_rle(masks, crop_box, hw)):
            full = np.zeros(hw, dtype=bool)
            full[crop_box[1] : crop_box[3], crop_box[0] : crop_box[2]] = mask.numpy()
            assert np.array_equal(rle_to_mask(rle), full)
            assert rle["counts"].sum() == hw[0] * hw[1]
            assert (rle["counts"][1:] > 0).all()  # no empty runs except possibly the first
        assert len(masks_to_rle(masks, crop_box, hw)) == 4 and masks_to_rle(masks[:0], crop_box, hw) == []


def test_stability_score_does_not_overflow_on_wide_masks():
    logits = torch.full((1, 2, 40_000), 5.0)
    logits[0, 0, :100] = 0.5  # inside the lower threshold only
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(79_900 / 80_000)


def test_box_nms_is_greedy_by_score():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.3, 0.9])
    # 1 and 3 tie at 0.9: index order; 3 overlaps 1 by 0.67 < 0.7 and is kept; 0 overlaps 3 by 0.9.
    assert box_nms(boxes, scores, 0.7).tolist() == [1, 3, 2]
    assert box_nms(boxes, scores, 0.5).tolist() == [1, 2]


def test_box_nms_keeps_empty_boxes_without_a_division_warning():
    # Empty masks give 0, 0, 0, 0 boxes: IoU 0/0, which torchvision (NaN > t is false) keeps.
    boxes = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 10, 10]], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert box_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.7).tolist() == [0, 1, 2]


def test_tiles_cover_the_image_with_the_overlap():
    tiles = tile_boxes((700, 1000), 256, 64)
    covered = np.zeros((700, 1000), dtype=int)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == 256 and y1 - y0 == 256
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 256 - 64 for a, b in zip(xs, xs[1:]))


def test_an_object_across_a_tile_border_comes_out_as_one_mask(models):
    """A 512×256 scene in 256 px tiles overlapping by 128 px: tiles at x = 0, 128, 256. A disc
    across the border at x = 256 of the first tile lies whole in the middle tile."""
    _, ours = models
    h, w = 256, 512
    yy, xx = np.mgrid[:h, :w]
    disc = (xx - 256) ** 2 + (yy - 128) ** 2 < 45**2
    image = np.full((h, w, 3), 40, np.uint8)
    image[disc] = (230, 200, 40)
    gen = AutomaticMaskGenerator(
        ours, points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.5, tile_size=256, tile_overlap=128
    )
    assert gen.crop_boxes((h, w))[0] == [[0, 0, 256, 256], [128, 0, 384, 256], [256, 0, 512, 256]]
    records = gen.generate(image)
    hits = [r for r in records if (r["segmentation"] & disc).sum() / (r["segmentation"] | disc).sum() > 0.8]
    assert len(hits) == 1
    assert hits[0]["crop_box"] == [128, 0, 256, 256]
    # Without tiles' edge rule the disc would also come back in halves from the outer tiles.
    for r in records:
        inside = (r["segmentation"] & disc).sum()
        assert inside == 0 or inside / disc.sum() > 0.8 or r["crop_box"][0] == 128


def test_bad_arguments_are_refused(models):
    with pytest.raises(ValueError, match="output_mode"):
        AutomaticMaskGenerator(models[1], output_mode="png")
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(models[1], points_per_side=None)
    with pytest.raises(ValueError, match="tile_size"):
        AutomaticMaskGenerator(models[1], tile_size=256, tile_overlap=300)


# --- `basam amg` ----------------------------------------------------------------------------------

CLI_SETTINGS = [
    "--resolution",
    "256",
    "--points-per-side",
    "4",
    "--pred-iou-thresh",
    "0.05",
    "--stability-score-thresh",
    "0.2",
    "--stability-score-offset",
    "0.05",
    "--no-progress",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("amg_in")
    for i, seed in enumerate((3, 5, 8)):
        Image.fromarray(scene(seed, family="lesion")).save(d / f"scene{i}.png")
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    return d


def test_cli_writes_json_overlay_and_mask_folders_and_names_the_broken_file(folder, tmp_path, capsys):
    from PIL import Image
    from pycocotools import mask as mask_utils

    from basam.cli import main

    assert main(["amg", str(folder), "--out", str(tmp_path), *CLI_SETTINGS, "--masks"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable" in captured.out and "broken.jpg" in captured.out and "broken.jpg" in captured.err
    for i in range(3):
        records = json.loads((tmp_path / f"scene{i}.json").read_text())
        assert records and set(records[0]) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "point_coords",
            "stability_score",
            "crop_box",
        }
        assert Image.open(tmp_path / f"scene{i}_overlay.png").size == (256, 192)
        rows = (tmp_path / f"scene{i}" / "metadata.csv").read_text().splitlines()
        assert rows[0].startswith("id,area,bbox_x0") and len(rows) == len(records) + 1
        png = np.asarray(Image.open(tmp_path / f"scene{i}" / "0.png")) > 0
        assert np.array_equal(png, mask_utils.decode(records[0]["segmentation"]).astype(bool))
        assert int(rows[1].split(",")[1]) == records[0]["area"] == png.sum()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from basam.cli import main

    assert main(["amg", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    (tmp_path / "bad.png").write_bytes(b"x")
    assert main(["amg", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"basam amg: error: image or folder not found: {tmp_path / 'missing.png'}"
    assert err[-1].startswith("basam amg: error: no readable image")


@pytest.mark.torchrun
def test_two_torchrun_processes_write_what_one_process_writes(folder, tmp_path, free_port):
    import os
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
            "-m",
            "basam.cli",
            "amg",
            str(folder),
            "--out",
            str(tmp_path / "two"),
            *CLI_SETTINGS,
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("segmented 3 image(s)") == 1  # rank 0 alone reports, for every rank
    from basam.cli import main

    assert main(["amg", str(folder), "--out", str(tmp_path / "one"), *CLI_SETTINGS]) == 0
    for i in range(3):
        two, one = (json.loads((tmp_path / d / f"scene{i}.json").read_text()) for d in ("two", "one"))
        assert len(two) == len(one) > 0
        for a, b in zip(two, one):  # equal up to float round-off between processes
            assert a["segmentation"] == b["segmentation"] and a["bbox"] == b["bbox"]
            assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-6)


def test_auto_resolution_encodes_each_crop_at_its_own_size_with_scaled_windows(models):
    _, ours = models
    gen = AutomaticMaskGenerator(ours, points_per_side=2, resolution="auto", crop_n_layers=1)
    sizes = []
    gen.predictor.set_embedding = lambda e, _set=gen.predictor.set_embedding: (
        _set(e),
        sizes.append((e.orig_hw, gen.predictor.padded_hw, gen.predictor.windows)),
    )[0]
    gen.generate(scene(1, h=384, w=512))
    assert sizes[0] == ((384, 512), (384, 512), "scaled")  # the whole image: native, scaled windows
    # Layer-1 crops of about 258×322 px, above the 256 px pretraining side: native too.
    assert len(sizes) == 5
    for (h, w), padded, windows in sizes[1:]:
        assert max(h, w) > 256 and padded == (16 * round(h / 16), 16 * round(w / 16)) and windows == "scaled"
