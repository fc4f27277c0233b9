"""Batched encoding (`--batch-size`): the same embeddings, masks and scores as one image at a time."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.cli import main
from basam.config import MODEL_CONFIGS, AttentionConfig
from basam.data.synth import make_scene, render, write_benchmark
from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from official import official_sam, randomize

# (H, W) per image; at the native resolution they pad to 96×128 (three), 128×96 (two) and 80×112
# (one): three groups, the first split over two forwards at batch size 2.
SIZES = [(96, 128), (128, 96), (90, 120), (80, 112), (96, 128), (128, 96)]


def scene(seed, hw, family="salient"):
    return render(make_scene(seed, family), *hw).image


@pytest.fixture(scope="module")
def tiny(one_thread):
    model = basam.Sam(MODEL_CONFIGS["tiny"], AttentionConfig.from_preset("basam"))
    model.load_state_dict(randomize(official_sam(MODEL_CONFIGS["tiny"]), seed=3).state_dict())
    return model.eval()


def count_forwards(model):
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))
    return calls, handle


@pytest.mark.parametrize("windows", ["fixed", "scaled"])
def test_batched_encoding_equals_one_by_one(tiny, windows):
    images = [scene(seed, hw) for seed, hw in enumerate(SIZES)]
    predictor = Predictor(tiny, "native", windows=windows)
    calls, handle = count_forwards(tiny)
    batched = predictor.encode_images(images, batch_size=2)
    handle.remove()
    assert sorted(calls) == [1, 1, 2, 2]  # 96×128: 2 + 1, 128×96: 2, 80×112: 1
    assert not predictor.is_image_set  # encoding leaves the current image alone
    for image, embedding in zip(images, batched):
        predictor.set_image(image)
        assert embedding.orig_hw == predictor.original_size and embedding.padded_hw == predictor.padded_hw
        assert embedding.features.shape == predictor.features.shape
        assert (embedding.features - predictor.features).abs().max() <= 1e-5
        masks, scores, _ = predictor.predict(box=np.array([10, 12, 70, 60]))
        predictor.set_embedding(embedding)
        masks_b, scores_b, _ = predictor.predict(box=np.array([10, 12, 70, 60]))
        assert np.abs(scores - scores_b).max() <= 1e-5 and (masks != masks_b).mean() < 1e-3


def test_batch_size_below_one_is_refused(tiny):
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        Predictor(tiny).encode_images([scene(0, (64, 64))], batch_size=0)


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """A generic-layout benchmark of 8 scenes, 3 of them resized so that native inputs differ."""
    root = write_benchmark(tmp_path_factory.mktemp("mixed") / "data", n_per_family=2, size=(96, 128), seed=4)
    stems = sorted(p.stem for p in (root / "images").glob("*.png"))
    for stem, (h, w) in zip(stems[::3], [(128, 96), (80, 112), (128, 96)]):
        Image.open(root / "images" / f"{stem}.png").resize((w, h), Image.BILINEAR).save(root / "images" / f"{stem}.png")
        Image.open(root / "masks" / f"{stem}.png").resize((w, h), Image.NEAREST).save(root / "masks" / f"{stem}.png")
    return root


def test_eval_scores_are_the_same_with_a_batch_size(mixed_sizes, tmp_path, one_thread):
    from basam.modeling.image_encoder import ImageEncoderViT

    summaries, forwards = {}, []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: forwards.append(out.shape[0]) if isinstance(m, ImageEncoderViT) else None
    )
    for batch in (1, 3):
        out = tmp_path / str(batch)
        assert (
            main(
                [
                    "eval",
                    "--data",
                    f"generic:{mixed_sizes}",
                    "--model",
                    "default",
                    "--resolution",
                    "native",
                    "--prompt",
                    "box",
                    "--batch-size",
                    str(batch),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        summaries[batch] = json.loads((out / "summary.json").read_text())["metrics"]
        rows = (out / "per_image.csv").read_text().splitlines()
        summaries[batch]["ious"] = [r.split(",")[:3] for r in rows]
    hook.remove()
    assert forwards[:8] == [1] * 8 and sorted(forwards[8:]) == [
        1,
        1,
        1,
        1,
        2,
        2,
    ]  # batches of 3 with a resized image each
    assert summaries[1]["count"] == summaries[3]["count"] == 8
    assert 0.3 < summaries[1]["mIoU"] < 1  # a trained model: the scores say something about each image
    assert summaries[1]["mIoU"] == pytest.approx(summaries[3]["mIoU"], abs=1e-9)
    assert summaries[1]["Smeasure"] == pytest.approx(summaries[3]["Smeasure"], abs=1e-6)
    assert summaries[1]["ious"] == summaries[3]["ious"]  # index, name and IoU of each row


@pytest.mark.parametrize("command", ["eval", "sweep", "amg"])
def test_cli_batch_size_zero_is_one_line(command, tmp_path, capsys):
    args = ["--data", "synth:salient", "--n", "1", "--resolution", "64"] if command != "amg" else [str(tmp_path)]
    assert main([command, *args, "--model", "tiny", "--batch-size", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"basam {command}: error: batch size must be at least 1, got 0"]


def test_amg_batch_equals_one_image_at_a_time(one_thread):
    model = basam.load_model("default")
    settings = dict(
        points_per_side=4,
        pred_iou_thresh=0.05,
        stability_score_thresh=0.3,
        stability_score_offset=0.05,
        crop_n_layers=1,
        output_mode="uncompressed_rle",
    )
    images = [scene(seed, (96, 128), "lesion") for seed in (3, 5)] + [scene(8, (128, 96), "lesion")]
    one = [AutomaticMaskGenerator(model, **settings).generate(image) for image in images]
    calls, handle = count_forwards(model)
    batched = AutomaticMaskGenerator(model, batch_size=4, **settings).generate_batch(images)
    handle.remove()
    assert max(calls) > 1 and sum(calls) == 3 * 5  # every crop of every image encoded, several per forward
    assert [len(r) for r in batched] == [len(r) for r in one] and sum(map(len, one)) > 0
    for records, expected in zip(batched, one):
        for got, want in zip(records, expected):
            assert got["segmentation"] == want["segmentation"] and got["bbox"] == want["bbox"]
            assert got["predicted_iou"] == pytest.approx(want["predicted_iou"], abs=1e-5)
