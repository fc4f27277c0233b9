"""tools/window_scale.py: the windows it sets, and that the model is given back unchanged."""

import subprocess
import sys
from pathlib import Path

import torch

import basam
from basam import MODEL_CONFIGS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from window_scale import set_windows  # noqa: E402

TINY = MODEL_CONFIGS["tiny"]  # 256 px, windows of 4 tokens, global blocks 1 and 3


def test_windows_grow_with_the_image_and_come_back():
    torch.manual_seed(0)
    model = basam.Sam(TINY).eval()
    image = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        fixed = model.image_encoder(image)
        assert set_windows(model, 512) == [8, 0, 8, 0]
        scaled = model.image_encoder(image)
        assert set_windows(model, 128) == [2, 0, 2, 0]
        assert set_windows(model, None) == [4, 0, 4, 0]
        again = model.image_encoder(image)
    assert scaled.shape == fixed.shape and torch.isfinite(scaled).all()
    assert not torch.allclose(scaled, fixed, atol=1e-4)  # the windows really changed
    assert torch.equal(again, fixed)


def run_tool(*args):
    tool = Path(__file__).resolve().parents[1] / "tools" / "window_scale.py"
    return subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, timeout=300)


def test_tool_writes_one_row_per_preset_and_window_variant(tmp_path):
    r = run_tool(str(tmp_path), "--model", "tiny", "--n", "1", "--resolution", "128,256", "--prompt", "box",
                 "--attn", "sam,basam")
    assert r.returncode == 0, r.stderr
    table = (tmp_path / "sweep.md").read_text().split("\n\n")[0].splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| sam, windows fixed", "| sam, windows scaled", "| basam, windows fixed", "| basam, windows scaled"]
    at_256 = [row.split(" | ")[2] for row in table[2:]]  # the training size: scaled windows are the trained ones
    assert at_256[0] == at_256[1] and at_256[2] == at_256[3]
    assert len((tmp_path / "sweep.md").read_text().split("\n\n")) == 5  # overall, then the four families


def test_tool_bad_input_is_one_line(tmp_path):
    r = run_tool(str(tmp_path), "--model", "tiny", "--attn", "nope")
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "nope" in r.stderr
