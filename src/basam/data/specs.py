"""Data specs of `basam eval`, `sweep` and `demo`: a dataset on disk, or the synthetic benchmark
rendered at each resolution. The `synth:` grammar (`synth_families`) is the one training uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from basam.data.datasets import open_dataset
from basam.data.synth import FAMILIES, make_scene, render, scene_seed


def synth_families(text: str) -> tuple[str, ...]:
    """The FAMILIES of `synth[:FAMILIES]`: "" or "all" → every family, else comma-separated names."""
    names = [f.strip() for f in text.split(",") if f.strip()]
    if names in ([], ["all"]):
        return FAMILIES
    if bad := [f for f in names if f not in FAMILIES]:
        raise ValueError(f"synth:{text}: unknown families {bad}; choose from {', '.join(FAMILIES)} or all")
    return tuple(names)


class SynthDataset:
    """Held-out synthetic scenes rendered at size×size on demand: the `synth[:FAMILIES]` data spec.
    Rendering at the evaluated resolution, rather than resizing one file, gives every resolution
    its own detail (thin wires, fine texture), which is the point of a resolution sweep."""

    layout = "synth"

    def __init__(self, families: tuple[str, ...], n_per_family: int, size: int, split: str = "test", seed: int = 0):
        self.name, self.split, self.problems = f"synth-{split}@{size}", split, []
        self.samples = [
            _SynthSample(f"{fam}_{split}_{i:04d}", fam, scene_seed(seed, split, i), size)
            for fam in families
            for i in range(n_per_family)
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "layout": "synth",
            "split": self.split,
            "samples": len(self),
            "problems": 0,
            "problem_list": [],
        }


@dataclass
class _SynthSample:
    name: str
    family: str
    seed: int
    size: int
    box = None

    def load(self):
        scene = render(make_scene(self.seed, self.family), self.size, self.size)
        return scene.image, scene.mask.astype(np.uint8) * 255


def is_synth(spec: str) -> bool:
    return spec.partition(":")[0] == "synth"


def open_eval_data(spec: str, split: str | None, size, n_per_family: int = 10):
    """A dataset from disk (any reader layout), or `synth[:FAMILIES]` rendered at `size` (square)."""
    layout, _, rest = spec.partition(":")
    if layout != "synth":
        dataset = open_dataset(spec, split)
        if len(dataset) == 0:
            raise ValueError(
                f"{spec}: no image/mask pairs found ({len(dataset.problems)} problems: "
                f"{'; '.join(f'{n}: {r}' for n, r in dataset.problems[:3])})"
            )
        return dataset
    families = synth_families(rest)
    if not isinstance(size, int):
        raise ValueError(f"synthetic data is rendered at a size N (square): give N or --render-size, not {size}")
    return SynthDataset(families, n_per_family, size, split or "test")
