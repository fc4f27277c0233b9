"""Synthetic multi-resolution segmentation benchmark.

A `Scene` is defined once, independently of resolution: shapes in continuous scene units (see
`textures` for the coordinate convention), textures by parameters and seeds. `render(scene, H, W)`
draws it anti-aliased at any size: masks come from analytic pixel coverage (signed distance +
the exact area of a unit pixel behind a straight edge), so a 2048 px mask box-downsampled to
512 px agrees with the 512 px mask, while textures and thin structures gain detail with size.

Families mirror the paper's datasets: "salient" (DUTS-like: distinct object on a photo),
"camouflaged" (COD10K-like: object textured like its surroundings), "thin" (DIS-like: branches,
grilles, wheels, perforations, wires with widths fixed in scene units, sub-pixel at low
resolution) and "lesion" (ISIC-like: soft-edged blob on procedural skin, hairs on top).
"""

from __future__ import annotations

import colorsys
import json
import math
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from basam.data.textures import (
    DETAILS,
    PHOTOS,
    Capsule,
    SceneObject,
    Star,
    Texture,
    extent,
    make_frame,
    object_layer,
    render_texture,
)

FAMILIES = ("salient", "camouflaged", "thin", "lesion")


@dataclass(frozen=True)
class Scene:
    """Resolution-independent scene: objects back to front, objects[target] is the one the prompt
    selects; overlays are drawn on top but are not objects (hairs over a lesion)."""

    family: str
    seed: int
    background: Texture
    objects: tuple
    target: int
    overlays: tuple = ()
    vignette: float = 0.0


@dataclass
class RenderedScene:
    """image (H, W, 3) uint8; mask (H, W) bool = masks[target]; masks (K, H, W) bool, the visible
    part of each object (coverage >= 0.5 after occlusion); coverage (H, W) float32, the target's
    anti-aliased visible coverage."""

    image: np.ndarray
    mask: np.ndarray
    masks: np.ndarray
    coverage: np.ndarray
    target: int


def render(scene: Scene, height: int, width: int) -> RenderedScene:
    """Draw scene at height × width pixels (any size >= 1, square or not). Deterministic."""
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"render size must be positive integers, got {height}x{width}")
    fr = make_frame(int(height), int(width))
    H, W = fr.H, fr.W
    img = render_texture(scene.background, fr, slice(0, H), slice(0, W))
    layers = []
    for obj in (*scene.objects, *scene.overlays):
        lay = object_layer(obj, fr)
        layers.append(lay)
        if lay is not None:
            rs, cs, _, a, rgb = lay
            img[rs, cs] += (rgb - img[rs, cs]) * a[..., None]
    if scene.vignette:  # dermoscope-style dark surround, image only
        r = 2 * np.hypot(fr.xs[None, :] * fr.L / W, fr.ys[:, None] * fr.L / H)
        s = np.clip((r - 0.85) / 0.5, 0, 1)
        img *= (1 - scene.vignette * s * s * (3 - 2 * s))[..., None]
    K = len(scene.objects)
    masks, coverage = np.zeros((K, H, W), bool), np.zeros((H, W), np.float32)
    trans = np.ones((H, W), np.float32)  # light passing the objects above: occlusion
    for k in range(K - 1, -1, -1):
        if layers[k] is None:
            continue
        rs, cs, cov = layers[k][:3]
        vis = cov * trans[rs, cs]
        masks[k, rs, cs] = vis >= 0.5
        if k == scene.target:
            coverage[rs, cs] = vis
        trans[rs, cs] *= 1 - cov
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return RenderedScene(image, masks[scene.target].copy(), masks, coverage, scene.target)


# --- scene generation ----------------------------------------------------------------------------


def _u(rng, a, b):
    return float(rng.uniform(a, b))


def _logu(rng, a, b):
    return float(math.exp(rng.uniform(math.log(a), math.log(b))))


def _hsv(h, s, v):
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)))


def _seed(rng) -> int:
    return int(rng.integers(0, 2**31))


def _blob(rng, radius, irregular=0.3, p_poly=0.0, elong=1.5) -> Star:
    ks = rng.choice(np.arange(2, 8), size=int(rng.integers(1, 4)), replace=False)
    amps = rng.dirichlet(np.ones(len(ks))) * _u(rng, 0.03, irregular)
    harm = tuple((int(k), float(a / (1 + 0.3 * k)), _u(rng, 0, 2 * math.pi)) for k, a in zip(ks, amps))
    sides = int(rng.choice([3, 4, 5, 6, 8])) if rng.random() < p_poly else 0
    expo = _u(rng, 1.6, 5.0) if rng.random() < 0.4 else 2.0
    return Star(0.0, 0.0, radius, _u(rng, 0, math.pi), _logu(rng, 1 / elong, elong), expo, sides, harm)


def _place(rng, rb, placed, inside=False):
    """Anchor (fractions of W, H) for an object of bounding radius rb (units, square geometry),
    away from those already placed; inside=True keeps it whole in the image."""
    lo = min(0.49, rb + 0.02) if inside else min(0.45, 0.6 * rb)
    for _ in range(80):
        fx, fy = (float(v) for v in rng.uniform(lo, 1 - lo, 2))
        if all(math.hypot(fx - x, fy - y) > rb + r + 0.02 for x, y, r in placed):
            break
    placed.append((fx, fy, rb))
    return fx, fy


def _radius(parts) -> float:
    return max(abs(v) for p in parts for v in extent(p))


def _vivid(rng) -> Texture:
    h = rng.random()
    pattern = str(rng.choice(["fbm", "spots", "stripes", "tile"], p=[0.45, 0.2, 0.2, 0.15]))
    return Texture(
        (
            _hsv(h, _u(rng, 0.6, 1), _u(rng, 0.35, 0.95)),
            _hsv(h + _u(rng, -0.12, 0.12), _u(rng, 0.3, 1), _u(rng, 0.3, 1)),
        ),
        _seed(rng),
        pattern,
        _logu(rng, 2, 12),
        _u(rng, 0.6, 0.8),
        _u(rng, 1.0, 3.0),
        _u(rng, 0, math.pi),
        photo=str(rng.choice(PHOTOS[:6])),
        grain=_u(rng, 0.01, 0.05),
        detail=str(rng.choice(DETAILS)),
        detail_amp=_u(rng, 0, 0.15),
    )


def _photo_bg(rng) -> Texture:
    return Texture(
        seed=_seed(rng),
        pattern="photo",
        photo=str(rng.choice(PHOTOS)),
        zoom=_logu(rng, 1, 2.5),
        offset=(_u(rng, 0, 1), _u(rng, 0, 1)),
        grain=_u(rng, 0.02, 0.06),
        detail=str(rng.choice(DETAILS)),
        detail_amp=_u(rng, 0.05, 0.2),
    )


def _salient(rng):
    n, placed, objs = int(rng.integers(1, 5)), [], []
    for i in range(n):
        r = _logu(rng, 0.07, 0.28) if i == 0 else _logu(rng, 0.02, 0.7 * objs[0][1].parts[0].radius)
        part = _blob(rng, r, 0.35, 0.3)
        objs.append(
            (
                i,
                SceneObject(
                    "object", _place(rng, _radius([part]), placed, i == 0), (part,), _vivid(rng), rim=_u(rng, 0.15, 0.6)
                ),
            )
        )
    return _photo_bg(rng), objs, ()


_NATURAL = (
    (0.36, 0.42, 0.2),
    (0.58, 0.48, 0.32),
    (0.42, 0.31, 0.2),
    (0.47, 0.46, 0.43),
    (0.24, 0.34, 0.19),
    (0.72, 0.66, 0.53),
    (0.5, 0.38, 0.3),
    (0.3, 0.33, 0.36),
)


def _camouflaged(rng):
    base = np.array(_NATURAL[int(rng.integers(len(_NATURAL)))]) * _u(rng, 0.8, 1.2)
    cols = (tuple(base * _u(rng, 0.4, 0.7)), tuple(np.minimum(base * _u(rng, 1.2, 1.7), 1)))
    bg = Texture(
        cols,
        _seed(rng),
        str(rng.choice(["fbm", "spots", "ridged"], p=[0.6, 0.25, 0.15])),
        _logu(rng, 3, 14),
        _u(rng, 0.62, 0.8),
        _u(rng, 1.5, 3),
        grain=_u(rng, 0.03, 0.08),
        detail=str(rng.choice(DETAILS)),
        detail_amp=_u(rng, 0.1, 0.35),
    )
    n, placed, objs = int(rng.integers(1, 4)), [], []
    for i in range(n):
        part = _blob(rng, _logu(rng, 0.07, 0.28) if i == 0 else _logu(rng, 0.04, 0.2), 0.4, 0.0, 2.2)
        shift = rng.normal(0, 0.035, 3) + _u(rng, -0.06, 0.06)  # subtle colour cue, never zero
        tex = replace(
            bg,
            seed=_seed(rng),
            freq=bg.freq * _u(rng, 0.7, 1.4),
            contrast=bg.contrast * _u(rng, 0.8, 1.2),
            colors=tuple(tuple(np.clip(np.array(c) + shift, 0, 1)) for c in cols),
        )
        objs.append(
            (i, SceneObject("animal", _place(rng, _radius([part]), placed, i == 0), (part,), tex, rim=_u(rng, 0, 0.15)))
        )
    return bg, objs, ()


def _polyline(pts, width):
    return tuple(Capsule(*pts[i], *pts[i + 1], width) for i in range(len(pts) - 1))


def _tree(rng, size):
    segs = []

    def grow(x, y, ang, length, w, depth):
        for _ in range(3):
            ang += float(rng.normal(0, 0.15))
            nx, ny = x + math.cos(ang) * length / 3, y + math.sin(ang) * length / 3
            segs.append(Capsule(x, y, nx, ny, w))
            x, y = nx, ny
        if depth == 0 or w * 0.6 < 0.007 or len(segs) > 150:  # twigs >= 0.007: 0.7 px at 96
            return
        kids = 3 if rng.random() < 0.25 else 2
        spread = _u(rng, 0.3, 0.8)
        for c in range(kids):
            grow(
                x,
                y,
                ang + spread * (c - (kids - 1) / 2) + float(rng.normal(0, 0.1)),
                length * _u(rng, 0.55, 0.72),
                w * _u(rng, 0.5, 0.65),
                depth - 1,
            )

    grow(0.0, 0.0, -math.pi / 2 + float(rng.normal(0, 0.2)), size * 0.5, _u(rng, 0.022, 0.045), 5)
    e = np.array([extent(s) for s in segs])
    mx, my = float(e[:, 0].min() + e[:, 1].max()) / 2, float(e[:, 2].min() + e[:, 3].max()) / 2
    return tuple(Capsule(s.x0 - mx, s.y0 - my, s.x1 - mx, s.y1 - my, s.width) for s in segs)


def _grille(rng, r):
    asp, bar = _logu(rng, 0.7, 1.4), _logu(rng, 0.008, 0.016)
    ang = _u(rng, 0.1, 0.5) * (1 if rng.random() < 0.5 else -1)  # pixel-aligned bars: ties at any size
    rx, ry = r * asp, r / asp
    m, k = max(2, round(1.6 * rx / _u(rng, 0.035, 0.08))), max(2, round(1.6 * ry / _u(rng, 0.035, 0.08)))
    cw, ch = 1.6 * rx / m, 1.6 * ry / k
    hw, hh = (cw - bar) / 2, (ch - bar) / 2
    he = 2.0 if rng.random() < 0.3 else _u(rng, 4, 10)
    c, s = math.cos(ang), math.sin(ang)
    holes = []
    for i in range(m):
        for j in range(k):
            u, v = -0.8 * rx + (i + 0.5) * cw, -0.8 * ry + (j + 0.5) * ch
            holes.append(Star(c * u - s * v, s * u + c * v, math.sqrt(hw * hh), ang, math.sqrt(hw / hh), he))
    return (Star(0.0, 0.0, r, ang, asp, _u(rng, 6, 12), holes=tuple(holes)),)


def _wheel(rng, r):
    rw, sw, n, a0 = r * _u(rng, 0.08, 0.2), _logu(rng, 0.007, 0.014), int(rng.integers(5, 17)), _u(rng, 0, math.pi)
    parts = [Star(0.0, 0.0, r, holes=(Star(0.0, 0.0, r - rw),))]
    for i in range(n):
        a = a0 + 2 * math.pi * i / n
        parts.append(Capsule(0.0, 0.0, math.cos(a) * (r - rw / 2), math.sin(a) * (r - rw / 2), sw))
    parts.append(Star(0.0, 0.0, max(0.15 * r, 1.5 * sw)))
    return tuple(parts)


def _perforated(rng, r):
    outer = _blob(rng, r, 0.15, elong=1.2)
    lim, holes = 0.6 * r, []  # the outer edge is > 0.65 r from the centre whatever its shape
    for _ in range(int(rng.integers(16, 80))):
        hr, rad, a = _logu(rng, 0.004, 0.25 * r), lim * math.sqrt(rng.random()), _u(rng, 0, 2 * math.pi)
        x, y = rad * math.cos(a), rad * math.sin(a)
        if rad + hr < lim and all(math.hypot(x - h.cx, y - h.cy) > hr + h.radius + 0.006 for h in holes):
            holes.append(Star(x, y, hr))  # holes down to 0.008 across: sub-pixel at 96 px
    return (replace(outer, holes=tuple(holes)),)


def _thin(rng):
    if rng.random() < 0.5:
        bg = _photo_bg(rng)
    else:
        h = rng.random()
        bg = Texture(
            (_hsv(h, _u(rng, 0, 0.3), _u(rng, 0.6, 0.85)), _hsv(h, _u(rng, 0, 0.2), _u(rng, 0.85, 1))),
            _seed(rng),
            "fbm",
            _logu(rng, 1.5, 4),
            0.7,
            _u(rng, 0.5, 1.5),
            grain=_u(rng, 0.01, 0.04),
        )
    objs, placed = [], []
    for _ in range(int(rng.integers(1, 5))):  # wires first: behind everything
        ang, off, sag = _u(rng, 0, math.pi), _u(rng, -0.35, 0.35), _u(rng, -0.15, 0.15)
        c, s = math.cos(ang), math.sin(ang)
        pts = [
            (c * t - s * (off + sag * (1 - (t / 0.75) ** 2)), s * t + c * (off + sag * (1 - (t / 0.75) ** 2)))
            for t in np.linspace(-0.75, 0.75, 13)
        ]
        tex = Texture((_hsv(0, 0, _u(rng, 0, 0.2)), _hsv(0, 0, _u(rng, 0.1, 0.35))), _seed(rng), freq=30.0)
        objs.append((None, SceneObject("wire", (0.5, 0.5), _polyline(pts, _logu(rng, 0.0012, 0.004)), tex)))
    kind = str(rng.choice(["tree", "grille", "wheel", "perforated"]))
    r = _logu(rng, 0.2, 0.35) if kind == "tree" else _logu(rng, 0.12, 0.3)
    parts = {"tree": _tree, "grille": _grille, "wheel": _wheel, "perforated": _perforated}[kind](rng, r)
    h = rng.random()
    tex = Texture(
        (_hsv(h, _u(rng, 0, 1), _u(rng, 0.02, 0.3)), _hsv(h, _u(rng, 0, 1), _u(rng, 0.2, 0.6))),
        _seed(rng),
        freq=_logu(rng, 4, 20),
        contrast=_u(rng, 0.5, 1.5),
        grain=0.03,
    )
    rb = _radius(parts)
    solids = [(0, SceneObject(kind, _place(rng, rb, placed, True), parts, tex, rim=_u(rng, 0, 0.3)))]
    for i in range(int(rng.integers(0, 3))):
        part = _blob(rng, _logu(rng, 0.02, 0.08), 0.3, 0.3)
        solids.append((i + 1, SceneObject("object", _place(rng, _radius([part]), placed), (part,), _vivid(rng))))
    return bg, objs + [solids[j] for j in rng.permutation(len(solids))], ()


_SKIN = (
    (0.96, 0.80, 0.69),
    (0.92, 0.72, 0.60),
    (0.85, 0.64, 0.50),
    (0.76, 0.55, 0.42),
    (0.62, 0.44, 0.32),
    (0.45, 0.31, 0.22),
)


def _lesion(rng):
    tone = np.array(_SKIN[int(rng.integers(len(_SKIN)))]) * _u(rng, 0.92, 1.05)
    bg = Texture(
        (tuple(np.clip(tone * (0.9, 0.82, 0.82), 0, 1)), tuple(np.clip(tone * 1.05, 0, 1))),
        _seed(rng),
        "fbm",
        _logu(rng, 1.5, 5),
        0.75,
        _u(rng, 0.6, 1.5),
        grain=_u(rng, 0.01, 0.04),
    )
    dark = np.array((_u(rng, 0.2, 0.45), _u(rng, 0.1, 0.25), _u(rng, 0.05, 0.18)))
    objs, placed = [], []
    for i in range(1 + int(rng.integers(0, 4))):
        r = _logu(rng, 0.08, 0.3) if i == 0 else _logu(rng, 0.01, 0.04)
        part = _blob(rng, r, 0.3 if i == 0 else 0.1, 0.0, 1.4)
        tex = Texture(
            (tuple(dark * _u(rng, 0.4, 0.9)), tuple(np.clip(dark * _u(rng, 1.3, 2.2), 0, 1))),
            _seed(rng),
            str(rng.choice(["fbm", "ridged"])),
            _logu(rng, 6, 25),
            0.7,
            _u(rng, 0.8, 2),
            grain=0.03,
        )
        soft = _logu(rng, 0.002, 0.03) if i == 0 else _logu(rng, 0.001, 0.005)
        objs.append(
            (
                i,
                SceneObject(
                    "lesion" if i == 0 else "mole",
                    _place(rng, _radius([part]), placed, i == 0),
                    (part,),
                    tex,
                    soft,
                    -_u(rng, 0, 0.5),
                ),
            )
        )
    hairs = []
    for _ in range(int(rng.integers(0, 12)) if rng.random() < 0.6 else 0):
        p0, a, ln, bend = rng.uniform(-0.6, 0.6, 2), _u(rng, 0, 2 * math.pi), _u(rng, 0.1, 0.6), _u(rng, -0.8, 0.8)
        pts = [
            (float(p0[0] + ln * t * math.cos(a + bend * t)), float(p0[1] + ln * t * math.sin(a + bend * t)))
            for t in np.linspace(0, 1, 8)
        ]
        tex = Texture(((0.05, 0.03, 0.02), (0.2, 0.12, 0.08)), _seed(rng))
        hairs.append(SceneObject("hair", (0.5, 0.5), _polyline(pts, _logu(rng, 0.0015, 0.004)), tex))
    vignette = _u(rng, 0.3, 0.9) if rng.random() < 0.35 else 0.0
    return bg, objs, tuple(hairs), vignette


def make_scene(seed: int, family: str) -> Scene:
    """The scene of family number `seed` (a non-negative int). Pure function of (seed, family)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"scene seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), FAMILIES.index(family)])
    bg, objs, overlays, *rest = {"salient": _salient, "camouflaged": _camouflaged, "thin": _thin, "lesion": _lesion}[
        family
    ](rng)
    if family in ("salient", "camouflaged"):  # random depth order; the first generated is the target
        objs = [objs[j] for j in rng.permutation(len(objs))]
    target = next(k for k, (tag, _) in enumerate(objs) if tag == 0)
    return Scene(family, int(seed), bg, tuple(o for _, o in objs), target, overlays, rest[0] if rest else 0.0)


# --- benchmark files and CLI ----------------------------------------------------------------------


def scene_seed(seed: int, split: str, index: int) -> int:
    """Scene seed of sample `index` of `split`: injective in (seed, split, index) for the named
    splits train/val/test, so they never share a scene (other split names hash to other codes)."""
    code = {"train": 0, "val": 1, "test": 2}.get(split, 3 + zlib.crc32(split.encode()) % (2**32 - 3))
    return ((int(seed) << 32 | code) << 32) | int(index)


def _random_size(sseed: int, family: str) -> tuple[int, int]:
    rng = np.random.default_rng([sseed, FAMILIES.index(family), 7])
    long = int(round(math.exp(rng.uniform(math.log(96), math.log(2048)))))
    ratio = float(rng.choice([1.0, 1.0, 4 / 3, 3 / 2, 16 / 9, 2.0]))
    short = max(96, int(round(long / ratio)))
    return (long, short) if rng.random() < 0.5 else (short, long)


def write_benchmark(
    out_dir, n_per_family: int, size=None, families=FAMILIES, seed: int = 0, split: str = "test"
) -> Path:
    """Render n_per_family scenes per family into the generic layout:
    out_dir/images/<family>_<split>_<index:04d>.png (RGB) and out_dir/masks/<same stem>.png (0/255
    uint8), plus out_dir/synth.json (per stem: family, scene seed, size, target object).
    size: int (square), (H, W), or None for a per-scene size drawn from 96..2048 px with varied
    aspect ratios. Returns out_dir as a Path."""
    if isinstance(families, str):
        families = tuple(f.strip() for f in families.split(",") if f.strip())
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"unknown families {bad or families}; expected some of {', '.join(FAMILIES)}")
    if int(n_per_family) != n_per_family or n_per_family < 1:
        raise ValueError(f"n_per_family must be a positive integer, got {n_per_family!r}")
    if int(seed) != seed or seed < 0 or not re.fullmatch(r"[\w-]+", split):
        raise ValueError(f"seed must be an integer >= 0 and split a plain name, got {seed!r}, {split!r}")
    if size is not None:
        hw = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if len(hw) != 2 or min(hw) < 16:
            raise ValueError(f"size must be an int or (H, W) of at least 16 px, got {size!r}")
    out = Path(out_dir)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    index = {}
    for family in families:
        for i in range(int(n_per_family)):
            sseed = scene_seed(seed, split, i)
            h, w = hw if size is not None else _random_size(sseed, family)
            scene = make_scene(sseed, family)
            r = render(scene, h, w)
            stem = f"{family}_{split}_{i:04d}"
            Image.fromarray(r.image).save(out / "images" / f"{stem}.png", compress_level=3)
            Image.fromarray(r.mask.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png", compress_level=3)
            index[stem] = {
                "family": family,
                "seed": sseed,
                "height": h,
                "width": w,
                "target": scene.objects[scene.target].name,
            }
    manifest = out / "synth.json"
    old = json.loads(manifest.read_text()) if manifest.is_file() else {}
    manifest.write_text(json.dumps({**old, **index}, indent=1))
    return out
