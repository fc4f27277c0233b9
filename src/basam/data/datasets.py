"""Readers for segmentation datasets in the folder layouts they are distributed in.

`open_dataset("duts:/data/DUTS", split="test")` (or a bare path: layout auto-detected) gives a
`Dataset` of `Sample`s paired by name. What cannot be paired or read (image without mask, mask
without image, truncated file, size mismatch) is a named entry in `Dataset.problems`: counted,
never dropped silently, never a crash. Folders are listed flat; hidden files are skipped and
counted. Ground truth is uint8 0..255 with grayscale kept (DIS gt is anti-aliased; the SOD
metrics binarise it themselves); `binarize(gt)` is the >127 rule for prompts and IoU.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
LAYOUTS = ("duts", "dis5k", "cod10k", "isic2016", "coco", "generic")

# Per layout: split -> [(subset folder relative to the root, image dir, mask dir)].
_ISIC_PARTS = (("train", "Training"), ("test", "Test"))
_DIS_TE = [(f"DIS-TE{i}", "im", "gt") for i in range(1, 5)]
_TABLES = {
    "duts": {
        "train": [("DUTS-TR", "DUTS-TR-Image", "DUTS-TR-Mask")],
        "test": [("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask")],
    },
    "dis5k": {
        "train": [("DIS-TR", "im", "gt")],
        "val": [("DIS-VD", "im", "gt")],
        **{f"te{i}": [_DIS_TE[i - 1]] for i in range(1, 5)},
        "test": _DIS_TE,
    },
    "isic2016": {
        sp: [("", f"ISBI2016_ISIC_Part1_{p}_Data", f"ISBI2016_ISIC_Part1_{p}_GroundTruth")] for sp, p in _ISIC_PARTS
    },
    "cod10k": {"train": [("Train", "Image", "GT_Object")], "test": [("Test", "Image", "GT_Object")]},
    # The reorganised COD layout most COD code ships (SINet/PraNet style).
    "cod10k-reorg": {
        "train": [("TrainDataset", "Imgs", "GT")],
        "test": [("TestDataset/COD10K", "Imgs", "GT")],
        **{k.lower(): [(f"TestDataset/{k}", "Imgs", "GT")] for k in ("CAMO", "CHAMELEON", "NC4K")},
    },
}
_EXPECTED = (
    "duts: DUTS-TR|TE/DUTS-*-{Image,Mask}/; dis5k: DIS-TR|VD|TE1..4/{im,gt}/; cod10k: "
    "Train|Test/{Image,GT_Object}/ or TrainDataset|TestDataset/COD10K/{Imgs,GT}/; "
    "isic2016: ISBI2016_ISIC_Part1_{Training,Test}_{Data,GroundTruth}/; coco: annotations/"
    "instances_<split>2017.json + <split>2017/; generic: images/ + masks/ (by file stem)"
)
# Pairing keys (image stem -> key, mask stem -> key; `str` is the identity); None excludes the
# file (counted). Raw COD10K: only camouflaged COD10K-CAM-* images are the COD benchmark.
_KEYS = {
    "isic2016": (lambda s: None if s.endswith("_superpixels") else s, lambda s: s.removesuffix("_Segmentation")),
    "cod10k": (lambda s: s if "-CAM-" in s else None,) * 2,
}
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # 16/32-bit: scaled, not clipped, to 8-bit
_GENERIC_IMG, _GENERIC_MASK = ("images", "image", "imgs", "img"), ("masks", "mask", "gt", "labels")


class SampleError(Exception):
    """A sample that cannot be loaded; `name` and `reason` are what the evaluator records."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason

    def __reduce__(self):  # the default would call SampleError(message) across processes
        return SampleError, (self.name, self.reason)


def binarize(gt: np.ndarray) -> np.ndarray:
    """uint8 0..255 gt (H, W) -> bool (H, W), foreground where gt > 127."""
    return np.asarray(gt) > 127


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:  # 16-bit / 'I' / 'F' arrays -> 0..255
    top = float(a.max()) if a.size else 0.0
    scale = 255.0 if top <= 1 else (1.0 if top <= 255 else 255.0 / 65535.0)
    return np.clip(np.round(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> uint8 (H, W, 3) RGB. EXIF orientation is ignored on purpose: the masks
    of these datasets are aligned with the stored pixel array, not the displayed one."""
    with Image.open(path) as im:
        im.load()
        if im.mode in _WIDE_MODES:
            return np.stack([_scale_to_uint8(np.asarray(im))] * 3, axis=-1)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file -> uint8 (H, W) 0..255, grayscale kept. 1-bit and 0/1 label masks become
    0/255; coloured masks take the channel maximum (a red object must not read as dark);
    palette masks whose palette is not gray are label maps: nonzero index = object."""
    with Image.open(path) as im:
        if im.mode in _WIDE_MODES:
            a = _scale_to_uint8(np.asarray(im))
        else:
            rgb = np.asarray(im.convert("RGB"))
            a = rgb.max(axis=2)
            if im.mode == "P" and not (rgb == rgb[..., :1]).all():  # coloured palette: labels
                a = np.where(np.asarray(im) > 0, 255, 0).astype(np.uint8)
    return a * 255 if a.size and a.max() == 1 else a  # label-style 0/1 masks


def _has_eoi(path: Path) -> bool:  # JPEG end-of-image marker (padding after it is common)
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 1024))
        return f.read().rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")


def check_file(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """Cheap readability check at open time -> (problem or None, (W, H) or None). PNG: verify()
    checks every chunk CRC without decoding. JPEG: PIL's verify is a no-op, so look for the
    end-of-image marker and decode only when it is missing. Other formats: decode."""
    try:
        with Image.open(path) as im:
            size = im.size
            if path.suffix.lower() == ".png":
                im.verify()
            elif path.suffix.lower() not in (".jpg", ".jpeg") or not _has_eoi(path):
                im.load()
        return None, size
    # Broad on purpose: a corrupt file can make a PIL plugin raise nearly anything.
    except Exception as e:  # noqa: BLE001
        return f"unreadable {path.name}: {type(e).__name__}: {e}", None


@dataclass(eq=False)  # identity equality: `box` is an array
class Sample:
    """One image and its ground truth. `box` (4,) float xyxy comes with COCO instances;
    `mask_fn` replaces `mask_path` where the mask is not a file (COCO)."""

    name: str
    image_path: Path
    mask_path: Path | None = None
    box: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    mask_fn: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (image uint8 (H, W, 3) RGB, gt uint8 (H, W) 0..255); raises SampleError."""
        what = f"image {Path(self.image_path).name}"
        try:  # broad: any decoder failure is this sample's problem, not the run's
            image = read_image(self.image_path)
            what = f"mask {Path(self.mask_path).name if self.mask_path else 'annotation'}"
            gt = self.mask_fn() if self.mask_fn is not None else read_mask(self.mask_path)
        except Exception as e:  # noqa: BLE001
            raise SampleError(self.name, f"unreadable {what}: {e}") from e
        if image.shape[:2] != gt.shape:
            raise SampleError(
                self.name, f"size mismatch: image {image.shape[1]}x{image.shape[0]} vs mask {gt.shape[1]}x{gt.shape[0]}"
            )
        return image, gt


class Dataset:
    """A list of samples plus what could not become one. `problems`: [(name, reason)];
    `skipped`: counts of files ignored by rule (hidden files, COCO crowds, COD10K non-CAM)."""

    def __init__(
        self,
        name: str,
        layout: str,
        root: Path,
        split: str | None,
        samples: list[Sample],
        problems: list[tuple[str, str]],
        skipped: Counter,
    ):
        self.name, self.layout, self.root, self.split = name, layout, root, split
        self.samples, self.problems, self.skipped = samples, problems, skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} samples, {len(self.problems)} problems)"

    def summary(self) -> dict:
        return {
            "name": self.name,
            "layout": self.layout,
            "split": self.split,
            "root": str(self.root),
            "samples": len(self),
            "problems": len(self.problems),
            "problem_list": [{"name": n, "reason": r} for n, r in self.problems],
            "skipped": dict(self.skipped),
        }


def _list_files(folder: Path, skipped: Counter, keep: Callable[[str], str | None]):
    """-> {key: [paths]} for image-extension files; keep(stem) gives the pairing key or None."""
    out: dict[str, list[Path]] = {}
    for p in sorted(q for q in folder.iterdir() if q.is_file()):
        if p.name.startswith("."):
            skipped["hidden files"] += 1
        elif p.suffix.lower() not in IMAGE_EXTS:
            skipped[f"non-image files in {folder.name}/"] += 1
        elif (key := keep(p.stem)) is None:
            skipped[f"excluded by layout rule in {folder.name}/"] += 1
        else:
            out.setdefault(key, []).append(p)
    return out


def _pair(
    img_dir: Path,
    mask_dir: Path,
    prefix: str,
    keys: tuple,
    verify: bool,
    samples: list,
    problems: list,
    skipped: Counter,
) -> None:
    images = _list_files(img_dir, skipped, keys[0])
    masks = _list_files(mask_dir, skipped, keys[1])
    for key in sorted(images.keys() | masks.keys()):
        name = prefix + key
        imgs, msks = images.get(key, []), masks.get(key, [])
        if len(imgs) > 1 or len(msks) > 1:
            problems.append(
                (name, "ambiguous: several files share this name: " + ", ".join(p.name for p in imgs + msks))
            )
        elif not msks:
            problems.append((name, f"image without mask ({imgs[0].name})"))
        elif not imgs:
            problems.append((name, f"mask without image ({msks[0].name})"))
        elif verify and (reason := _check_pair(imgs[0], msks[0])):
            problems.append((name, reason))
        else:
            samples.append(Sample(name, imgs[0], msks[0]))


def _check_pair(image: Path, mask: Path) -> str | None:
    (err_i, size_i), (err_m, size_m) = check_file(image), check_file(mask)
    if err_i or err_m:
        return "; ".join(e for e in (err_i, err_m) if e)
    if size_i != size_m:
        return f"size mismatch: image {size_i[0]}x{size_i[1]} vs mask {size_m[0]}x{size_m[1]}"
    return None


def _find_dir(parent: Path | None, name: str) -> Path | None:
    """Case-insensitive child lookup (datasets get re-zipped on case-insensitive systems)."""
    if parent is None or not parent.is_dir() or (parent / name).is_dir():
        return parent / name if parent is not None and (parent / name).is_dir() else None
    return next((p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower()), None)


def _dirs(d: Path | None, sub: str, img: str, mask: str) -> tuple[Path, Path] | None:
    """(image dir, mask dir) of subset `sub` ("a/b" relative to d), or None if absent."""
    for part in filter(None, sub.split("/")):
        d = _find_dir(d, part)
    pair = (_find_dir(d, img), _find_dir(d, mask))
    return None if None in pair else pair


def _as_subset(table: dict, root: Path):
    """-> (split, subset, dirs) when root is itself one subset folder (e.g. DUTS-TE/)."""
    for sp, entries in table.items():
        sub, img, mask = entries[0]
        if len(entries) == 1 and sub and sub.split("/")[-1].lower() == root.name.lower():
            if (dirs := _dirs(root, "", img, mask)) is not None:
                return sp, sub, dirs


def _matches(table: dict, root: Path) -> bool:
    return _as_subset(table, root) is not None or any(_dirs(root, *e) is not None for es in table.values() for e in es)


def _resolve(table: dict, root: Path, split: str | None, layout: str):
    """-> (split, [(label, img_dir, mask_dir)]); root is the parent or one subset folder."""
    if (found := _as_subset(table, root)) is not None:
        sp, sub, dirs = found
        if split not in (None, sp) and not any(sub == e[0] for e in table.get(split, [])):
            raise ValueError(f"{root} is the {root.name} subset, which is not split {split!r}")
        return sp, [(root.name, *dirs)]
    split = split if split is not None else ("test" if "test" in table else next(iter(table)))
    if split not in table:
        raise ValueError(f"unknown split {split!r} for {layout}; expected one of {sorted(table)}")
    out = []
    for sub, img, mask in table[split]:
        if (dirs := _dirs(root, sub, img, mask)) is None:
            have = [s for s, es in table.items() if all(_dirs(root, *e) for e in es)]
            raise ValueError(
                f"{layout} split {split!r} needs {sub or '.'}/{{{img},{mask}}} under"
                f" {root}; splits present: {have or 'none'}"
            )
        out.append((sub.split("/")[-1], *dirs))
    return split, out


def _generic_dirs(d: Path | None):
    img = next((p for n in _GENERIC_IMG if (p := _find_dir(d, n))), None)
    mask = next((p for n in _GENERIC_MASK if (p := _find_dir(d, n))), None)
    return (img, mask) if img and mask else None


def _coco_json(root: Path, split: str | None) -> Path | None:
    if root.is_file():
        return root
    found = sorted((root / "annotations").glob(f"instances_{split or ''}*.json"))
    preferred = [f for f in found if f.name == f"instances_{split or 'val'}2017.json"]
    return (preferred or found or [None])[0]


def detect_layout(root: Path) -> str:
    """The layout of a folder, or ValueError naming what was expected."""
    if root.suffix.lower() == ".json" or _coco_json(root, None) is not None:
        return "coco"
    for layout in ("duts", "dis5k", "isic2016", "cod10k", "cod10k-reorg"):
        if _matches(_TABLES[layout], root):
            return layout.split("-")[0]
    if _generic_dirs(root) or any(p.is_dir() and _generic_dirs(p) for p in root.iterdir()):
        return "generic"
    raise ValueError(f"no recognisable dataset in {root}; expected one of: {_EXPECTED}")


def open_dataset(spec: str | Path, split: str | None = None, *, verify: bool = True) -> Dataset:
    """Open a dataset from "LAYOUT:PATH" or PATH (layout auto-detected).

    split: duts train|test; dis5k train|val|te1..te4|test (= all four TE sets, names prefixed
    with the subset); cod10k train|test (+ camo|chameleon|nc4k in the reorganised layout);
    isic2016 train|test; coco val|train (default val); generic: a subfolder holding
    images/ + masks/, or None for PATH itself. Default split is "test" where there is one.
    verify=False skips the open-time file checks (they are repeated at load anyway).
    """
    spec = str(spec)
    layout, _, rest = spec.partition(":")
    if rest and layout.lower() in LAYOUTS:
        layout, root = layout.lower(), Path(rest).expanduser()
    elif rest and not Path(spec).exists() and re.fullmatch(r"[A-Za-z][\w-]+", layout):
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    else:
        layout, root = None, Path(spec).expanduser()
    if not root.exists():
        raise ValueError(f"dataset path does not exist: {root}")
    if layout is None and root.is_dir():
        layout = detect_layout(root)
    if layout == "coco" or (layout is None and root.suffix.lower() == ".json"):
        return _open_coco(root, split, verify)
    if not root.is_dir():
        raise ValueError(f"{root} is a file; a dataset is a folder (or a COCO instances json)")
    samples, problems, skipped, keys = [], [], Counter(), _KEYS.get(layout, (str, str))
    if layout == "generic":
        if (dirs := _generic_dirs(root if split is None else _find_dir(root, split))) is None:
            subs = sorted(p.name for p in root.iterdir() if p.is_dir() and _generic_dirs(p))
            raise ValueError(
                f"generic layout needs {root}/{split + '/' if split else ''}"
                "images/ + masks/ (paired by file stem)" + (f"; splits present: {subs}" if subs else "")
            )
        parts = [("", *dirs)]
    else:
        table = _TABLES[layout]
        if layout == "cod10k":
            if not _matches(table, root) and _matches(_TABLES["cod10k-reorg"], root):
                table, keys = _TABLES["cod10k-reorg"], (str, str)
        split, parts = _resolve(table, root, split, layout)
    for label, img_dir, mask_dir in parts:
        prefix = f"{label}/" if len(parts) > 1 else ""
        _pair(img_dir, mask_dir, prefix, keys, verify, samples, problems, skipped)
    name = f"{layout}-{split}" if split else f"{layout}-{root.name}"
    return Dataset(name, layout, root, split, samples, problems, skipped)


def _coco_mask(coco, ann_id: int) -> np.ndarray:
    """One instance -> uint8 (H, W) 0/255. Bound with functools.partial, which pickles (the
    COCO index once per dataset: pickle memoises shared objects)."""
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco.annToMask(coco.anns[ann_id]).astype(np.uint8) * 255


def _open_coco(root: Path, split: str | None, verify: bool) -> Dataset:
    from pycocotools.coco import COCO

    json_path = _coco_json(root, split)
    if json_path is None:
        raise ValueError(f"coco needs {root}/annotations/instances_{split or 'val'}2017.json")
    folder = json_path.stem.removeprefix("instances_")  # val2017
    split = split or re.sub(r"\d{4}$", "", folder)
    base = json_path.parent.parent
    cands = [base / folder, json_path.parent / folder, base / "images" / folder, base / "images"]
    if (img_dir := next((c for c in cands if c.is_dir()), None)) is None:
        raise ValueError(f"coco images for {json_path.name} not found in {list(map(str, cands))}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            coco = COCO(str(json_path))
        except Exception as e:  # noqa: BLE001 - bad JSON: one readable line
            raise ValueError(f"cannot read COCO annotations {json_path}: {e}") from e
    samples, problems, skipped = [], [], Counter()
    for img_id in sorted(coco.imgs):
        info = coco.imgs[img_id]
        anns = sorted(coco.imgToAnns.get(img_id, []), key=lambda a: a["id"])
        skipped["crowd annotations"] += sum(1 for a in anns if a.get("iscrowd", 0))
        if not (anns := [a for a in anns if not a.get("iscrowd", 0)]):
            skipped["images without instances"] += 1
            continue
        path = img_dir / info["file_name"]
        if not path.is_file():
            problems.append((info["file_name"], f"image file missing ({len(anns)} instances)"))
            continue
        if verify:
            err, size = check_file(path)
            if err or size != (info["width"], info["height"]):
                problems.append(
                    (
                        info["file_name"],
                        err or f"size {size[0]}x{size[1]} differs from annotation {info['width']}x{info['height']}",
                    )
                )
                continue
        for a in anns:
            name, (x, y, w, h) = f"{path.stem}#{a['id']}", map(float, a["bbox"])
            if w <= 0 or h <= 0:
                problems.append((name, f"degenerate bbox {a['bbox']}"))
                continue
            meta = {"image_id": img_id, "ann_id": a["id"], "category_id": a["category_id"]}
            samples.append(
                Sample(name, path, None, np.array([x, y, x + w, y + h]), meta, partial(_coco_mask, coco, a["id"]))
            )
    return Dataset(f"coco-{split}", "coco", root, split, samples, problems, skipped)
