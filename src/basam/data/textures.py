"""Drawing layer of the synthetic benchmark (`basam.data.synth`): textures, shapes, objects.

Coordinates. Pixel (row i, col j) of an H×W render sits at scene coordinates
    x = (j + 0.5 - W/2) / L,   y = (i + 0.5 - H/2) / L,   L = min(H, W)
so one scene unit is the short side and (0, 0) is the image centre. Shapes and textures are
functions of these continuous coordinates, never of the pixel grid, except two detail layers:
    * procedural noise adds octaves up to the pixel frequency, so a 2048 px render has finer
      texture than a 512 px one instead of a blurred upscale of it;
    * photo "detail" tiles (skimage's grass, gravel, brick, moon) repeat at their own pixel
      scale: the period in output pixels is constant, more repeats at larger sizes.
Coverage is analytic: signed distance to the edge + the exact area of a unit pixel behind a
straight edge (or inside a strip, for wires), so masks agree across sizes and a 0.3 px wire has
coverage 0.3, visible in the image but below the 0.5 of the binary mask.
Only images that ship inside the scikit-image wheel are read (no pooch download).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

# Colour photos (and a few grey ones) used as backgrounds; all in skimage/data/ of the wheel.
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "camera.png",
    "coins.png",
    "moon.png",
)
DETAILS = ("grass.png", "gravel.png", "brick.png", "moon.png")
PATTERNS = ("fbm", "ridged", "spots", "stripes", "photo", "tile")
_KMAX = 12  # octave cap: freq·2^11 cells per unit is finer than a pixel at 2048 px


class Frame(NamedTuple):
    """Pixel-centre scene coordinates of one render: xs (W,), ys (H,) float32."""

    H: int
    W: int
    L: int
    xs: np.ndarray
    ys: np.ndarray


def make_frame(height: int, width: int) -> Frame:
    L = min(height, width)
    xs = ((np.arange(width) + 0.5 - width / 2) / L).astype(np.float32)
    ys = ((np.arange(height) + 0.5 - height / 2) / L).astype(np.float32)
    return Frame(height, width, L, xs, ys)


# --- noise ----------------------------------------------------------------------------------------


def _mix32(*values: int) -> int:
    """Deterministic 32-bit hash of Python ints (Python's hash() is salted per process)."""
    h = 0x811C9DC5
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0x5BD1E995) & 0xFFFFFFFF
        h ^= h >> 15
    return h


def _lattice(ii: np.ndarray, jj: np.ndarray, seed: int) -> np.ndarray:
    """Hash of integer lattice points -> (len(jj), len(ii)) float32 uniform in [-1, 1).
    A pure function of (i, j, seed), so any crop of the plane gets the same values."""
    u32 = np.uint32
    h = (ii.astype(u32)[None, :] * u32(0x9E3779B1)) ^ (jj.astype(u32)[:, None] * u32(0x85EBCA77))
    h ^= u32(seed)
    h ^= h >> u32(15)
    h *= u32(0x2C1B3C6D)
    h ^= h >> u32(12)
    h *= u32(0x297A2D39)
    h ^= h >> u32(15)
    return (h >> u32(8)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - np.float32(1.0)


def _perlin(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Gradient (Perlin) noise at lattice coordinates u (w,), v (h,) -> (h, w) float32, std ~0.2.
    Each corner term g·(p - corner)·fade is a sum of two separable products, so the plane is
    built by 1-D interpolations along x then y (cheap) with no axis-aligned value blocks."""
    i0, j0 = np.floor(u), np.floor(v)
    tx, ty = u - i0, v - j0  # position in the cell; wx, wy: quintic fade weights
    wx = tx * tx * tx * (tx * (tx * 6 - 15) + 10)
    wy = ty * ty * ty * (ty * (ty * 6 - 15) + 10)
    i0, j0 = i0.astype(np.int64), j0.astype(np.int64)
    ilo, jlo = int(i0.min()), int(j0.min())
    ang = _lattice(np.arange(ilo, int(i0.max()) + 2), np.arange(jlo, int(j0.max()) + 2), seed)
    ang *= np.float32(math.pi)
    gx, gy = np.cos(ang), np.sin(ang)  # (nj, ni) unit gradients
    ci, cj = i0 - ilo, j0 - jlo
    A = gx[:, ci] * ((1 - wx) * tx) + gx[:, ci + 1] * (wx * (tx - 1))  # (nj, w)
    B = gy[:, ci] * (1 - wx) + gy[:, ci + 1] * wx
    wy0, wy1 = (1 - wy)[:, None], wy[:, None]
    return A[cj] * wy0 + A[cj + 1] * wy1 + B[cj] * (wy0 * ty[:, None]) + B[cj + 1] * (wy1 * (ty - 1)[:, None])


def fbm(xs, ys, L: int, seed: int, freq: float, persistence: float) -> np.ndarray:
    """Fractal noise at scene coordinates xs (w,), ys (h,) -> (h, w) float32, about zero-mean,
    std ≈ 0.15. Octave k has freq·2^k cells per unit; it fades in between 2 and 4 px per cell, so
    the octaves a render shows depend on its size but each octave's values do not. Normalised by
    the full series (not by the octaves shown) so coarse content is identical across sizes."""
    out = np.zeros((len(ys), len(xs)), np.float32)
    norm = sum(persistence**k for k in range(_KMAX))
    for k in range(_KMAX):
        f = freq * 2.0**k
        w = min(1.0, math.log2(L / f) - 1.0)
        if w <= 0:
            break
        n = _perlin(xs * np.float32(f), ys * np.float32(f), _mix32(seed, k))
        out += np.float32(1.6 * w * persistence**k / norm) * n  # 1.6: std of the sum ≈ 0.15
    return out


# --- photos and detail tiles --------------------------------------------------------------------


@functools.cache
def _pyramid(name: str) -> tuple[np.ndarray, ...]:
    """A shipped skimage photo as float32 RGB in [0, 1]: (h, w, 3) levels, each 2x smaller,
    so downsampled renders read a prefiltered level instead of aliasing."""
    path = importlib.resources.files("skimage") / "data" / name
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), np.float32) / 255.0
    levels = [a]
    while min(levels[-1].shape[:2]) >= 64:
        b = levels[-1]
        h, w = b.shape[0] // 2 * 2, b.shape[1] // 2 * 2
        levels.append(0.25 * (b[0:h:2, 0:w:2] + b[1:h:2, 0:w:2] + b[0:h:2, 1:w:2] + b[1:h:2, 1:w:2]))
    return tuple(levels)


@functools.cache
def _detail(name: str) -> np.ndarray:
    """High-pass luminance of a texture photo, (h, w) float32 in [-1, 1], zero mean: the fine
    structure only, so it modulates any colour without shifting it."""
    g = _pyramid(name)[0].mean(axis=2)
    hp = g - ndimage.gaussian_filter(g, 6.0)
    return np.clip(hp / (3.0 * hp.std() + 1e-6), -1.0, 1.0).astype(np.float32)


def _tile(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """img mirror-tiled (seamless) at its own pixel scale, at absolute pixel rows (h,), cols (w,)."""
    (h, w), r, c = img.shape[:2], rows % (2 * img.shape[0]), cols % (2 * img.shape[1])
    return img[np.ix_(np.where(r < h, r, 2 * h - 1 - r), np.where(c < w, c, 2 * w - 1 - c))]


def _bilinear(img: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """img (h, w, C) at pixel-centre coordinates py (H,), px (W,) -> (H, W, C), edges clamped."""
    h, w = img.shape[:2]
    py, px = np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)
    y0 = np.minimum(py.astype(np.int64), h - 2 if h > 1 else 0)
    x0 = np.minimum(px.astype(np.int64), w - 2 if w > 1 else 0)
    ty = (py - y0).astype(np.float32)[:, None, None]
    tx = (px - x0).astype(np.float32)[None, :, None]
    lo, hi = int(y0.min()), int(y0.max()) + 2  # only the photo rows this crop needs
    sub = img[lo:hi]
    A = sub[:, x0]
    A += (sub[:, np.minimum(x0 + 1, w - 1)] - A) * tx
    y0 = y0 - lo
    out = A[y0]
    out += (A[np.minimum(y0 + 1, A.shape[0] - 1)] - out) * ty
    return out


def _photo_cover(name: str, zoom: float, offset, fr: Frame, rs: slice, cs: slice) -> np.ndarray:
    """The photo scaled to cover the whole image (like CSS background-size: cover), zoomed in by
    `zoom` >= 1 with the crop placed by offset in [0, 1]^2; -> (h, w, 3)."""
    levels = _pyramid(name)
    ph, pw = levels[0].shape[:2]
    k = min(pw * fr.L / fr.W, ph * fr.L / fr.H) / zoom  # photo px per scene unit
    cx = fr.W / fr.L * k / 2 + offset[0] * (pw - fr.W / fr.L * k)
    cy = fr.H / fr.L * k / 2 + offset[1] * (ph - fr.H / fr.L * k)
    lv = int(min(len(levels) - 1, max(0, math.floor(math.log2(max(k / fr.L, 1e-9))))))
    s = 2.0**lv
    px = (cx + fr.xs[cs] * k) / s - 0.5
    py = (cy + fr.ys[rs] * k) / s - 0.5
    return _bilinear(levels[lv], py, px)


# --- textures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Texture:
    """A colour texture defined in scene units (see module docstring).

    pattern: fbm | ridged (vein network) | spots | stripes | photo (covering photo) | tile (photo
    repeated at its pixel scale). The noise patterns map a value t in [0, 1] onto the ramp
    colors[0] -> colors[1] (RGB in [0, 1]); photo patterns ignore colors. grain: amplitude of a
    second, fine, multiplicative fBm; detail/detail_amp: a high-pass texture tile multiplied in.
    """

    colors: tuple = ((0.2, 0.2, 0.2), (0.8, 0.8, 0.8))
    seed: int = 0
    pattern: str = "fbm"
    freq: float = 4.0  # cells per scene unit of the coarsest octave (stripes: periods)
    persistence: float = 0.7
    contrast: float = 2.0
    angle: float = 0.0  # stripes
    photo: str = ""
    zoom: float = 1.0
    offset: tuple = (0.5, 0.5)
    grain: float = 0.0
    detail: str = ""
    detail_amp: float = 0.0


def render_texture(tex: Texture, fr: Frame, rs: slice, cs: slice) -> np.ndarray:
    """The texture on the pixel block rows rs × cols cs of frame fr -> (h, w, 3) float32."""
    xs, ys = fr.xs[cs], fr.ys[rs]
    rows = np.arange(rs.start, rs.stop)
    cols = np.arange(cs.start, cs.stop)
    p = tex.pattern
    if p == "photo":
        rgb = _photo_cover(tex.photo, tex.zoom, tex.offset, fr, rs, cs)
    elif p == "tile":
        o = _mix32(tex.seed, 1)
        rgb = _tile(_pyramid(tex.photo)[0], rows + (o & 0xFFF), cols + (o >> 12 & 0xFFF))
    else:
        n = fbm(xs, ys, fr.L, tex.seed, tex.freq, tex.persistence)
        if p == "fbm":
            t = 0.5 + tex.contrast * n
        elif p == "ridged":  # bright lines along the zero set of the noise, width set in units
            t = 1.0 - 4.0 * tex.contrast * np.abs(n)
        elif p == "spots":  # near-binary blotches; the edge width is in units, not pixels
            t = 0.5 + 8.0 * tex.contrast * n
        elif p == "stripes":
            c, s = math.cos(tex.angle), math.sin(tex.angle)
            phase = (xs[None, :] * c + ys[:, None] * s) * tex.freq + tex.contrast * n
            t = 0.5 + 0.5 * np.sin(np.float32(2 * math.pi) * phase)
        else:
            raise ValueError(f"unknown texture pattern {p!r}; expected one of {PATTERNS}")
        c0, c1 = np.asarray(tex.colors[0], np.float32), np.asarray(tex.colors[1], np.float32)
        rgb = c0 + (c1 - c0) * np.clip(t, 0.0, 1.0)[..., None]
    if tex.grain:
        g = fbm(xs, ys, fr.L, _mix32(tex.seed, 2), tex.freq * 8.0, 0.85)
        rgb = rgb * (1.0 + np.float32(4.0 * tex.grain) * g)[..., None]
    if tex.detail and tex.detail_amp:
        o = _mix32(tex.seed, 3)
        d = _tile(_detail(tex.detail), rows + (o & 0xFFF), cols + (o >> 12 & 0xFFF))
        rgb = rgb * (1.0 + np.float32(tex.detail_amp) * d)[..., None]
    return rgb.astype(np.float32, copy=False)


# --- shapes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Star:
    """Star-shaped primitive: superellipse (exponent) or regular polygon (sides >= 3), scaled by
    aspect, rotated by angle, radius modulated by (1 + Σ amp·cos(k·θ + phase)) for k, amp, phase in
    harmonics; holes (Stars) are subtracted. Units: scene units relative to the object anchor."""

    cx: float
    cy: float
    radius: float
    angle: float = 0.0
    aspect: float = 1.0
    exponent: float = 2.0
    sides: int = 0
    harmonics: tuple = ()
    holes: tuple = ()


@dataclass(frozen=True)
class Capsule:
    """Segment (x0, y0)-(x1, y1) with round caps and a width in scene units."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: float


def extent(p) -> tuple[float, float, float, float]:
    """Conservative (xmin, xmax, ymin, ymax) of a primitive, scene units."""
    if isinstance(p, Capsule):
        h = p.width / 2
        return min(p.x0, p.x1) - h, max(p.x0, p.x1) + h, min(p.y0, p.y1) - h, max(p.y0, p.y1) + h
    r = p.radius * max(p.aspect, 1 / p.aspect) * (2.0 if p.sides == 3 else 1.45)
    r *= 1 + sum(abs(a) for _, a, _ in p.harmonics)
    return p.cx - r, p.cx + r, p.cy - r, p.cy + r


def _halfplane(t, a, b):
    """Area of a unit pixel on the inner side of a straight edge whose line lies t px beyond the
    pixel centre (t > 0: centre inside); a >= b are the sorted |components| of the edge normal.
    The projection of a unit square on the normal is a trapezoid, so the area is its CDF."""
    b = np.maximum(b, 0.02)  # keeps the division finite; a >= sqrt(1/2) anyway
    a = np.maximum(a, b)
    u = np.clip(t + 0.5 * (a + b), 0.0, a + b)
    ab2 = 2 * a * b
    return np.where(u < b, u * u / ab2, np.where(u > a, 1 - (a + b - u) ** 2 / ab2, (u - 0.5 * b) / a))


def _window(xs, ys, ext, L, pad_px=2.0):
    """Index slices (rows, cols) of the grid xs (w,), ys (h,) covering extent ext plus a margin."""
    pad = pad_px / L
    c0, c1 = np.searchsorted(xs, [ext[0] - pad, ext[1] + pad])
    r0, r1 = np.searchsorted(ys, [ext[2] - pad, ext[3] + pad])
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def _star(p: Star, xs, ys, L):
    """Coverage (h, w) in [0, 1] and signed distance (h, w) in px (< 0 inside) of a Star."""
    dx, dy = xs[None, :] - p.cx, ys[:, None] - p.cy
    c, s = math.cos(p.angle), math.sin(p.angle)
    u = (c * dx + s * dy) / (p.radius * p.aspect)
    v = (c * dy - s * dx) * (p.aspect / p.radius)
    rho, th = np.hypot(u, v), np.arctan2(v, u)
    if p.sides >= 3:
        seg = 2 * math.pi / p.sides
        rr = math.cos(seg / 2) / np.cos(np.mod(th, seg) - seg / 2)
    elif p.exponent != 2.0:
        rr = (np.abs(np.cos(th)) ** p.exponent + np.abs(np.sin(th)) ** p.exponent) ** (-1 / p.exponent)
    else:
        rr = 1.0
    if p.harmonics:
        rr = rr * (1 + sum(a * np.cos(k * th + ph) for k, a, ph in p.harmonics))
    f = ((rho - rr) * (p.radius * L)).astype(np.float32)
    # f is an implicit function, not a distance: normalise by its pixel gradient (first-order
    # distance near the edge, which is all the coverage needs) and read the edge normal from it.
    gy = np.gradient(f, axis=0) if f.shape[0] > 1 else np.zeros_like(f)
    gx = np.gradient(f, axis=1) if f.shape[1] > 1 else np.zeros_like(f)
    g = np.hypot(gx, gy) + 1e-6
    d = f / g
    ax, ay = np.abs(gx) / g, np.abs(gy) / g
    cov = _halfplane(-d, np.maximum(ax, ay), np.minimum(ax, ay))
    for hole in p.holes:  # disjoint holes: subtracting areas is exact, thin bars stay thin
        rs, cs = _window(xs, ys, extent(hole), L)
        if rs.stop > rs.start and cs.stop > cs.start:
            hc, hd = _star(hole, xs[cs], ys[rs], L)
            cov[rs, cs] -= hc
            d[rs, cs] = np.maximum(d[rs, cs], -hd)
    return np.clip(cov, 0.0, 1.0), d


def _capsule(p: Capsule, xs, ys, L):
    """Coverage and signed distance (px) of a capsule: the exact area of a pixel inside a strip,
    so a 0.3 px wire has coverage <= 0.3 (absent from the binary mask) but still shows."""
    ex, ey = p.x1 - p.x0, p.y1 - p.y0
    l2 = ex * ex + ey * ey + 1e-12
    px, py = xs[None, :] - p.x0, ys[:, None] - p.y0
    t = np.clip((px * ex + py * ey) / l2, 0.0, 1.0)
    dist = np.hypot(px - t * ex, py - t * ey) * L
    a, b = abs(ey) / math.sqrt(l2), abs(ex) / math.sqrt(l2)
    a, b = max(a, b), min(a, b)
    r = p.width * L / 2
    return _halfplane(r - dist, a, b) - _halfplane(-r - dist, a, b), dist - r


# --- objects -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One object: union of parts (Stars, Capsules) placed at anchor, a fraction (x, y) of the
    image width and height. softness (scene units) blurs its drawn edge only (the mask keeps the
    coverage >= 0.5 boundary); rim darkens (or, < 0, lightens) it towards its edge."""

    name: str
    anchor: tuple
    parts: tuple
    texture: Texture
    softness: float = 0.0
    rim: float = 0.0


def object_layer(obj: SceneObject, fr: Frame):
    """-> (rows, cols, coverage, alpha, colour) on the object's pixel box, or None if off-image."""
    ax, ay = (obj.anchor[0] - 0.5) * fr.W / fr.L, (obj.anchor[1] - 0.5) * fr.H / fr.L
    xs, ys = fr.xs - np.float32(ax), fr.ys - np.float32(ay)
    exts = [extent(p) for p in obj.parts]
    ext = (min(e[0] for e in exts), max(e[1] for e in exts), min(e[2] for e in exts), max(e[3] for e in exts))
    rs, cs = _window(xs, ys, ext, fr.L, 2.0 + 2.5 * obj.softness * fr.L)
    if rs.stop <= rs.start or cs.stop <= cs.start:
        return None
    cov = np.zeros((rs.stop - rs.start, cs.stop - cs.start), np.float32)
    d = np.full(cov.shape, 1e4, np.float32)
    for p, e in zip(obj.parts, exts):  # each part on its own box (a tree is 100 small capsules)
        prs, pcs = _window(xs[cs], ys[rs], e, fr.L, 2.0 + 2.5 * obj.softness * fr.L)
        if prs.stop <= prs.start or pcs.stop <= pcs.start:
            continue
        fn = _capsule if isinstance(p, Capsule) else _star
        pc, pd = fn(p, xs[cs][pcs], ys[rs][prs], fr.L)
        np.maximum(cov[prs, pcs], pc, out=cov[prs, pcs])
        np.minimum(d[prs, pcs], pd, out=d[prs, pcs])
    alpha = cov
    if obj.softness > 0:  # smoothstep across the edge, 0.5 exactly on it
        s = np.clip(0.5 - d / (2 * obj.softness * fr.L), 0, 1)
        alpha = s * s * (3 - 2 * s)
    rgb = render_texture(obj.texture, fr, rs, cs)
    if obj.rim:
        width = 0.15 * max(ext[1] - ext[0], ext[3] - ext[2]) * fr.L
        rgb = rgb * (1 - obj.rim * np.exp(np.minimum(d, 0) / width))[..., None]
    return rs, cs, cov, alpha, rgb
