"""Resolution-independent textures for the synthetic benchmark (`basam.data.synth`).

Coordinates. Pixel (row i, col j) of an H×W render sits at scene coordinates
    x = (j + 0.5 - W/2) / L,   y = (i + 0.5 - H/2) / L,   L = min(H, W)
so one scene unit is the short side and (0, 0) is the image centre. Everything here is a function
of these continuous coordinates, never of the pixel grid, except two deliberate detail layers:
    * procedural noise adds octaves up to the pixel frequency, so a 2048 px render has finer
      texture than a 512 px one instead of a blurred upscale of it;
    * photo "detail" tiles (skimage's grass, gravel, brick, moon) repeat at their own pixel
      scale: the period in output pixels is constant, more repeats at larger sizes.
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
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg",
          "ihc.png", "motorcycle_left.png", "camera.png", "coins.png", "moon.png")
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
    tx, ty = u - i0, v - j0
    wx = tx * tx * tx * (tx * (tx * 6 - 15) + 10)
    wy = ty * ty * ty * (ty * (ty * 6 - 15) + 10)
    i0, j0 = i0.astype(np.int64), j0.astype(np.int64)
    ilo, jlo = int(i0.min()), int(j0.min())
    ang = _lattice(np.arange(ilo, int(i0.max()) + 2), np.arange(jlo, int(j0.max()) + 2), seed)
    ang *= np.float32(math.pi)
    gx, gy = np.cos(ang), np.sin(ang)                  # (nj, ni) unit gradients
    ci, cj = i0 - ilo, j0 - jlo
    A = gx[:, ci] * ((1 - wx) * tx) + gx[:, ci + 1] * (wx * (tx - 1))   # (nj, w)
    B = gy[:, ci] * (1 - wx) + gy[:, ci + 1] * wx
    wy0, wy1 = (1 - wy)[:, None], wy[:, None]
    return A[cj] * wy0 + A[cj + 1] * wy1 + B[cj] * (wy0 * ty[:, None]) + B[cj + 1] * (wy1 * (ty - 1)[:, None])


def fbm(xs, ys, L: int, seed: int, freq: float, persistence: float) -> np.ndarray:
    """Fractal noise at scene coordinates xs (w,), ys (h,) -> (h, w) float32, about zero-mean,
    std ≈ 0.15. Octave k has freq·2^k cells per unit; it fades in between 2 and 4 px per cell, so
    the octaves a render shows depend on its size but each octave's values do not. Normalised by
    the full series (not by the octaves shown) so coarse content is identical across sizes."""
    out = np.zeros((len(ys), len(xs)), np.float32)
    norm = sum(persistence ** k for k in range(_KMAX))
    for k in range(_KMAX):
        f = freq * 2.0 ** k
        w = min(1.0, math.log2(L / f) - 1.0)
        if w <= 0:
            break
        n = _perlin(xs * np.float32(f), ys * np.float32(f), _mix32(seed, k))
        out += np.float32(1.6 * w * persistence ** k / norm) * n  # 1.6: std of the sum ≈ 0.15
    return out


# --- photos and detail tiles --------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
def _detail(name: str) -> np.ndarray:
    """High-pass luminance of a texture photo, (h, w) float32 in [-1, 1], zero mean: the fine
    structure only, so it modulates any colour without shifting it."""
    g = _pyramid(name)[0].mean(axis=2)
    hp = g - ndimage.gaussian_filter(g, 6.0)
    return np.clip(hp / (3.0 * hp.std() + 1e-6), -1.0, 1.0).astype(np.float32)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror-tiling indices: seamless repeats of any image."""
    m = idx % (2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def _tile(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """img tiled at its own pixel scale, sampled at absolute pixel rows (h,), cols (w,)."""
    return img[np.ix_(_mirror(rows, img.shape[0]), _mirror(cols, img.shape[1]))]


def _bilinear(img: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """img (h, w, C) at pixel-centre coordinates py (H,), px (W,) -> (H, W, C), edges clamped."""
    h, w = img.shape[:2]
    py = np.clip(py, 0, h - 1)
    px = np.clip(px, 0, w - 1)
    y0 = np.minimum(py.astype(np.int64), h - 2 if h > 1 else 0)
    x0 = np.minimum(px.astype(np.int64), w - 2 if w > 1 else 0)
    ty, tx = (py - y0)[:, None, None], (px - x0)[None, :, None]
    lo, hi = int(y0.min()), int(y0.max()) + 2            # only the photo rows this crop needs
    sub = img[lo:hi]
    A = sub[:, x0] * (1 - tx) + sub[:, np.minimum(x0 + 1, w - 1)] * tx
    y0 = y0 - lo
    return A[y0] * (1 - ty) + A[np.minimum(y0 + 1, A.shape[0] - 1)] * ty


def _photo_cover(name: str, zoom: float, offset, fr: Frame, rs: slice, cs: slice) -> np.ndarray:
    """The photo scaled to cover the whole image (like CSS background-size: cover), zoomed in by
    `zoom` >= 1 with the crop placed by offset in [0, 1]^2; -> (h, w, 3)."""
    levels = _pyramid(name)
    ph, pw = levels[0].shape[:2]
    k = min(pw * fr.L / fr.W, ph * fr.L / fr.H) / zoom          # photo px per scene unit
    cx = fr.W / fr.L * k / 2 + offset[0] * (pw - fr.W / fr.L * k)
    cy = fr.H / fr.L * k / 2 + offset[1] * (ph - fr.H / fr.L * k)
    lv = int(min(len(levels) - 1, max(0, math.floor(math.log2(max(k / fr.L, 1e-9))))))
    s = 2.0 ** lv
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
    freq: float = 4.0            # cells per scene unit of the coarsest octave (stripes: periods)
    persistence: float = 0.7
    contrast: float = 2.0
    angle: float = 0.0           # stripes
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
        elif p == "ridged":   # bright lines along the zero set of the noise, width set in units
            t = 1.0 - 4.0 * tex.contrast * np.abs(n)
        elif p == "spots":    # near-binary blotches; the edge width is in units, not pixels
            t = 0.5 + 8.0 * tex.contrast * n
        elif p == "stripes":
            c, s = math.cos(tex.angle), math.sin(tex.angle)
            phase = (xs[None, :] * c + ys[:, None] * s) * tex.freq + tex.contrast * n
            t = 0.5 + 0.5 * np.sin(np.float32(2 * math.pi) * phase)
        else:
            raise ValueError(f"unknown texture pattern {p!r}; expected one of {PATTERNS}")
        c0 = np.asarray(tex.colors[0], np.float32)
        c1 = np.asarray(tex.colors[1], np.float32)
        rgb = c0 + (c1 - c0) * np.clip(t, 0.0, 1.0)[..., None]
    if tex.grain:
        g = fbm(xs, ys, fr.L, _mix32(tex.seed, 2), tex.freq * 8.0, 0.85)
        rgb = rgb * (1.0 + np.float32(4.0 * tex.grain) * g)[..., None]
    if tex.detail and tex.detail_amp:
        o = _mix32(tex.seed, 3)
        d = _tile(_detail(tex.detail), rows + (o & 0xFFF), cols + (o >> 12 & 0xFFF))
        rgb = rgb * (1.0 + np.float32(tex.detail_amp) * d)[..., None]
    return rgb.astype(np.float32, copy=False)
