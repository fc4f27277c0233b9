"""`basam eval` and `basam sweep` on real files, in one process and under torchrun."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import basam
from basam.config import MODEL_CONFIGS
from basam.data.synth import write_benchmark
from official import official_sam, randomize

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny synthetic benchmark (generic layout), one broken image, one unpaired mask, a
    random-weight tiny checkpoint."""
    root = tmp_path_factory.mktemp("bench")
    write_benchmark(root / "data", n_per_family=2, size=(96, 128), seed=1)
    (root / "data" / "images" / "broken_test_0000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "data" / "masks" / "orphan.png")
    ckpt = root / "tiny.safetensors"
    model = basam.Sam(MODEL_CONFIGS["tiny"])
    model.load_state_dict(randomize(official_sam(MODEL_CONFIGS["tiny"]), seed=2).state_dict())
    basam.save_model(model, ckpt)
    return root


def run(*args, cwd=None, timeout=600):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def cli(*args):
    return run(sys.executable, "-m", "basam.cli", *args)


def test_eval_writes_per_image_csv_and_summary_and_names_problems(bench, tmp_path):
    r = cli(
        "eval",
        "--data",
        f"generic:{bench / 'data'}",
        "--model",
        "tiny",
        "--checkpoint",
        str(bench / "tiny.safetensors"),
        "--resolution",
        "128",
        "--prompt",
        "center",
        "--group-by-prefix",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"name", "mae", "smeasure", "iou", "dice"} <= set(rows[0])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["count"] == 8
    assert set(summary["metrics"]["groups"]) == {"salient", "camouflaged", "thin", "lesion"}
    problems = {p["name"] for p in summary["dataset"]["problem_list"]}
    assert any("broken" in n for n in problems) and any("orphan" in n for n in problems)
    assert "2 file(s) not scored" in r.stdout and "orphan" in r.stdout
    # The summary's mean IoU is the mean of the per-image IoUs.
    assert summary["metrics"]["mIoU"] == pytest.approx(np.mean([float(r["iou"]) for r in rows]))


def test_eval_bad_data_is_one_line(tmp_path):
    r = cli("eval", "--data", f"duts:{tmp_path / 'nowhere'}", "--model", "tiny", "--out", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr


@pytest.mark.parametrize("command,prompt", [("eval", "box,none"), ("sweep", "box,boxes"), ("sweep", "")])
def test_unknown_prompt_kind_is_one_line_not_a_skipped_file(command, prompt, tmp_path):
    r = cli(
        command,
        "--data",
        "synth:salient",
        "--n",
        "1",
        "--model",
        "tiny",
        "--resolution",
        "64",
        "--prompt",
        prompt,
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown prompt kind" in r.stderr
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "sweep.md").exists()


def test_sweep_writes_table_csv_and_plot(bench, tmp_path):
    r = cli(
        "sweep",
        "--data",
        f"generic:{bench / 'data'}",
        "--model",
        "tiny",
        "--checkpoint",
        str(bench / "tiny.safetensors"),
        "--attn",
        "sam,basam",
        "--resolution",
        "64,128,native",
        "--limit",
        "3",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    table = (tmp_path / "sweep.md").read_text().splitlines()
    assert table[0] == "| mIoU | 64 | 128 | native |" and len(table) == 4
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["preset"], r["resolution"]) for r in rows] == [
        (p, s) for p in ("sam", "basam") for s in ("64", "128", "native")
    ]
    png = Image.open(tmp_path / "sweep.png")
    assert png.size[0] > 300
    # A cell of the sweep is what `basam eval` gives for that preset and resolution alone.
    single = cli(
        "eval",
        "--data",
        f"generic:{bench / 'data'}",
        "--model",
        "tiny",
        "--checkpoint",
        str(bench / "tiny.safetensors"),
        "--attn",
        "basam",
        "--resolution",
        "128",
        "--limit",
        "3",
        "--out",
        str(tmp_path / "single"),
    )
    assert single.returncode == 0, single.stderr
    metrics = json.loads((tmp_path / "single" / "summary.json").read_text())["metrics"]
    cell = next(r for r in rows if (r["preset"], r["resolution"]) == ("basam", "128"))
    assert float(cell["Smeasure"]) == pytest.approx(metrics["Smeasure"], abs=1e-12)


def test_sweep_several_prompts_encodes_once_and_matches_eval(bench, tmp_path):
    # The embedded trained model: a random one answers every prompt with the same near-constant map.
    r = cli(
        "sweep",
        "--data",
        f"generic:{bench / 'data'}",
        "--model",
        "default",
        "--attn",
        "sam,bm",
        "--resolution",
        "96,128",
        "--prompt",
        "box,none",
        "--group-by-prefix",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    tables = (tmp_path / "sweep.md").read_text().split("\n\n")
    assert tables[0].splitlines()[2:] and [line.split(" |")[0] for line in tables[0].splitlines()[2:]] == [
        "| sam, box",
        "| bm, box",
        "| sam, none",
        "| bm, none",
    ]
    assert [t.splitlines()[0] for t in tables[1:]] == [
        f"| mIoU, {g} | 96 | 128 |" for g in ("camouflaged", "lesion", "salient", "thin")
    ]
    records = json.loads((tmp_path / "sweep.json").read_text())
    assert len(records) == 8
    for kind in ("box", "none"):
        single = cli(
            "eval",
            "--data",
            f"generic:{bench / 'data'}",
            "--model",
            "default",
            "--attn",
            "bm",
            "--resolution",
            "128",
            "--prompt",
            kind,
            "--group-by-prefix",
            "--out",
            str(tmp_path / kind),
        )
        assert single.returncode == 0, single.stderr
        metrics = json.loads((tmp_path / kind / "summary.json").read_text())["metrics"]
        cell = next(r for r in records if (r["preset"], r["prompt"], r["resolution"]) == ("bm", kind, "128"))
        assert cell["Smeasure"] == pytest.approx(metrics["Smeasure"], abs=1e-12)
        assert cell["groups"]["thin"]["mIoU"] == pytest.approx(metrics["groups"]["thin"]["mIoU"], abs=1e-12)
    box_cell = next(r for r in records if (r["preset"], r["prompt"], r["resolution"]) == ("bm", "box", "128"))
    none_cell = next(r for r in records if (r["preset"], r["prompt"], r["resolution"]) == ("bm", "none", "128"))
    assert box_cell["MAE"] != none_cell["MAE"]  # the prompts really differ


def test_render_size_fixes_the_scenes_while_the_input_resolution_varies(tmp_path):
    common = ["--data", "synth:salient,thin", "--n", "1", "--model", "default", "--attn", "sam"]
    r = cli("sweep", *common, "--resolution", "64,128", "--render-size", "160", "--out", str(tmp_path / "sweep"))
    assert r.returncode == 0, r.stderr
    records = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    summaries = {}
    for size in ("160", None):
        out = tmp_path / f"eval-{size}"
        e = cli("eval", *common, "--resolution", "64", *(["--render-size", size] if size else []), "--out", str(out))
        assert e.returncode == 0, e.stderr
        summaries[size] = json.loads((out / "summary.json").read_text())
    assert (
        summaries["160"]["dataset"]["name"] == "synth-test@160"
        and summaries[None]["dataset"]["name"] == "synth-test@64"
    )
    cell = next(r for r in records if r["resolution"] == "64")
    assert cell["MAE"] == pytest.approx(summaries["160"]["metrics"]["MAE"], abs=1e-12)
    assert cell["MAE"] != summaries[None]["metrics"]["MAE"]  # other pixels: scored against a 160 px ground truth


@pytest.mark.torchrun
def test_torchrun_two_processes_equal_one(bench, tmp_path, free_port):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    common = [
        "eval",
        "--data",
        f"generic:{bench / 'data'}",
        "--model",
        "tiny",
        "--checkpoint",
        str(bench / "tiny.safetensors"),
        "--resolution",
        "96",
        "--prompt",
        "points",
        "--n-neg",
        "1",
    ]
    one = cli(*common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            "-m",
            "basam.cli",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["processes"] == 2 and s1["processes"] == 1
    assert s1["metrics"] == s2["metrics"]
    assert (tmp_path / "one" / "per_image.csv").read_text() != ""
    rows1 = list(csv.DictReader(open(tmp_path / "one" / "per_image.csv")))
    rows2 = list(csv.DictReader(open(tmp_path / "two" / "per_image.csv")))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows1) == drop(rows2)
