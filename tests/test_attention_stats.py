"""tools/attention_stats.py, whose numbers the "Why" table of docs/study.md reports."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from attention_stats import Recorder  # noqa: E402


def test_recorder_returns_attention_and_measures_entropy_and_reach():
    grid = (4, 5)
    n = grid[0] * grid[1]
    recorder = Recorder(grid)
    q, k, v = (torch.randn(1, 2, n, 8, generator=torch.Generator().manual_seed(s)) for s in range(3))
    mask = torch.randn(1, 2, n, n, generator=torch.Generator().manual_seed(3))
    recorder.block = None  # a windowed block passes through unrecorded
    assert torch.allclose(
        recorder.scaled_dot_product_attention(q, k, v, mask, 0.3),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3),
        atol=1e-6,
    )
    assert recorder.stats == {}
    recorder.block = 1  # a global block, in two query chunks, with uniform attention (q = 0)
    zeros = torch.zeros_like(q)
    out = torch.cat(
        [
            recorder.scaled_dot_product_attention(zeros[:, :, rows], k, v, None, 0.3)
            for rows in (slice(0, 7), slice(7, n))
        ],
        dim=2,
    )
    assert torch.allclose(out, v.mean(2, keepdim=True).expand_as(v), atol=1e-6)
    entropy, distance, count = recorder.stats[1]
    assert count == 2 * n and recorder.row == 0
    assert entropy / count == pytest.approx(math.log(n), rel=1e-5)
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(5.0), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1)
    assert distance / count == pytest.approx(float(torch.cdist(pos, pos).mean()), rel=1e-5)
