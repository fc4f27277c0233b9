"""Training validation is `basam eval`: the same Predictor path, the same prompts, the same numbers."""

import csv
import json

import pytest
import torch

import basam
from basam.cli import main
from basam.data.synth import write_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_val_miou_in_log_csv_equals_basam_eval(tmp_path):
    data = write_benchmark(tmp_path / "data", 1, size=(72, 96), split="val")
    torch.manual_seed(5)
    base = basam.save_model(basam.load_model("tiny"), tmp_path / "base.safetensors")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "tiny",
                "--checkpoint",
                str(base),
                "--data",
                f"generic:{data}",
                "--val-data",
                f"generic:{data}",
                "--val-every",
                "1",
                "--val-size",
                "8",
                "--val-resolution",
                "128",
                "--val-prompt",
                "center",
                "--resolution",
                "64",
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--lr",
                "0.01",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    logged = {r["step"]: r for r in csv.DictReader(open(out / "log.csv"))}
    for step, weights in (("0", base), ("1", out / "model.safetensors")):
        assert (
            main(
                [
                    "eval",
                    "--model",
                    "tiny",
                    "--checkpoint",
                    str(weights),
                    "--data",
                    f"generic:{data}",
                    "--resolution",
                    "128",
                    "--prompt",
                    "center",
                    "--out",
                    str(tmp_path / f"eval{step}"),
                ]
            )
            == 0
        )
        metrics = json.loads((tmp_path / f"eval{step}" / "summary.json").read_text())["metrics"]
        assert metrics["count"] == 4
        assert float(logged[step]["val_mIoU"]) == pytest.approx(metrics["mIoU"], abs=1e-9)
        assert float(logged[step]["val_MAE"]) == pytest.approx(metrics["MAE"], abs=1e-9)
    assert logged["0"]["val_MAE"] != logged["1"]["val_MAE"]  # the step changed the model, and both agree
