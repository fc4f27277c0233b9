"""Dataset readers on tiny folders built in the exact distributed layouts."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basam.data.datasets import SampleError, binarize, open_dataset, read_image, read_mask

RNG = np.random.default_rng(0)


def _img(path: Path, size=(16, 12)) -> Path:
    """An RGB image, size = (W, H), format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray((RNG.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _mask(path: Path, size=(16, 12), gray=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    m = np.zeros((h, w), np.uint8)
    m[2:8, 3:10] = 255
    if gray:  # anti-aliased edge, as DIS gt has
        m[2:8, 10] = 100
    Image.fromarray(m).save(path)
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _reasons(ds) -> dict:
    return dict(ds.problems)


def _pairs(img_dir: Path, mask_dir: Path, stems, img_ext=".jpg", mask_suffix=""):
    for s in stems:
        _img(img_dir / f"{s}{img_ext}")
        _mask(mask_dir / f"{s}{mask_suffix}.png")


def test_duts_parent_subset_and_problems(tmp_path):
    root = tmp_path / "DUTS"
    te_i, te_m = root / "DUTS-TE" / "DUTS-TE-Image", root / "DUTS-TE" / "DUTS-TE-Mask"
    _pairs(te_i, te_m, ["ILSVRC2012_test_00000003", "sun_a", "sun_b"])
    _pairs(root / "DUTS-TR" / "DUTS-TR-Image", root / "DUTS-TR" / "DUTS-TR-Mask", ["tr1", "tr2"])
    _truncate(_img(te_i / "broken.jpg"))
    _mask(te_m / "broken.png")
    # cut inside the scan data: the header still parses, only a decode or the EOI check sees it
    _truncate(_img(te_i / "cut_late.jpg", (64, 48)), keep=0.9)
    _mask(te_m / "cut_late.png", (64, 48))
    with open(te_i / "sun_a.jpg", "ab") as f:
        f.write(b"\x00" * 7)  # padding after the end-of-image marker is legal
    _img(te_i / "lonely_image.jpg")
    _mask(te_m / "lonely_mask.png")
    _img(te_i / "wrong_size.jpg", (16, 16))
    _mask(te_m / "wrong_size.png", (16, 12))
    (te_i / ".DS_Store").write_bytes(b"junk")

    ds = open_dataset(str(root))  # auto-detected, default split test
    assert ds.layout == "duts" and ds.split == "test" and ds.name == "duts-test"
    assert [s.name for s in ds.samples] == ["ILSVRC2012_test_00000003", "sun_a", "sun_b"]
    r = _reasons(ds)
    assert set(r) == {"broken", "cut_late", "lonely_image", "lonely_mask", "wrong_size"}
    assert "unreadable broken.jpg" in r["broken"] and "unreadable cut_late.jpg" in r["cut_late"]
    assert "image without mask" in r["lonely_image"]
    assert "mask without image" in r["lonely_mask"]
    assert "size mismatch" in r["wrong_size"]
    summ = ds.summary()
    assert summ["samples"] == 3 and summ["problems"] == 5 and summ["skipped"] == {"hidden files": 1}
    assert {p["name"] for p in summ["problem_list"]} == set(r)

    image, gt = ds[0].load()
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert gt.shape == (12, 16) and gt.dtype == np.uint8 and set(np.unique(gt)) == {0, 255}

    tr = open_dataset(f"duts:{root}", split="train")
    assert [s.name for s in tr.samples] == ["tr1", "tr2"] and not tr.problems
    one = open_dataset(root / "DUTS-TE")  # pointing at the subset itself
    assert one.split == "test" and len(one) == 3 and len(one.problems) == 5
    with pytest.raises(ValueError, match="not split 'train'"):
        open_dataset(root / "DUTS-TE", split="train")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        open_dataset(root, split="val")


def test_dis5k_splits_and_grayscale(tmp_path):
    root = tmp_path / "DIS5K"
    for sub in ["DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4"]:
        _img(root / sub / "im" / f"1#Accessories#1#Bag#{sub}.jpg")
        _mask(root / sub / "gt" / f"1#Accessories#1#Bag#{sub}.png", gray=True)
    _img(root / "DIS-TE2" / "im" / "shared.jpg")
    _mask(root / "DIS-TE2" / "gt" / "shared.png")
    _img(root / "DIS-TE3" / "im" / "shared.jpg")
    _mask(root / "DIS-TE3" / "gt" / "shared.png")
    _truncate(root / "DIS-TE3" / "gt" / "shared.png")
    _img(root / "DIS-TE4" / "im" / "lonely.jpg")

    test = open_dataset(f"dis5k:{root}", split="test")
    names = [s.name for s in test.samples]
    assert len(names) == 5 and len(set(names)) == 5
    assert "DIS-TE2/shared" in names and all(n.startswith("DIS-TE") for n in names)
    assert set(_reasons(test)) == {"DIS-TE3/shared", "DIS-TE4/lonely"}
    assert "unreadable shared.png" in _reasons(test)["DIS-TE3/shared"]
    _, gt = test.samples[0].load()
    assert set(np.unique(gt)) == {0, 100, 255}  # grayscale kept
    assert binarize(gt).sum() == 6 * 7

    assert len(open_dataset(root, split="te1")) == 1
    assert open_dataset(root, split="val").samples[0].name == "1#Accessories#1#Bag#DIS-VD"
    sub = open_dataset(root / "DIS-TE2")
    assert sub.layout == "dis5k" and sub.split == "te2" and len(sub) == 2
    (root / "DIS-TE4" / "gt").rename(root / "DIS-TE4" / "masks")
    with pytest.raises(ValueError, match="DIS-TE4"):
        open_dataset(root, split="test")


def test_cod10k_raw_layout(tmp_path):
    root = tmp_path / "COD10K-v3"
    cam = ["COD10K-CAM-1-Aquatic-1-BatFish-1", "COD10K-CAM-1-Aquatic-3-Crab-32"]
    _pairs(root / "Test" / "Image", root / "Test" / "GT_Object", cam)
    _img(root / "Test" / "Image" / "COD10K-NonCAM-5-Background-1-Airplane-1.jpg")
    _img(root / "Test" / "Image" / "COD10K-CAM-2-Amphibian-23-Frog-1337.jpg")  # no mask
    _truncate(_img(root / "Test" / "Image" / "COD10K-CAM-3-Flying-53-Bird-3000.jpg"))
    _mask(root / "Test" / "GT_Object" / "COD10K-CAM-3-Flying-53-Bird-3000.png")
    _pairs(root / "Train" / "Image", root / "Train" / "GT_Object", ["COD10K-CAM-4-Train-1"])

    ds = open_dataset(root)
    assert ds.layout == "cod10k" and ds.split == "test"
    assert [s.name for s in ds.samples] == cam
    assert set(_reasons(ds)) == {"COD10K-CAM-2-Amphibian-23-Frog-1337", "COD10K-CAM-3-Flying-53-Bird-3000"}
    assert ds.summary()["skipped"] == {"excluded by layout rule in Image/": 1}
    assert len(open_dataset(root, split="train")) == 1
    assert len(open_dataset(root / "Test")) == 2


def test_cod10k_reorganised_layout(tmp_path):
    root = tmp_path / "data"
    _pairs(
        root / "TrainDataset" / "Imgs",
        root / "TrainDataset" / "GT",
        ["COD10K-CAM-1-Aquatic-1-BatFish-2", "camourflage_00012"],
    )
    te = root / "TestDataset" / "COD10K"
    _pairs(te / "Imgs", te / "GT", ["COD10K-CAM-1-Aquatic-1-BatFish-1"])
    _mask(te / "GT" / "COD10K-CAM-9-orphan.png")
    _pairs(root / "TestDataset" / "CAMO" / "Imgs", root / "TestDataset" / "CAMO" / "GT", ["camourflage_00001"])

    ds = open_dataset(f"cod10k:{root}")
    assert ds.split == "test"
    assert [s.name for s in ds.samples] == ["COD10K-CAM-1-Aquatic-1-BatFish-1"]
    assert _reasons(ds) == {"COD10K-CAM-9-orphan": "mask without image (COD10K-CAM-9-orphan.png)"}
    assert len(open_dataset(root, split="train")) == 2
    assert open_dataset(root, split="camo").samples[0].name == "camourflage_00001"
    assert len(open_dataset(te)) == 1 and open_dataset(te).layout == "cod10k"


def test_isic2016_layout(tmp_path):
    root = tmp_path / "ISIC2016"
    for part in ["Training", "Test"]:
        _pairs(
            root / f"ISBI2016_ISIC_Part1_{part}_Data",
            root / f"ISBI2016_ISIC_Part1_{part}_GroundTruth",
            ["ISIC_0000000", "ISIC_0000001"],
            mask_suffix="_Segmentation",
        )
    (root / "ISBI2016_ISIC_Part1_Test_Data" / "metadata.csv").write_text("a,b\n")
    _img(root / "ISBI2016_ISIC_Part1_Test_Data" / "ISIC_0000009.jpg")
    _truncate(_img(root / "ISBI2016_ISIC_Part1_Test_Data" / "ISIC_0000010.jpg"))
    _mask(root / "ISBI2016_ISIC_Part1_Test_GroundTruth" / "ISIC_0000010_Segmentation.png")

    ds = open_dataset(root)
    assert ds.layout == "isic2016" and ds.split == "test"
    assert [s.name for s in ds.samples] == ["ISIC_0000000", "ISIC_0000001"]
    assert ds.samples[0].mask_path.name == "ISIC_0000000_Segmentation.png"
    assert set(_reasons(ds)) == {"ISIC_0000009", "ISIC_0000010"}
    assert sum(ds.summary()["skipped"].values()) == 1  # the csv
    assert len(open_dataset(f"isic2016:{root}", split="train")) == 2


def test_generic_layout_formats_and_load_errors(tmp_path):
    root = tmp_path / "synth"
    _img(root / "images" / "a.png")
    _mask(root / "masks" / "a.png")
    _img(root / "images" / "b.BMP")
    _mask(root / "masks" / "b.tif")
    _img(root / "images" / "c.TIFF")
    _mask(root / "masks" / "c.bmp")
    _img(root / "images" / "d.png")
    _img(root / "images" / "d.jpg")
    _mask(root / "masks" / "d.png")
    _truncate(_img(root / "images" / "e.png"))
    _mask(root / "masks" / "e.png")
    _truncate(_img(root / "images" / "f.bmp"))
    _mask(root / "masks" / "f.png")

    ds = open_dataset(root)
    assert ds.layout == "generic" and [s.name for s in ds.samples] == ["a", "b", "c"]
    r = _reasons(ds)
    assert set(r) == {"d", "e", "f"} and "ambiguous" in r["d"]
    for s in ds.samples:
        image, gt = s.load()
        assert image.shape == (12, 16, 3) and gt.shape == (12, 16) and binarize(gt).sum() == 42

    raw = open_dataset(f"generic:{root}", verify=False)  # the check is repeated at load
    broken = next(s for s in raw.samples if s.name == "e")
    with pytest.raises(SampleError) as info:
        broken.load()
    assert info.value.name == "e" and "unreadable image e.png" in info.value.reason
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.name, again.reason) == (info.value.name, info.value.reason)
    _img(root / "images" / "g.png", (16, 16))
    _mask(root / "masks" / "g.png")
    g = next(s for s in open_dataset(root, verify=False).samples if s.name == "g")
    with pytest.raises(SampleError, match="size mismatch"):
        g.load()


def test_generic_split_subfolder(tmp_path):
    _pairs(tmp_path / "val" / "images", tmp_path / "val" / "masks", ["x"], img_ext=".png")
    assert open_dataset(tmp_path, split="val").samples[0].name == "x"
    with pytest.raises(ValueError, match="splits present: \\['val'\\]"):
        open_dataset(f"generic:{tmp_path}")


def test_coco_instances(tmp_path):
    root = tmp_path / "coco"
    _img(root / "val2017" / "000000000001.jpg", (20, 10))
    _img(root / "val2017" / "000000000002.jpg", (16, 16))
    poly = [[2, 2, 8, 2, 8, 6, 2, 6]]  # the rectangle x 2..8, y 2..6
    ann = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "width": 20, "height": 10},
            {"id": 2, "file_name": "000000000002.jpg", "width": 16, "height": 16},
        ],
        "annotations": [
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 24.0,
                "bbox": [2, 2, 6, 4],
                "segmentation": poly,
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "area": 4.0,
                "bbox": [0, 0, 2, 2],
                "segmentation": {"size": [10, 20], "counts": [0, 2, 8, 2, 188]},
            },
            {
                "id": 21,
                "image_id": 2,
                "category_id": 2,
                "iscrowd": 0,
                "area": 9.0,
                "bbox": [10.5, 3, 3, 3],
                "segmentation": [[10.5, 3, 13.5, 3, 13.5, 6, 10.5, 6]],
            },
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))

    ds = open_dataset(f"coco:{root}")
    assert ds.layout == "coco" and ds.split == "val" and ds.name == "coco-val"
    assert [s.name for s in ds.samples] == ["000000000001#11", "000000000002#21"]
    assert ds.summary()["skipped"]["crowd annotations"] == 1 and not ds.problems
    np.testing.assert_array_equal(ds.samples[0].box, [2, 2, 8, 6])
    np.testing.assert_array_equal(ds.samples[1].box, [10.5, 3, 13.5, 6])
    image, gt = ds.samples[0].load()
    assert image.shape == (10, 20, 3) and gt.shape == (10, 20) and gt.dtype == np.uint8
    ys, xs = np.nonzero(gt)
    assert set(np.unique(gt)) == {0, 255} and xs.min() >= 2 and xs.max() <= 8 and ys.max() <= 6
    assert ds.samples[0].meta["category_id"] == 1
    pickle.loads(pickle.dumps(ds.samples[1])).load()

    same = open_dataset(root / "annotations" / "instances_val2017.json")  # the json itself
    assert [s.name for s in same.samples] == [s.name for s in ds.samples]
    _truncate(root / "val2017" / "000000000002.jpg")
    assert _reasons(open_dataset(f"coco:{root}")).keys() == {"000000000002.jpg"}
    (root / "val2017" / "000000000001.jpg").unlink()
    assert "image file missing" in _reasons(open_dataset(f"coco:{root}"))["000000000001.jpg"]


def test_unknown_layout_and_empty_folder(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no recognisable dataset.*duts: DUTS-TR"):
        open_dataset(tmp_path / "stuff")
    with pytest.raises(ValueError, match="unknown layout 'kitti'"):
        open_dataset(f"kitti:{tmp_path}")
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="duts split 'test' needs DUTS-TE"):
        open_dataset(f"duts:{tmp_path / 'stuff'}")
    with pytest.raises(ValueError, match="coco needs"):
        open_dataset(f"coco:{tmp_path / 'stuff'}")


def test_mask_modes(tmp_path):
    m = np.zeros((6, 5), bool)
    m[1:4, 1:3] = True
    Image.fromarray(m).save(tmp_path / "one_bit.png")
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / "label01.png")
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[m] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "red.png")
    pal = Image.fromarray(m.astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 0, 90, 0] + [0] * 762)  # dark green: a label, not a gray level
    pal.save(tmp_path / "palette.png")
    Image.fromarray(m.astype(np.uint16) * 65535).save(tmp_path / "sixteen.tif")
    for name in ["one_bit.png", "label01.png", "red.png", "palette.png", "sixteen.tif"]:
        gt = read_mask(tmp_path / name)
        assert gt.dtype == np.uint8 and gt.shape == (6, 5), name
        np.testing.assert_array_equal(binarize(gt), m, err_msg=name)
    gray = np.array([[0, 1000, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png").shape == (1, 3, 3)
