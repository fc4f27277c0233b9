"""benchmarks/bench_encoder.py section 2c, which a user points at a real checkpoint and real images
(sam_vit_b_01ec64.pth and a photo): run here on a stand-in, the tiny model saved as an official-style
.pth state dict and the shipped photo."""

import re
import sys
from pathlib import Path

import pytest
import torch

import basam
from basam.formats.checkpoint import ASSETS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ASSETS / "sample.jpg"


@pytest.fixture(scope="module")
def bench_encoder():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_encoder

    yield bench_encoder
    sys.path.remove(str(ROOT / "benchmarks"))


def test_masks_of_a_user_checkpoint_per_dtype(bench_encoder, tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pth"
    torch.save(basam.load_model("tiny").state_dict(), checkpoint)
    threads = torch.get_num_threads()
    bench_encoder.main(
        [
            "--skip-speed",
            "--scaling-repeats",
            "0",
            "--skip-mask",
            "--skip-mem",
            "--threads",
            "1",
            "--model",
            "tiny",
            "--checkpoint",
            str(checkpoint),
            "--image",
            str(SAMPLE),
        ]
    )
    torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"Masks of tiny from {checkpoint} on 1 image(s)" in out
    assert re.search(r"sample\.jpg: 384×384 px, fp32 mask logits: fraction with \|logit\| < 0\.5 [01]\.\d{4}", out)
    rows = {
        m[1]: (int(m[2]), float(m[3]), float(m[4]))
        for m in re.finditer(r"\|  256 \| (\S+(?: fused)?) *\| +(\d+) \| ([\d.]+) +\| ([\d.]+) ", out)
    }
    ran = {"fp32", "bf16", "int8"} | ({"fp32 fused", "bf16 fused"} if "skipped" not in out else set())
    assert set(rows) == ran, out
    assert all(n == 48 for n, _, _ in rows.values())  # 16 clicks, three masks each
    assert rows["fp32"][1:] == (1.0, 1.0)
    assert all(0 <= lo <= mean <= 1 for _, lo, mean in rows.values())


def test_bad_checkpoint_or_image_is_one_line(bench_encoder, tmp_path, capsys):
    options = ["--skip-speed", "--scaling-repeats", "0", "--skip-mask", "--skip-mem", "--model", "tiny"]
    with pytest.raises(SystemExit):
        bench_encoder.main([*options, "--checkpoint", "x.pth"])
    assert "--checkpoint and --image go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_encoder.main([*options, "--checkpoint", str(tmp_path / "none.pth"), "--image", str(SAMPLE)])
    assert f"no such file: {tmp_path / 'none.pth'}" in capsys.readouterr().err
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="^bench_encoder: .*notes.pth"):
        bench_encoder.main([*options, "--checkpoint", str(tmp_path / "notes.pth"), "--image", str(SAMPLE)])
