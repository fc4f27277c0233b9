"""Counts and run boundaries from low-res logits against the upsampled masks themselves."""

import pytest
import torch
import torch.nn.functional as F

from basam.inference.amg_utils import (
    boxes_from_boundaries,
    masks_to_boxes,
    masks_to_rle,
    rles_from_boundaries,
    run_boundaries,
)
from basam.inference.low_res_masks import LowResMasks, applies


@pytest.mark.parametrize(
    "low_hw, kept_hw, smooth",
    [
        ((16, 16), (64, 64), True),  # a square crop at the model side
        ((16, 12), (61, 40), True),  # padding cut off on both axes
        ((16, 16), (64, 64), False),  # noise: most cells straddle the threshold
        ((64, 64), (250, 256), False),
    ],
)
def test_counts_and_boundaries_equal_those_of_the_upsampled_masks(low_hw, kept_hw, smooth):
    g = torch.Generator().manual_seed(0)
    n, m = low_hw
    if smooth:
        low = F.interpolate(torch.randn(7, 1, n // 4, m // 4, generator=g) * 3, low_hw, mode="bicubic")[:, 0]
    else:
        low = torch.randn(7, n, m, generator=g)
    low[0] = 5.0  # everywhere above: runs across whole columns
    low[1] = -5.0  # empty
    up = F.interpolate(low[:, None], (4 * n, 4 * m), mode="bilinear", align_corners=False)[:, 0]
    up = up[:, : kept_hw[0], : kept_hw[1]]
    cells = LowResMasks(low, kept_hw)
    for t, count in zip((-1.0, 0.0, 1.0), cells.count_above(-1.0, 0.0, 1.0)):
        assert torch.equal(count, (up > t).flatten(1).sum(1))
        assert torch.equal(cells.count_above(t)[0], count)
        expected = run_boundaries((up > t).transpose(1, 2))
        got = cells.run_boundaries(t)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    masks = up > 0
    got = cells.run_boundaries(0.0)
    assert torch.equal(boxes_from_boundaries(*got, len(low)), masks_to_boxes(masks))
    for a, b in zip(
        rles_from_boundaries(*got, len(low), [3, 2], (kept_hw[0] + 5, kept_hw[1] + 4)),
        masks_to_rle(masks, [3, 2], (kept_hw[0] + 5, kept_hw[1] + 4)),
    ):
        assert a["size"] == b["size"] and a["counts"].tolist() == b["counts"].tolist()


def test_applies_only_to_one_upsampling_and_a_cut():
    assert applies((64, 64), (256, 256), (256, 192), (256, 192))
    assert not applies((64, 64), (256, 256), (256, 192), (512, 384))  # a second resize
