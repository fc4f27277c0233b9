"""ONNX export of a SAM 2 model (`sam2_tiny`, random weights): ONNX Runtime against torch for the
encoder's three outputs and the prompt decoder (points and a box, a non-square input), the CLI,
and the onnxruntime-only example of docs/sam2.md against basam.Predictor."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import basam
from basam.formats.onnx import export_onnx, fit_inside
from basam.formats.onnx_sam2 import DECODER_INPUTS, ENCODER_OUTPUTS
from basam.inference.transforms import masks_to_original

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

SAM2_PAGE = Path(__file__).parents[1] / "docs" / "sam2.md"
OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def prompts(input_hw):
    """(coords, labels, torch prompt kwargs): a fg and a bg point (+ the padding point), and a box."""
    h, w = input_hw
    points = np.array([[[0.3 * w, 0.4 * h], [0.7 * w, 0.2 * h], [0, 0]]], np.float32)
    box = np.array([[[0.1 * w, 0.2 * h], [0.8 * w, 0.9 * h], [0, 0]]], np.float32)
    as_points = {"points": (torch.from_numpy(points[:, :2]), torch.tensor([[1, 0]]))}
    as_box = {"boxes": torch.from_numpy(box[:, :2]).reshape(1, 4)}
    return [
        (points, np.array([[1, 0, -1]], np.float32), as_points),
        (box, np.array([[2, 3, -1]], np.float32), as_box),
    ]


@pytest.fixture(scope="module")
def sam2_tiny():
    return basam.load_model("sam2_tiny", attn="basam")


@pytest.mark.parametrize("single", [False, True])
def test_sam2_onnx_matches_torch(tmp_path, sam2_tiny, single):
    """256x320: above the 256 px training size on one side, so λ(N) and the bias are in the graph."""
    model, input_hw, orig_hw = sam2_tiny, (256, 320), (300, 410)
    export_onnx(model, tmp_path, input_hw, return_single_mask=single)
    assert not any(m.training for m in model.modules())
    torch.manual_seed(0)
    image = torch.randn(1, 3, *input_hw)
    encoder = session(tmp_path / "encoder.onnx")
    assert [o.name for o in encoder.get_outputs()] == ENCODER_OUTPUTS
    outs = encoder.run(None, {"image": image.numpy()})
    with torch.no_grad():
        embeddings, high_res = model.encode(image)
    for got, want in zip(outs, [embeddings, *high_res], strict=True):
        assert got.shape == tuple(want.shape) and np.abs(got - want.numpy()).max() <= 1e-4
    decoder = session(tmp_path / "decoder.onnx")
    assert [i.name for i in decoder.get_inputs()] == DECODER_INPUTS
    assert [o.name for o in decoder.get_outputs()] == OUTPUTS
    hg, wg = embeddings.shape[-2:]
    resized = fit_inside(orig_hw, input_hw)
    for coords, labels, torch_prompt in prompts(input_hw):
        masks, scores, low_res = decoder.run(
            None,
            {
                "image_embeddings": embeddings.numpy(),
                "high_res_feats_0": high_res[0].numpy(),
                "high_res_feats_1": high_res[1].numpy(),
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": np.zeros((1, 1, 4 * hg, 4 * wg), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array(orig_hw, np.float32),
            },
        )
        with torch.no_grad():
            ref_low, ref_scores = model.decode(
                embeddings, input_hw, **torch_prompt, multimask_output=not single, high_res_features=high_res
            )
            ref_masks = masks_to_original(ref_low, input_hw, resized, orig_hw).numpy()
        if not single:  # all four tokens: the single-mask output first, then decode's three
            assert masks.shape == (1, 4, *orig_hw)
            masks, scores, low_res = masks[:, 1:], scores[:, 1:], low_res[:, 1:]
        assert masks.shape == ref_masks.shape
        assert np.abs(low_res - ref_low.clamp(-32, 32).numpy()).max() <= 1e-4
        assert np.abs(scores - ref_scores.numpy()).max() <= 1e-4
        assert np.abs(masks - ref_masks).max() <= 2e-4  # ORT's Resize rounds a little differently
        assert np.abs(ref_low.numpy()).max() > 1e-2
        for got, want in zip(masks[0] > 0, ref_masks[0] > 0):
            assert want.any() and iou(got, want) >= 0.99


def test_cli_export_onnx_sam2(tmp_path, capsys):
    from basam.cli import main

    out = tmp_path / "onnx"
    assert main(["export-onnx", "--model", "sam2_tiny", "--resolution", "256", "--out", str(out)]) == 0
    assert "sam2_tiny" in capsys.readouterr().out
    encoder, decoder = session(out / "encoder.onnx"), session(out / "decoder.onnx")
    assert encoder.get_inputs()[0].shape == [1, 3, 256, 256]
    assert [o.shape for o in encoder.get_outputs()] == [[1, 32, 16, 16], [1, 4, 64, 64], [1, 8, 32, 32]]
    assert [i.name for i in decoder.get_inputs()] == DECODER_INPUTS


def test_docs_onnxruntime_example_runs(tmp_path, monkeypatch, sam2_tiny):
    """The example of docs/sam2.md, run as written on a 256 px export, gives the Predictor's mask."""
    from PIL import Image

    section = SAM2_PAGE.read_text().split("## ONNX", 1)[1].split("\n## ", 1)[0]
    code = next(block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "onnxruntime" in block)
    monkeypatch.chdir(tmp_path)
    export_onnx(sam2_tiny, tmp_path / "sam2-onnx", (256, 256), return_single_mask=True)
    Image.open(Path(basam.__file__).parent / "assets" / "sample.jpg").save(tmp_path / "photo.jpg")
    namespace = {}
    exec(compile(code, "docs/sam2.md", "exec"), namespace)
    predictor = basam.Predictor(sam2_tiny, resolution=256)
    predictor.set_image(np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB")))
    masks, scores, _ = predictor.predict(box=np.array(namespace["box"]), multimask_output=False)
    assert namespace["mask"].shape == masks[0].shape
    assert masks[0].any() and iou(namespace["mask"], masks[0]) >= 0.99
    assert abs(namespace["score"] - scores[0]) <= 1e-4


def test_bias_beyond_the_cached_size_is_refused(tmp_path, sam2_tiny):
    """A bias preset above 4096 stride-16 tokens says so in one error, as for SAM."""
    with pytest.raises(ValueError, match="ONNX export cannot hold"):
        export_onnx(sam2_tiny, tmp_path / "o", (1056, 1056))
    assert not (tmp_path / "o").exists()
