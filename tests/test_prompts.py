"""Prompts from ground truth: inside the object, deterministic for a seed, within the image."""

import numpy as np
import pytest

from basam.data.prompts import Prompt, prompt_rng, sample_prompt


def _blob(h=40, w=50) -> np.ndarray:
    """An L-shaped object plus a small separate square, touching no border."""
    m = np.zeros((h, w), bool)
    m[5:30, 8:16] = True
    m[22:30, 8:35] = True
    m[10:13, 40:43] = True
    return m


def test_box_is_tight_and_contains_mask():
    m = _blob()
    p = sample_prompt(m, "box", 0)
    np.testing.assert_array_equal(p.box, [8, 5, 42, 29])
    assert p.point_coords is None and p.point_labels is None
    ys, xs = np.nonzero(m)
    assert xs.min() >= p.box[0] and xs.max() <= p.box[2]
    assert ys.min() >= p.box[1] and ys.max() <= p.box[3]


def test_center_is_deepest_inside_point():
    m = _blob()
    p = sample_prompt(m, "center", 123)
    ((x, y),) = p.point_coords
    assert p.point_labels.tolist() == [1] and p.box is None
    assert m[int(y), int(x)] and x == int(x) and y == int(y)
    # the 8-wide arms allow depth 4 at most; the point must reach it
    r, c = int(y), int(x)
    assert m[r - 3 : r + 4, c - 3 : c + 4].all()
    # an object cut by the image border: its centre stays off the border
    edge = np.zeros((20, 20), bool)
    edge[:, :6] = True
    ((x, _),) = sample_prompt(edge, "center", 0).point_coords
    assert 2 <= x <= 3


def test_points_inside_outside_and_deterministic():
    m = _blob()
    p = sample_prompt(m, "points", 7, n_pos=5, n_neg=3)
    assert p.point_coords.shape == (8, 2) and p.point_labels.tolist() == [1] * 5 + [0] * 3
    cols, rows = p.point_coords[:, 0].astype(int), p.point_coords[:, 1].astype(int)
    assert m[rows[:5], cols[:5]].all() and not m[rows[5:], cols[5:]].any()
    assert len({tuple(c) for c in p.point_coords[:5]}) == 5  # distinct positives
    q = sample_prompt(m, "points", 7, n_pos=5, n_neg=3)
    np.testing.assert_array_equal(p.point_coords, q.point_coords)
    r = sample_prompt(m, "points", 8, n_pos=5, n_neg=3)
    assert not np.array_equal(p.point_coords, r.point_coords)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(
        sample_prompt(m, "points", g1).point_coords, sample_prompt(m, "points", g2).point_coords
    )
    # more positives than pixels: repeats allowed rather than an error
    tiny = np.zeros((5, 5), bool)
    tiny[2, 2] = True
    assert (sample_prompt(tiny, "points", 0, n_pos=3).point_coords == 2).all()


def test_box_jitter_in_image_and_deterministic():
    m = _blob()
    h, w = m.shape
    boxes = [sample_prompt(m, "box", s, box_jitter=0.5).box for s in range(50)]
    for b in boxes:
        assert 0 <= b[0] <= b[2] <= w - 1 and 0 <= b[1] <= b[3] <= h - 1
    assert len({tuple(b) for b in boxes}) == 50  # it does move
    np.testing.assert_array_equal(
        sample_prompt(m, "box", 5, box_jitter=0.1).box, sample_prompt(m, "box", 5, box_jitter=0.1).box
    )
    small = np.array([sample_prompt(m, "box", s, box_jitter=0.02).box for s in range(50)])
    assert np.abs(small - [8, 5, 42, 29]).max() < 4  # ~2% of a 35 x 25 box


def test_box_plus_center_none_and_errors():
    m = _blob()
    p = sample_prompt(m, "box+center", 0)
    np.testing.assert_array_equal(p.box, sample_prompt(m, "box", 0).box)
    np.testing.assert_array_equal(p.point_coords, sample_prompt(m, "center", 0).point_coords)
    assert sample_prompt(m, "none", 0) == Prompt(None, None, None)
    assert sample_prompt(np.zeros((4, 4), bool), "none", 0).box is None
    assert set(p.as_kwargs()) == {"point_coords", "point_labels", "box"}
    for kind in ["box", "center", "points", "box+center"]:
        with pytest.raises(ValueError, match="empty"):
            sample_prompt(np.zeros((4, 4), bool), kind, 0)
    with pytest.raises(ValueError, match="unknown prompt kind"):
        sample_prompt(m, "scribble", 0)
    with pytest.raises(ValueError, match="whole image"):
        sample_prompt(np.ones((4, 4), bool), "points", 0, n_neg=1)
    with pytest.raises(ValueError, match="2-D"):
        sample_prompt(np.ones((4, 4, 1), bool), "box", 0)


def test_uint8_gt_and_per_sample_rng():
    m = _blob()
    gt = m.astype(np.uint8) * 255
    gt[0, 0] = 100  # anti-aliased value below the >127 rule: not object
    np.testing.assert_array_equal(sample_prompt(gt, "box", 0).box, sample_prompt(m, "box", 0).box)
    a = sample_prompt(m, "points", prompt_rng(1, "img_001")).point_coords
    b = sample_prompt(m, "points", prompt_rng(1, "img_001")).point_coords
    c = sample_prompt(m, "points", prompt_rng(1, "img_002"), n_pos=1).point_coords
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape == (1, 2)
