"""tools/window_scale.py: the windows it sets, and that the model is given back unchanged."""

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
