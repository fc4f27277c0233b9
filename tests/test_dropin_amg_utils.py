"""basam.utils.amg against segment_anything.utils.amg: every helper, on random inputs, gives the
official result (value, dtype and shape)."""

import numpy as np
import pytest
import torch

import basam.utils.amg as ours
from official import official_package

theirs = official_package().amg
OFFICIAL_NAMES = sorted(
    n
    for n in vars(theirs)
    if not n.startswith("_")
    and callable(getattr(theirs, n))
    and getattr(getattr(theirs, n), "__module__", "") == theirs.__name__
)


def random_masks(seed, shape=(5, 23, 31), density=0.5):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(shape, generator=g) < density
    masks[0] = False  # an empty mask
    masks[1] = True  # a full one
    return masks


def same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, equal_nan=True)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


def test_every_official_helper_exists():
    assert len(OFFICIAL_NAMES) >= 17
    assert [n for n in OFFICIAL_NAMES if not hasattr(ours, n)] == []


@pytest.mark.parametrize("seed", [0, 1])
def test_rle_helpers(seed):
    masks = random_masks(seed)
    masks[2, :, :4] = True  # runs across column ends
    a, b = ours.mask_to_rle_pytorch(masks), theirs.mask_to_rle_pytorch(masks)
    assert a == b
    for rle in b:
        same(ours.rle_to_mask(rle), theirs.rle_to_mask(rle))
        assert ours.area_from_rle(rle) == theirs.area_from_rle(rle)
        assert ours.coco_encode_rle(rle) == theirs.coco_encode_rle(rle)


@pytest.mark.parametrize("shape", [(6, 17, 29), (2, 3, 9, 11), (9, 11), (0, 9, 11)])
def test_batched_mask_to_box(shape):
    masks = torch.rand(shape, generator=torch.Generator().manual_seed(3)) < 0.02
    same(ours.batched_mask_to_box(masks), theirs.batched_mask_to_box(masks))


@pytest.mark.parametrize("shape", [(7, 20, 30), (2, 3, 8, 8)])
def test_stability_score(shape):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 3
    for threshold, offset in ((0.0, 1.0), (0.5, 0.25), (-1.0, 0.0)):
        same(
            ours.calculate_stability_score(logits, threshold, offset),
            theirs.calculate_stability_score(logits, threshold, offset),
        )


def test_point_grids_and_crops():
    for n in (1, 4, 7):
        same(ours.build_point_grid(n), theirs.build_point_grid(n))
    for args in ((16, 2, 2), (9, 1, 3), (32, 0, 1)):
        a, b = ours.build_all_layer_point_grids(*args), theirs.build_all_layer_point_grids(*args)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for size, layers, ratio in (((480, 640), 2, 512 / 1500), ((333, 201), 1, 0.2), ((64, 64), 3, 0.0)):
        assert ours.generate_crop_boxes(size, layers, ratio) == theirs.generate_crop_boxes(size, layers, ratio)


def test_uncrop_and_edges():
    g = torch.Generator().manual_seed(5)
    boxes = torch.randint(0, 200, (12, 4), generator=g)
    points = torch.rand(12, 2, generator=g, dtype=torch.float64) * 100
    crop, image = [30, 40, 230, 190], [0, 0, 300, 250]
    same(ours.uncrop_boxes_xyxy(boxes, crop), theirs.uncrop_boxes_xyxy(boxes, crop))
    same(ours.uncrop_boxes_xyxy(boxes[None], crop), theirs.uncrop_boxes_xyxy(boxes[None], crop))
    same(ours.uncrop_points(points, crop), theirs.uncrop_points(points, crop))
    same(ours.is_box_near_crop_edge(boxes, crop, image), theirs.is_box_near_crop_edge(boxes, crop, image))
    same(
        ours.is_box_near_crop_edge(boxes, crop, image, atol=5), theirs.is_box_near_crop_edge(boxes, crop, image, atol=5)
    )
    masks = random_masks(6, (3, 150, 200))
    same(ours.uncrop_masks(masks, crop, 250, 300), theirs.uncrop_masks(masks, crop, 250, 300))
    same(ours.uncrop_masks(masks, [0, 0, 200, 150], 150, 200), theirs.uncrop_masks(masks, [0, 0, 200, 150], 150, 200))
    box = torch.tensor([3.0, 4.0, 10.0, 20.0])
    same(ours.box_xyxy_to_xywh(box), theirs.box_xyxy_to_xywh(box))


def test_remove_small_regions():
    rng = np.random.default_rng(7)
    for trial in range(4):
        mask = rng.random((40, 50)) < (0.3 + 0.15 * trial)
        for mode in ("holes", "islands"):
            for area in (1, 5, 40):
                a, changed_a = ours.remove_small_regions(mask, area, mode)
                b, changed_b = theirs.remove_small_regions(mask, area, mode)
                assert changed_a == changed_b and np.array_equal(a, b)


def test_batch_iterator():
    a, b = list(range(10)), np.arange(10) * 2
    for size in (1, 3, 10, 12):
        got, expected = list(ours.batch_iterator(size, a, b)), list(theirs.batch_iterator(size, a, b))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g[0] == e[0] and np.array_equal(g[1], e[1])
    with pytest.raises(ValueError, match="one length"):
        next(ours.batch_iterator(2, [1, 2], [1]))


def test_mask_data():
    def make(mod, seed):
        g = torch.Generator().manual_seed(seed)
        return mod.MaskData(
            boxes=torch.rand(6, 4, generator=g), scores=np.arange(6.0) + seed, rles=[f"r{seed}{i}" for i in range(6)]
        )

    results = []
    for mod in (ours, theirs):
        data = make(mod, 0)
        data.cat(make(mod, 1))
        data.filter(torch.tensor([True, False, True, True, False, True, False, False, True, True, True, False]))
        data.filter(torch.tensor([4, 0, 2]))
        data["extra"] = torch.arange(3)
        del data["extra"]
        data.to_numpy()
        results.append(dict(data.items()))
    a, b = results
    assert a.keys() == b.keys()
    assert a["rles"] == b["rles"] and all(np.array_equal(a[k], b[k]) for k in ("boxes", "scores"))
    with pytest.raises(TypeError, match="list, numpy array or torch tensor"):
        ours.MaskData(boxes=(1, 2))


def test_postprocess_small_regions():
    from scipy import ndimage

    import basam

    rng = np.random.default_rng(8)
    masks = []
    for i in range(6):
        mask = ndimage.binary_dilation(rng.random((40, 60)) < 0.02, iterations=2 + i % 3)
        mask[5 + i, 5 : 5 + i] = True  # a thin piece, an island or part of a region
        masks.append(mask)
    masks = torch.as_tensor(np.stack(masks))
    results = []
    for generator, mod in (
        (official_package().SamAutomaticMaskGenerator, theirs),
        (basam.SamAutomaticMaskGenerator, ours),
    ):
        data = mod.MaskData(
            rles=mod.mask_to_rle_pytorch(masks), boxes=mod.batched_mask_to_box(masks), iou_preds=torch.arange(6.0)
        )
        results.append(generator.postprocess_small_regions(data, 25, 0.7))
    expected, got = results
    assert got["rles"] == expected["rles"] and len(got["rles"]) > 0
    assert any(rle not in theirs.mask_to_rle_pytorch(masks) for rle in got["rles"])  # some masks changed
    assert torch.equal(got["boxes"], expected["boxes"]) and torch.equal(got["iou_preds"], expected["iou_preds"])
