"""`basam sweep`, the one evaluation loop: presets × windows × resolutions × prompts, arguments
checked first, results on disk after each resolution, failures named and counted."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.cli import main
from basam.config import MODEL_CONFIGS
from basam.data.specs import open_eval_data
from basam.evaluation.evaluate import EvalSettings
from basam.evaluation.sweep import Column, run_sweep, sweep_rows
from official import randomize

REFERENCE = Path(__file__).parent / "data" / "window_scale_tiny.json"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """The random tiny model the reference was made with (tools/window_scale.py, now retired:
    `window_scale.py OUT --model tiny --checkpoint THIS --n 1 --resolution 128,384 --prompt box,none`)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    torch.manual_seed(0)  # the prompt encoder's random Fourier features are a buffer randomize leaves alone
    return basam.save_model(randomize(basam.Sam(MODEL_CONFIGS["tiny"]).eval(), seed=11, std=0.3), path)


def test_sweep_reproduces_the_window_scale_tool(tiny_ckpt, tmp_path, capsys):
    assert (
        main(
            [
                "sweep",
                "--data",
                "synth:all",
                "--n",
                "1",
                "--model",
                "tiny",
                "--checkpoint",
                str(tiny_ckpt),
                "--attn",
                "sam",
                "--windows",
                "fixed,scaled",
                "--resolution",
                "128,384",
                "--prompt",
                "box,none",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    ours = {(r["preset"], r["prompt"], r["resolution"]): r for r in json.loads((tmp_path / "sweep.json").read_text())}
    reference = json.loads(REFERENCE.read_text())
    assert len(ours) == len(reference) == 8
    for ref in reference:
        row = ours[(f"sam, {ref['preset']}", ref["prompt"], ref["resolution"])]
        for key in ("MAE", "Smeasure", "wFmeasure", "meanEm", "maxFm", "mIoU", "count"):
            # float32 round-off of another thread count apart, the same numbers
            assert row[key] == pytest.approx(ref[key], abs=1e-6), (ref["preset"], key)
        assert row["groups"]["camouflaged"]["MAE"] == pytest.approx(ref["groups"]["camouflaged"]["MAE"], abs=1e-6)
    # The reference itself tells the windows apart above the training size, so this test can fail.
    fixed, scaled = (
        next(r for r in reference if (r["preset"], r["prompt"], r["resolution"]) == (w, "box", "384"))
        for w in ("windows fixed", "windows scaled")
    )
    assert abs(fixed["MAE"] - scaled["MAE"]) > 1e-4


def test_sweep_encodes_in_the_precision_asked(tiny_ckpt, tmp_path):
    # --dtype used to be accepted and ignored: int8 must move the scores, a little.
    assert (
        main(
            [
                "sweep",
                "--data",
                "synth:all",
                "--n",
                "1",
                "--model",
                "tiny",
                "--checkpoint",
                str(tiny_ckpt),
                "--attn",
                "sam",
                "--resolution",
                "128",
                "--prompt",
                "box",
                "--dtype",
                "int8",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    (row,) = json.loads((tmp_path / "sweep.json").read_text())
    (fp32,) = (
        r
        for r in json.loads(REFERENCE.read_text())
        if (r["preset"], r["prompt"], r["resolution"]) == ("windows fixed", "box", "128")
    )
    assert 0 < abs(row["MAE"] - fp32["MAE"]) < 0.05


def test_a_failing_resolution_keeps_the_finished_ones(tiny_ckpt, tmp_path):
    model = basam.load_model("tiny", checkpoint=tiny_ckpt)
    rows = sweep_rows(["sam"], ["fixed", "scaled"], {})

    def open_data(column):
        if column.label == "256":
            raise RuntimeError("out of memory at the last size")
        return open_eval_data("synth:salient", None, column.render_size, 1)

    columns = [Column(str(s), s, s) for s in (128, 256)]
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sweep(model, rows, columns, ["box"], open_data, EvalSettings(), tmp_path, log=lambda _: None)
    table = (tmp_path / "sweep.md").read_text().splitlines()
    assert table[0] == "| mIoU | 128 |" and len(table) == 4
    assert len(json.loads((tmp_path / "sweep.json").read_text())) == 2


def test_an_image_that_fails_to_encode_is_named_and_counted(tiny_ckpt, tmp_path, capsys):
    data = tmp_path / "data"
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in (("ok", (64, 96)), ("huge", (64, 4200))):  # 4200 px: beyond native's 4096 px
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(data / "images" / f"{name}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[16:48, 16:80] = 255
        Image.fromarray(mask).save(data / "masks" / f"{name}.png")
    assert (
        main(
            [
                "sweep",
                "--data",
                f"generic:{data}",
                "--model",
                "tiny",
                "--checkpoint",
                str(tiny_ckpt),
                "--attn",
                "sam",
                "--resolution",
                "native,auto",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    records = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [(r["resolution"], r["count"], r["problems"]) for r in records] == [("native", 1, 1), ("auto", 2, 0)]
    out = capsys.readouterr().out
    assert "1 file(s) not scored" in out and "huge: encoding failed: ValueError" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "IoU"], "unknown metric 'IoU'"),
        (["--windows", "fixed,wide"], "windows='wide'"),
        (["--attn", "sam,nope"], "unknown attention preset 'nope'"),
        (["--resolution", "128,auto"], "give N or --render-size, not auto"),
        (["--resolution", "128,100"], "resolution 100"),
        (["--bm-slope-scale", "nan"], "bm_slope_scale=nan"),
        (["--bm-slope-scale", "inf"], "bm_slope_scale=inf"),
        (["--attn", "checkpoint"], "needs a --checkpoint"),
    ],
)
def test_arguments_are_checked_before_anything_runs(args, message, tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--data",
            "synth:salient",
            "--n",
            "1",
            "--model",
            "tiny",
            "--resolution",
            "128",
            "--out",
            str(tmp_path / "out"),
            *args,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_attn_checkpoint_scores_the_learned_slopes(tmp_path, capsys):
    """A fine-tuned BA-SAM export is scored with its own slopes; `--attn basam` starts them afresh."""
    torch.manual_seed(0)
    model = basam.load_model("tiny", attn="basam", bm_learnable=True, bm_offset="0")
    slopes = [p for n, p in model.named_parameters() if n.endswith(".attn.mode.slopes")]
    assert slopes
    with torch.no_grad():
        for p in slopes:
            p.fill_(0.5)  # far from ALiBi's: the bias reaches every query at 128 px
    ckpt = basam.save_model(model, tmp_path / "tuned.safetensors")
    common = [
        "sweep",
        "--data",
        "synth:salient",
        "--n",
        "1",
        "--model",
        "tiny",
        "--checkpoint",
        str(ckpt),
        "--resolution",
        "128",
        "--prompt",
        "box",
    ]
    assert main([*common, "--attn", "checkpoint", "--out", str(tmp_path / "own")]) == 0
    with pytest.warns(UserWarning, match="ignoring 2 BA-SAM parameters"):
        assert main([*common, "--attn", "basam", "--bm-offset", "0", "--out", str(tmp_path / "fresh")]) == 0
    (own,), (fresh,) = (json.loads((tmp_path / d / "sweep.json").read_text()) for d in ("own", "fresh"))
    assert own["preset"] == "checkpoint" and own["attention"] == "basam"
    assert abs(own["MAE"] - fresh["MAE"]) > 1e-4
    capsys.readouterr()
    assert main([*common, "--attn", "checkpoint,sam", "--out", str(tmp_path / "both")]) == 2
    assert "stands alone" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "--data", "synth:salient"],
        ["eval", "--data", "synth:salient"],
        ["predict", str(Path(basam.__file__).parent / "assets" / "sample.jpg")],
    ],
)
def test_out_naming_an_existing_file_is_one_line(command, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main([*command, "--model", "tiny", "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and len(err.strip().splitlines()) == 1


def test_configs_from_files_refuse_unknown_keys():
    d = basam.AttentionConfig.from_preset("basam").to_dict()
    assert basam.AttentionConfig.from_dict(d) == basam.AttentionConfig.from_preset("basam")
    with pytest.raises(ValueError, match="AttentionConfig: unknown option.*'window_shift'"):
        basam.AttentionConfig.from_dict({**d, "window_shift": 2})
    m = MODEL_CONFIGS["tiny"].to_dict()
    with pytest.raises(ValueError, match="ModelConfig: unknown option.*'depth_v2'"):
        basam.ModelConfig.from_dict({**m, "depth_v2": 3})
