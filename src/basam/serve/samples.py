"""The page's bundled sample images: the photo shipped in assets/ and held-out synthetic scenes
(basam.data.synth) of the kind the embedded model was trained on, rendered on first use."""

from __future__ import annotations

import functools
import io

from PIL import Image

from basam.data.synth import make_scene, render, scene_seed
from basam.formats.checkpoint import ASSETS

# name → (family, height, width) for synthetic scenes; None for the shipped photo
SAMPLES = {
    "salient scene": ("salient", 384, 512),
    "lesion scene": ("lesion", 384, 384),
    "camouflaged scene": ("camouflaged", 512, 512),
    "astronaut photo": None,
}


def sample_scene(name: str):
    """The synthetic scene behind a sample (a RenderedScene with its masks), for tests."""
    family, h, w = SAMPLES[name]
    return render(make_scene(scene_seed(0, "serve", 0), family), h, w)


@functools.cache
def render_sample(name: str) -> bytes:
    """The sample's encoded file bytes (what an upload of it would send)."""
    if SAMPLES[name] is None:
        return (ASSETS / "sample.jpg").read_bytes()
    buf = io.BytesIO()
    Image.fromarray(sample_scene(name).image).save(buf, format="PNG")
    return buf.getvalue()
