"""Every command with an HQ-SAM checkpoint: predict, amg, eval, sweep (HQ beside plain), serve's
engine and export-onnx, on the shipped model's weights plus random HQ parts (an hq_mini export)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.cli import main
from basam.config import MODEL_CONFIGS, hq_config
from basam.data.synth import make_scene, render
from basam.inference.amg import AutomaticMaskGenerator

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest: faster on the shared 2-core machines

HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
AMG = dict(points_per_side=4, pred_iou_thresh=0.05, stability_score_thresh=0.3, stability_score_offset=0.05)


@pytest.fixture(scope="module")
def hq_model():
    model = basam.Sam(hq_config(MODEL_CONFIGS["mini"])).eval()
    state = dict(basam.load_model("default").state_dict())
    g = torch.Generator().manual_seed(1)
    for name, p in model.state_dict().items():
        if name.split(".")[1] in HQ_PARTS:
            norm_weight = name.endswith(".1.weight") and p.dim() == 1
            state[name] = (1.0 if norm_weight else 0.0) + 0.05 * torch.randn(p.shape, generator=g)
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def hq_ckpt(hq_model, tmp_path_factory):
    return basam.save_model(hq_model, tmp_path_factory.mktemp("hq") / "hq_mini.safetensors")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(render(make_scene(2, "salient"), 192, 256).image).save(path)
    return path


def test_the_export_reloads_as_hq(hq_ckpt, hq_model):
    model = basam.load_model(checkpoint=hq_ckpt)
    assert model.cfg.name == "hq_mini" and model.is_hq
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), hq_model.state_dict().values()))


def test_predict(hq_ckpt, hq_model, image_file, tmp_path, capsys):
    box = [40, 30, 200, 170]
    assert (
        main(
            [
                "predict",
                str(image_file),
                "--checkpoint",
                str(hq_ckpt),
                "--box",
                ",".join(map(str, box)),
                "--hq-token-only",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "hq_mini, HQ token only" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "scene_mask.png")) > 0
    pred = basam.Predictor(hq_model)
    pred.set_image(np.asarray(Image.open(image_file)))
    hq_only = pred.predict(box=np.array(box), multimask_output=False, hq_token_only=True)[0][0]
    combined = pred.predict(box=np.array(box), multimask_output=False)[0][0]
    assert 0.02 < hq_only.mean() < 0.98 and (hq_only != combined).sum() > 50  # the flag changes the mask
    assert np.array_equal(written, hq_only)
    assert main(["predict", str(image_file), "--box", "1,1,50,50", "--hq-token-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--hq-token-only needs an HQ-SAM model" in err and "mini" in err


def test_amg(hq_ckpt, hq_model, image_file, tmp_path):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in AMG.items()]
    assert (
        main(
            [
                "amg",
                str(image_file),
                "--checkpoint",
                str(hq_ckpt),
                "--out",
                str(tmp_path),
                "--no-progress",
                "--hq-token-only",
                *flags,
            ]
        )
        == 0
    )
    records = json.loads((tmp_path / "scene.json").read_text())
    expected = AutomaticMaskGenerator(hq_model, output_mode="coco_rle", hq_token_only=True, **AMG).generate(
        np.asarray(Image.open(image_file))
    )
    assert len(records) == len(expected) > 0
    assert [r["bbox"] for r in records] == [r["bbox"] for r in expected]


def test_eval_and_sweep_put_hq_beside_plain(hq_ckpt, tmp_path):
    data = ["--data", "synth:salient", "--n", "2", "--prompt", "box"]
    scores = {}
    for flag in ([], ["--hq-token-only"]):
        out = tmp_path / f"eval{len(flag)}"
        assert main(["eval", *data, "--checkpoint", str(hq_ckpt), "--resolution", "256", *flag, "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"] == "hq_mini" and summary["settings"]["hq_token_only"] == bool(flag)
        scores[bool(flag)] = summary["metrics"]
    assert scores[True]["MAE"] != pytest.approx(scores[False]["MAE"], abs=1e-6)  # the flag reaches the decoder
    plain_out = tmp_path / "plain"
    assert main(["eval", *data, "--resolution", "256", "--out", str(plain_out)]) == 0
    plain = json.loads((plain_out / "summary.json").read_text())["metrics"]

    out = tmp_path / "sweep"
    assert (
        main(["sweep", *data, "--compare", str(hq_ckpt), "--attn", "sam", "--resolution", "256", "--out", str(out)])
        == 0
    )
    rows = {r["preset"]: r for r in json.loads((out / "sweep.json").read_text())}
    assert set(rows) == {"mini, sam", "hq_mini, sam"}
    assert rows["hq_mini, sam"]["model"] == "hq_mini" and rows["mini, sam"]["model"] == "mini"
    assert rows["hq_mini, sam"]["MAE"] == pytest.approx(scores[False]["MAE"], abs=1e-6)
    assert rows["mini, sam"]["MAE"] == pytest.approx(plain["MAE"], abs=1e-6)
    table = (out / "sweep.md").read_text()
    assert "| hq_mini, sam |" in table and "| mini, sam |" in table
    assert main(["sweep", *data, "--compare", str(hq_ckpt), "--attn", "checkpoint", "--out", str(out)]) == 2


def test_serve_offers_hq_token_only_for_an_hq_model_only(hq_model, image_file):
    from basam.serve.engine import Engine, RequestError

    engine, plain = Engine(hq_model), Engine(basam.load_model("default"))
    assert engine.info()["hq"] is True and plain.info()["hq"] is False
    data = image_file.read_bytes()
    image_id = engine.add_image(data)["image_id"]
    request = {"image_id": image_id, "box": [40, 30, 200, 170], "hq_token_only": True}
    result = engine.predict(request)
    pred = basam.Predictor(hq_model)
    pred.set_image(np.asarray(Image.open(image_file)))
    mask, score, _ = pred.predict(box=np.array([40, 30, 200, 170]), multimask_output=False, hq_token_only=True)
    assert len(result["masks"]) == 1 and result["masks"][0]["score"] == pytest.approx(float(score[0]), abs=1e-5)
    assert result["masks"][0]["area"] == int(mask.sum())
    everything = engine.everything({"image_id": image_id, "hq_token_only": True, **AMG})
    assert everything["options"]["hq_token_only"] is True
    plain_id = plain.add_image(data)["image_id"]
    with pytest.raises(RequestError, match="hq_token_only needs an HQ-SAM model"):
        plain.predict({**request, "image_id": plain_id})
    from basam.serve.app import STATIC

    assert 'id="hq-tools" hidden' in (STATIC / "index.html").read_text()  # shown by the page only when info.hq
    assert '$("hq-tools").hidden = !info.hq' in (STATIC / "app.js").read_text()


def test_export_onnx(tmp_path, capsys):
    import onnx

    tiny_hq = basam.save_model(basam.Sam(hq_config(MODEL_CONFIGS["tiny"])).eval(), tmp_path / "tiny_hq.safetensors")
    assert (
        main(
            [
                "export-onnx",
                "--checkpoint",
                str(tiny_hq),
                "--resolution",
                "256",
                "--hq-token-only",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    encoder, decoder = (onnx.load(str(tmp_path / f"{n}.onnx")) for n in ("encoder", "decoder"))
    assert [o.name for o in encoder.graph.output] == ["image_embeddings", "early_features"]
    assert [i.name for i in decoder.graph.input][:2] == ["image_embeddings", "early_features"]
    capsys.readouterr()
    assert main(["export-onnx", "--resolution", "256", "--hq-token-only", "--out", str(tmp_path / "p")]) == 2
    assert "HQ-SAM export options" in capsys.readouterr().err
