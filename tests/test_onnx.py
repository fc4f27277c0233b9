"""ONNX export: ONNX Runtime against torch for the encoder and the prompt decoder, the official
decoder export's contract, external data, the CLI and the onnxruntime-only example of docs/formats.md."""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import basam
from basam.formats.onnx import export_onnx, fit_inside
from basam.inference.transforms import masks_to_original

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

FORMATS_PAGE = Path(__file__).parents[1] / "docs" / "formats.md"
OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prompts(input_hw):
    """Two official-format prompt sets in model-input pixels: a fg and a bg point (+ the padding
    point), and a box (corners labelled 2 and 3)."""
    h, w = input_hw
    points = np.array([[[0.3 * w, 0.4 * h], [0.7 * w, 0.2 * h], [0, 0]]], np.float32)
    box = np.array([[[0.1 * w, 0.2 * h], [0.8 * w, 0.9 * h]]], np.float32)
    return [(points, np.array([[1, 0, -1]], np.float32)), (box, np.array([[2, 3]], np.float32))]


def check_against_torch(model, folder, input_hw, orig_hw, atol=1e-4):
    """Encoder and decoder outputs of ONNX Runtime vs the torch model, point and box prompts."""
    torch.manual_seed(0)
    image = torch.randn(1, 3, *input_hw)
    (embeddings,) = session(folder / "encoder.onnx").run(None, {"image": image.numpy()})
    with torch.no_grad():
        reference = model.image_encoder(image)
    assert embeddings.shape == tuple(reference.shape)
    assert np.abs(embeddings - reference.numpy()).max() <= atol
    decoder = session(folder / "decoder.onnx")
    hg, wg = reference.shape[-2:]
    resized = fit_inside(orig_hw, input_hw)
    for coords, labels in prompts(input_hw):
        masks, scores, low_res = decoder.run(
            None,
            {
                "image_embeddings": reference.numpy(),
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": np.zeros((1, 1, 4 * hg, 4 * wg), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array(orig_hw, np.float32),
            },
        )
        c, lab = torch.from_numpy(coords), torch.from_numpy(labels)
        with torch.no_grad():
            if lab[0, 0] == 2:
                ref_low, ref_scores = model.decode(reference, input_hw, boxes=c.reshape(1, 4), multimask_output=True)
            else:  # the padding point is what decode adds itself when there is no box
                ref_low, ref_scores = model.decode(
                    reference, input_hw, points=(c[:, :-1], lab[:, :-1].long()), multimask_output=True
                )
            ref_masks = masks_to_original(ref_low, input_hw, resized, orig_hw)
        assert masks.shape == (1, 4, *orig_hw)  # all four mask tokens, as the official export
        assert np.abs(low_res[:, 1:] - ref_low.numpy()).max() <= atol
        # The upsampled masks also go through ORT's Resize, which rounds differently from torch's
        # interpolate: 1.2e-4 at most measured on the trained default model, whose logits reach ~30.
        assert np.abs(masks[:, 1:] - ref_masks.numpy()).max() <= 2 * atol
        assert np.abs(scores[:, 1:] - ref_scores.numpy()).max() <= atol
        assert np.abs(ref_low.numpy()).max() > 100 * atol


@pytest.mark.parametrize(
    "attn, windows, input_hw, orig_hw",
    [
        ("sam", "fixed", (256, 256), (300, 200)),
        ("basam", "fixed", (512, 512), (480, 640)),  # above the 256 px training size: the bias is in the graph
        ("basam", "scaled", (384, 256), (600, 410)),  # non-square input, windows grown with it (8 → 12 tokens)
    ],
)
def test_default_model_onnx_matches_torch(tmp_path, attn, windows, input_hw, orig_hw):
    model = basam.load_model("default", attn=attn, windows=windows)
    export_onnx(model, tmp_path, input_hw)
    assert not any(m.training for m in model.modules())  # the export leaves the model in eval mode
    check_against_torch(model, tmp_path, input_hw, orig_hw)


# vit_b's width, heads, window and decoder with 2 of its 12 blocks (one windowed, one global): the
# full 12-block vit_b exports in ~2.5 minutes on this 2-core machine, too long for the suite.
VIT_B_2 = basam.ModelConfig("vit_b_2blocks", 768, 2, 12, (1,))


@pytest.mark.slow
def test_vit_b_width_onnx_matches_torch(tmp_path):
    from official import randomize

    model = randomize(basam.Sam(VIT_B_2), seed=5).eval()
    for input_hw, orig_hw in (((1024, 1024), (768, 1024)), ((384, 512), (300, 420))):
        export_onnx(model, tmp_path / f"{input_hw}", input_hw)
        check_against_torch(model, tmp_path / f"{input_hw}", input_hw, orig_hw)


def test_decoder_is_the_official_export(tmp_path, twins):
    """The same weights through the official SamOnnxModel export and ours: same input and output
    names, same outputs from one feed, for two numbers of points."""
    from official import official_modeling

    official_modeling()
    from segment_anything.utils.onnx import SamOnnxModel

    cfg = basam.MODEL_CONFIGS["tiny"]
    official, ours = twins(cfg, seed=2)
    export_onnx(ours, tmp_path / "ours", (256, 256))
    feeds = {
        "image_embeddings": np.random.default_rng(0).normal(size=(1, 32, 16, 16)).astype(np.float32),
        "point_coords": np.array([[[30, 40], [200, 100], [0, 0]]], np.float32),
        "point_labels": np.array([[1, 0, -1]], np.float32),
        "mask_input": np.random.default_rng(1).normal(size=(1, 1, 64, 64)).astype(np.float32),
        "has_mask_input": np.ones(1, np.float32),
        "orig_im_size": np.array([200, 300], np.float32),
    }
    assert list(feeds) == list(inspect.signature(SamOnnxModel.forward).parameters)[1:]
    with torch.no_grad():  # the official script's export call
        torch.onnx.export(
            SamOnnxModel(official, return_single_mask=False),
            tuple(torch.from_numpy(v) for v in feeds.values()),
            str(tmp_path / "official.onnx"),
            input_names=list(feeds),
            output_names=OUTPUTS,
            opset_version=17,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
    theirs, mine = session(tmp_path / "official.onnx"), session(tmp_path / "ours" / "decoder.onnx")
    assert [i.name for i in mine.get_inputs()] == [i.name for i in theirs.get_inputs()]
    assert [o.name for o in mine.get_outputs()] == OUTPUTS
    five_points = {
        **feeds,
        "point_coords": np.array([[[30, 40], [200, 100], [10, 10], [250, 20], [5, 250]]], np.float32),
        "point_labels": np.array([[1, 0, 2, 3, 1]], np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    }
    for feed in (feeds, five_points):
        for a, b in zip(mine.run(None, feed), theirs.run(None, feed)):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4


def test_external_data_path(tmp_path):
    """What vit_h gets automatically, forced on the tiny model."""
    model = basam.load_model("tiny", attn="basam")
    export_onnx(model, tmp_path, (128, 192), external_data=True)
    assert (tmp_path / "encoder.onnx.data").stat().st_size > 4 * sum(
        p.numel() for p in model.image_encoder.parameters()
    ) * 0.9
    assert (tmp_path / "encoder.onnx").stat().st_size < 200_000
    check_against_torch(model, tmp_path, (128, 192), (100, 170))


def test_cli_export_onnx_and_hf(tmp_path, capsys):
    from basam.cli import main

    assert main(["export-onnx", "--model", "tiny", "--resolution", "128x192", "--out", str(tmp_path / "onnx")]) == 0
    assert session(tmp_path / "onnx" / "encoder.onnx").get_inputs()[0].shape == [1, 3, 128, 192]
    assert main(["export-onnx", "--model", "tiny", "--resolution", "100", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["basam export-onnx: error: --resolution '100': expected N or HxW, multiples of 16 from 64 to 4096"]
    assert not (tmp_path / "bad").exists()
    assert main(["export-hf", "--model", "tiny", "--attn", "bm", "--out", str(tmp_path / "hf")]) == 0
    back = basam.load_model(checkpoint=tmp_path / "hf")
    assert back.cfg.name == "tiny" and back.attn_cfg.preset == "bm"


def test_docs_onnxruntime_example_runs(tmp_path, monkeypatch):
    """The example of docs/formats.md, run as written on an export of the default model at 256 px, gives
    the Predictor's mask."""
    from PIL import Image

    section = FORMATS_PAGE.read_text().split("## ONNX", 1)[1].split("\n## ", 1)[0]
    code = next(block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "onnxruntime" in block)
    model = basam.load_model("default")
    monkeypatch.chdir(tmp_path)
    export_onnx(model, tmp_path / "sam-onnx", (256, 256), return_single_mask=True)
    Image.open(Path(basam.__file__).parent / "assets" / "sample.jpg").save(tmp_path / "photo.jpg")
    namespace = {}
    exec(compile(code, "docs/formats.md", "exec"), namespace)
    predictor = basam.Predictor(model, resolution=256)
    predictor.set_image(np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB")))
    masks, scores, _ = predictor.predict(point_coords=np.array([namespace["point"]]), point_labels=np.array([1]))
    best = int(np.argmax(scores))
    assert namespace["mask"].shape == masks[best].shape
    assert (namespace["mask"] == masks[best]).mean() > 0.999 and masks[best].any()
    assert abs(namespace["score"] - scores[best]) <= 1e-4
