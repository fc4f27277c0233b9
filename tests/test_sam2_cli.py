"""Every command with a SAM 2 model (`--model sam2_tiny`, the released sizes' layout at test size,
random weights): predict, amg, eval, sweep, serve's engine and train with decoder tuning run and
write what they say; export-onnx refuses a size Hiera cannot take in one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.cli import main
from basam.formats.checkpoint import ASSETS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam2cli")
    image = root / "photo.png"
    Image.open(ASSETS / "sample.jpg").crop((0, 0, 384, 250)).save(image)
    return root, image


def test_predict_and_amg(files, tmp_path, capsys):
    _, image = files
    assert main(["predict", str(image), "--model", "sam2_tiny", "--point", "100,120", "--out", str(tmp_path)]) == 0
    assert "resolution square → input 256×256" in capsys.readouterr().out
    mask = np.asarray(Image.open(tmp_path / "photo_mask.png"))
    assert mask.shape[:2] == (250, 384)
    assert (
        main(
            [
                "predict",
                str(image),
                "--model",
                "sam2_tiny",
                "--box",
                "10,10,200,200",
                "--resolution",
                "native",
                "--attn",
                "basam",
                "--windows",
                "scaled",
                "--out",
                str(tmp_path / "n"),
            ]
        )
        == 0
    )
    assert "input 384×256" in capsys.readouterr().out  # printed W×H
    assert (
        main(
            [
                "predict",
                str(image),
                "--model",
                "sam2_tiny",
                "--point",
                "1,1",
                "--resolution",
                "272",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["amg", str(image), "--model", "sam2_tiny", "--out", str(tmp_path / "amg"), "--no-progress"]) == 0
    assert "segmented 1 image(s)" in capsys.readouterr().out


def test_eval_and_sweep(tmp_path):
    assert (
        main(["eval", "--data", "synth:salient", "--n", "1", "--model", "sam2_tiny", "--out", str(tmp_path / "e")]) == 0
    )
    result = json.loads(next((tmp_path / "e").glob("*.json")).read_text())
    assert result["resolution"] == "square" and result["model"] == "sam2_tiny"
    assert (
        main(
            [
                "sweep",
                "--data",
                "synth:salient",
                "--n",
                "1",
                "--model",
                "sam2_tiny",
                "--attn",
                "sam,basam",
                "--resolution",
                "256,512",
                "--prompt",
                "box",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert {(r["preset"], r["resolution"]) for r in rows} == {(p, r) for p in ("sam", "basam") for r in ("256", "512")}


def test_serve_engine(files):
    from basam.serve.engine import Engine

    _, image = files
    engine = Engine(basam.load_model("sam2_tiny"))
    try:
        assert engine.info()["resolution"] == "square"
        image_id = engine.add_image(image.read_bytes())["image_id"]
        out = engine.predict({"image_id": image_id, "points": [[100, 120]], "labels": [1], "multimask": True})
        assert len(out["masks"]) == 3 and out["resized_size"] == [256, 256]
        out = engine.predict(
            {"image_id": image_id, "points": [[100, 120]], "labels": [1], "resolution": "native", "attention": "basam"}
        )
        assert len(out["masks"]) == 1 and out["resized_size"] == [256, 384]
    finally:
        engine.close()


def test_train_decoder_tuning(tmp_path, capsys):
    start = basam.save_model(basam.load_model("sam2_tiny"), tmp_path / "start.safetensors")
    assert (
        main(
            [
                "train",
                "--model",
                "sam2_tiny",
                "--checkpoint",
                str(start),
                "--data",
                "synth:salient",
                "--resolution",
                "256",
                "--steps",
                "2",
                "--batch-size",
                "1",
                "--lr",
                "1e-3",
                "--no-progress",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tune decoder" in out and "trainable parameters 0 " not in out
    trained = basam.load_model("sam2_tiny", checkpoint=tmp_path / "run" / "model.safetensors")
    start = basam.load_model("sam2_tiny", checkpoint=start)
    # the decoder moved, the image encoder and the prompt encoder did not
    moved = {
        name.split(".")[0] for name, p in trained.state_dict().items() if not torch.equal(p, start.state_dict()[name])
    }
    assert moved == {"sam_mask_decoder"}
    assert (
        main(
            [
                "train",
                "--model",
                "sam2_tiny",
                "--data",
                "synth:salient",
                "--resolution",
                "256",
                "--steps",
                "1",
                "--tune",
                "lora",
                "--no-progress",
                "--out",
                str(tmp_path / "lora"),
            ]
        )
        == 2
    )
    assert "built for SAM's ViT blocks" in capsys.readouterr().err


def test_export_onnx_refuses_sides_not_multiples_of_32(tmp_path, capsys):
    assert main(["export-onnx", "--model", "sam2_tiny", "--resolution", "272", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need sides that are multiples of 32" in err[0]
    assert not (tmp_path / "o").exists()
