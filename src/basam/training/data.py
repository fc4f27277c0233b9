"""Training data: sources (any reader, or the synthetic benchmark on the fly), a weighted mixture
sampler, augmentations, prompt sampling, batch collation, and the validation set and metrics
(`validate`). The loss is in `basam.training.loss`.

Everything is a pure function of (seed, step, position in the global batch): the data position
of a run is just its step, a resumed run sees exactly the batches it would have seen, and a rank
of a distributed run takes its slice of the same global batch a single process would build.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from basam.data.datasets import SampleError, open_dataset
from basam.data.prompts import KINDS, sample_prompt
from basam.data.synth import FAMILIES, make_scene, render, scene_seed
from basam.inference.transforms import (
    boxes_to_model,
    coords_to_model,
    model_input_size,
    normalize_and_pad,
    resize_image,
)

SYNTH_SEED = 0  # the benchmark's scene-set seed: train/val/test scenes are disjoint under it
_ASPECTS = (1.0, 1.0, 4 / 3, 3 / 2, 16 / 9)


def parse_data(specs: list[str] | str) -> list[tuple[str, float]]:
    """ "LAYOUT:PATH[@w][,LAYOUT:PATH[@w]…]" (or several strings) → [(spec, weight)].

    `synth:FAMILY[,FAMILY…]` takes the comma-separated family names that follow it
    (`synth:salient,thin,duts:/data/DUTS@2` is two sources); `synth:all` is every family.
    """
    out: list[tuple[str, float]] = []
    for text in [specs] if isinstance(specs, str) else specs:
        for token in filter(None, (t.strip() for t in str(text).split(","))):
            body, weight = _split_weight(token)
            if out and out[-1][0].startswith("synth:") and (body in FAMILIES or body == "all"):
                spec, previous = out.pop()  # another family of the synth spec before it
                out.append((f"{spec},{body}", previous if weight is None else weight))
            else:
                out.append((body, 1.0 if weight is None else weight))
    if not out:
        raise ValueError("--data: no dataset given (LAYOUT:PATH or synth:FAMILIES)")
    return out


def _split_weight(token: str) -> tuple[str, float | None]:
    """ "spec@2.5" → ("spec", 2.5); no "@NUMBER" suffix → (token, None)."""
    body, at, text = token.rpartition("@")
    try:
        weight = float(text) if at else None
    except ValueError:
        return token, None
    if weight is not None and not weight > 0:
        raise ValueError(f"--data {token}: the weight after @ must be > 0")
    return (body, weight) if at else (token, None)


class SynthSource:
    """The synthetic benchmark as an endless dataset: sample i is family i mod F, scene i div F of
    `split`, rendered with its long side at the requested resolution."""

    def __init__(self, families: str, split: str):
        from basam.data.specs import synth_families

        names = synth_families(families)
        self.families, self.split = names, split
        self.name = f"synth:{','.join(names)}:{split}"
        self.size = None  # endless

    def load(self, index: int, long_side: int) -> tuple[str, np.ndarray, np.ndarray]:
        """→ (name, image uint8 (H, W, 3), gt uint8 (H, W) 0/255): the scene's target object."""
        name, r = self._render(index, long_side)
        return name, r.image, r.mask.astype(np.uint8) * 255

    def load_objects(self, index: int, long_side: int) -> tuple[str, np.ndarray, np.ndarray, int]:
        """→ (name, image uint8 (H, W, 3), masks uint8 (K, H, W) 0/255, the visible part of each
        object, target index)."""
        name, r = self._render(index, long_side)
        return name, r.image, r.masks.astype(np.uint8) * 255, r.target

    def _render(self, index: int, long_side: int):
        family = self.families[index % len(self.families)]
        number = index // len(self.families)
        sseed = scene_seed(SYNTH_SEED, self.split, number)
        rng = np.random.default_rng([sseed, 11])
        ratio = float(rng.choice(_ASPECTS))
        short = max(16, int(round(long_side / ratio)))
        h, w = (long_side, short) if rng.random() < 0.5 else (short, long_side)
        return f"{family}_{self.split}_{number:06d}", render(make_scene(sseed, family), h, w)


def pick_object(masks: np.ndarray, target: int, rng: np.random.Generator, any_object: float) -> int:
    """With probability any_object, one of the scene's visible objects uniformly (the target
    included), else the target: SAM is prompted on every object, the benchmark on the target."""
    visible = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    if len(visible) and rng.random() < any_object:
        return int(rng.choice(visible))
    return target


class DatasetSource:
    """A dataset opened by any reader of `basam.data.datasets`. flat_ok: a generic folder without
    split subfolders (images/ + masks/ directly) is taken whole as this split."""

    def __init__(self, spec: str, split: str, flat_ok: bool = True):
        try:
            self.dataset = open_dataset(spec, split)
        except ValueError as e:
            whole = open_dataset(spec, None) if flat_ok else None
            if whole is None or whole.layout != "generic" or whole.split is not None:
                raise e from None
            self.dataset = whole
        if not len(self.dataset):
            raise ValueError(
                f"dataset {spec} (split {split}) has no usable sample"
                + (f"; first problem: {self.dataset.problems[0]}" if self.dataset.problems else "")
            )
        self.name, self.size = f"{self.dataset.name}", len(self.dataset)

    def load(self, index: int, long_side: int) -> tuple[str, np.ndarray, np.ndarray]:
        # A file that breaks after opening is skipped for the next one: deterministic, and reported.
        for k in range(self.size):
            sample = self.dataset[(index + k) % self.size]
            try:
                image, gt = sample.load()
                return sample.name, image, gt
            except SampleError as e:
                warnings.warn(f"skipping unreadable training sample {e}", stacklevel=2)
        raise ValueError(f"no sample of {self.name} can be read")


def open_source(spec: str, split: str, flat_ok: bool = True):
    if spec.startswith("synth:"):
        return SynthSource(spec[len("synth:") :], split)
    return DatasetSource(spec, split, flat_ok)


class MixtureSampler:
    """Draws (source, sample index) pairs: the source with probability weight/Σweights, then a
    sample uniformly (endless sources: any index < 2³¹). Pure function of (seed, step)."""

    def __init__(self, sizes: list[int | None], weights: list[float], seed: int):
        self.sizes, self.seed = sizes, seed
        w = np.asarray(weights, dtype=np.float64)
        self.p = w / w.sum()

    def draw(self, step: int, n: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step, 0])
        which = rng.choice(len(self.p), size=n, p=self.p)
        return [(int(s), int(rng.integers(self.sizes[s] or 2**31))) for s in which]


def augment(image: np.ndarray, gt: np.ndarray, rng: np.random.Generator, flip: bool, min_scale: float):
    """Random horizontal flip and scale-crop (a random window of side fraction U(min_scale, 1)),
    the same on image (H, W, 3) and gt (H, W). A crop that would lose the whole object is not made."""
    if flip and rng.random() < 0.5:
        image, gt = image[:, ::-1], gt[:, ::-1]
    if min_scale < 1:
        h, w = gt.shape
        s = rng.uniform(min_scale, 1.0)
        ch, cw = max(16, int(round(h * s))), max(16, int(round(w * s)))
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        crop = gt[y0 : y0 + ch, x0 : x0 + cw]
        if (crop > 127).any() or not (gt > 127).any():
            image, gt = image[y0 : y0 + ch, x0 : x0 + cw], crop
    return np.ascontiguousarray(image), np.ascontiguousarray(gt)


@dataclass
class Example:
    """One training/validation example in the model-input frame (padded R×R).

    image (3, R, R) normalised; target (R, R) float 0/1 (0 in the padding); valid (R, R) bool,
    the unpadded area; kind the prompt kind; points (N, 2) xy + labels (N,) or None; box (4,) or None.
    """

    image: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    kind: str
    points: torch.Tensor | None
    labels: torch.Tensor | None
    box: torch.Tensor | None
    name: str = ""
    refine_u: torch.Tensor | None = None  # (K,) in [0, 1): where each refinement click falls


def make_example(
    image: np.ndarray, gt: np.ndarray, resolution: int, kind: str, rng, box_jitter: float, n_points: int, name: str = ""
) -> Example:
    """Resize to SAM's policy (long side → resolution, pad to resolution²), sample the prompt on
    the ground truth and convert it to model-input pixels."""
    mask = gt > 127
    if not mask.any():
        kind = "none"  # nothing to point at: learn to predict nothing
    prompt = sample_prompt(mask, kind, rng, box_jitter=box_jitter, n_pos=n_points)
    orig_hw = gt.shape
    resized_hw, padded_hw = model_input_size(orig_hw, resolution)
    x = normalize_and_pad(resize_image(image, resized_hw), padded_hw)[0]
    small = np.asarray(Image.fromarray(gt).resize(resized_hw[::-1], Image.BILINEAR)) > 127
    target = torch.zeros(padded_hw)
    target[: resized_hw[0], : resized_hw[1]] = torch.from_numpy(small.astype(np.float32))
    valid = torch.zeros(padded_hw, dtype=torch.bool)
    valid[: resized_hw[0], : resized_hw[1]] = True
    points = labels = box = None
    if prompt.point_coords is not None:
        points = torch.as_tensor(coords_to_model(prompt.point_coords, orig_hw, resized_hw), dtype=torch.float32)
        labels = torch.as_tensor(prompt.point_labels, dtype=torch.int64)
    if prompt.box is not None:
        box = torch.as_tensor(boxes_to_model(prompt.box[None], orig_hw, resized_hw)[0], dtype=torch.float32)
    return Example(x, target, valid, kind, points, labels, box, name)


class TrainData(torch.utils.data.Dataset):
    """Map-style dataset keyed by (step, position in the global batch): the whole data pipeline
    as one pure function, so DataLoader workers, ranks and resumes all agree."""

    def __init__(
        self,
        specs: list[tuple[str, float]],
        resolutions: list[int],
        kinds: list[str],
        seed: int,
        flip: bool = True,
        min_scale: float = 0.6,
        box_jitter: float = 0.1,
        n_points: int = 3,
        global_batch: int = 1,
        any_object: float = 0.0,
        refine_iters: int = 0,
    ):
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"--prompt {','.join(kinds)}: expected some of {', '.join(KINDS)}")
        self.sources = [open_source(spec, "train") for spec, _ in specs]
        self.sampler = MixtureSampler([s.size for s in self.sources], [w for _, w in specs], seed)
        self.resolutions, self.kinds, self.seed = resolutions, kinds, seed
        self.flip, self.min_scale, self.box_jitter, self.n_points = flip, min_scale, box_jitter, n_points
        self.global_batch, self.any_object, self.refine_iters = global_batch, any_object, refine_iters

    def resolution(self, step: int) -> int:
        """The step's resolution (one per step: a batch must stack)."""
        return self.resolutions[int(np.random.default_rng([self.seed, step, 2]).integers(len(self.resolutions)))]

    def __getitem__(self, key: tuple[int, int]) -> Example:
        step, j = key
        source, index = self.sampler.draw(step, self.global_batch)[j]
        res = self.resolution(step)
        extra = np.random.default_rng([self.seed, step, j, 3])  # apart, so runs without these options stay as they were
        picked = target = None
        if self.any_object and hasattr(self.sources[source], "load_objects"):
            name, image, masks, target = self.sources[source].load_objects(index, res)
            picked = pick_object(masks, target, extra, self.any_object)
            gt = masks[picked]
        else:
            name, image, gt = self.sources[source].load(index, res)
        rng = np.random.default_rng([self.seed, step, j, 1])
        shown, gt = augment(image, gt, rng, self.flip, self.min_scale)
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "none" and picked != target:
            # Without a prompt SAM's answer is the scene's target, never another object. augment
            # draws the same numbers whatever the mask, so a fresh generator redoes the same flip
            # and crop on the target (a crop that would lose the target is skipped).
            shown, gt = augment(
                image, masks[target], np.random.default_rng([self.seed, step, j, 1]), self.flip, self.min_scale
            )
        example = make_example(shown, gt, res, kind, rng, self.box_jitter, self.n_points, name)
        if self.refine_iters:  # else collate gives the (B, 0) tensor of no clicks
            example.refine_u = torch.from_numpy(extra.random(self.refine_iters).astype(np.float32))
        return example


class StepBatches:
    """The distributed batch sampler: for each step from `start`, this rank's slice of the global
    batch cut into `accum` micro-batches, as lists of (step, j) keys of `TrainData`."""

    def __init__(self, start: int, steps: int, global_batch: int, rank: int, world: int, accum: int):
        self.start, self.steps, self.accum = start, steps, accum
        self.first, self.micro = rank * (global_batch // world), global_batch // world // accum

    def __iter__(self):
        for step in range(self.start, self.steps):
            for m in range(self.accum):
                yield [(step, self.first + m * self.micro + i) for i in range(self.micro)]

    def __len__(self) -> int:
        return (self.steps - self.start) * self.accum


def collate(examples: list[Example]) -> dict:
    """→ {"images" (B, 3, R, R), "targets" (B, R, R), "valid" (B, R, R), "refine_u" (B, K), "groups": {kind: (idx
    (b,), points (b, N, 2) | None, labels (b, N) | None, boxes (b, 4) | None)}}. Samples with
    the same prompt kind are decoded together (prompt tensors of one kind have one shape)."""
    groups = {}
    for kind in dict.fromkeys(e.kind for e in examples):
        idx = [i for i, e in enumerate(examples) if e.kind == kind]
        sel = [examples[i] for i in idx]
        groups[kind] = (
            torch.tensor(idx),
            torch.stack([e.points for e in sel]) if sel[0].points is not None else None,
            torch.stack([e.labels for e in sel]) if sel[0].labels is not None else None,
            torch.stack([e.box for e in sel]) if sel[0].box is not None else None,
        )
    return {
        "images": torch.stack([e.image for e in examples]),
        "targets": torch.stack([e.target for e in examples]),
        "valid": torch.stack([e.valid for e in examples]),
        "groups": groups,
        "refine_u": torch.stack([torch.zeros(0) if e.refine_u is None else e.refine_u for e in examples]),
    }


class ValidationSet:
    """Held-out samples kept in memory, with the resolution and prompt settings they are scored at:
    a dataset for `basam.evaluation.evaluate`, so validation is `basam eval`'s loop."""

    layout = "validation"

    def __init__(self, samples: list, resolution: int, kind: str, seed: int):
        from basam.evaluation.evaluate import EvalSettings

        self.name, self.samples, self.problems = "validation", samples, []
        self.resolution, self.settings = resolution, EvalSettings(prompt=kind, seed=seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


@dataclass
class HeldOut:
    name: str
    image: np.ndarray
    gt: np.ndarray
    box = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return self.image, self.gt


def validation_set(
    specs: list[tuple[str, float]], split: str, size: int, resolution: int, kind: str, seed: int, flat_ok: bool = False
) -> ValidationSet:
    """Up to `size` held-out samples, spread evenly over each source (synth: the first scenes of
    the split, families in turn); prompts as `basam eval --seed seed` gives them. flat_ok: a flat
    generic folder counts as the split (for --val-data given apart from --data)."""
    samples = []
    per_source = max(1, size // len(specs))
    for spec, _ in specs:
        source = open_source(spec, split, flat_ok)
        n = per_source if source.size is None else min(per_source, source.size)
        picks = range(n) if source.size is None else np.linspace(0, source.size - 1, n).round().astype(int)
        for i in picks:
            samples.append(HeldOut(*source.load(int(i), resolution)))
    return ValidationSet(samples, resolution, kind, seed)


@torch.no_grad()
def validate(model, val_set: ValidationSet, device, use_bf16: bool = False) -> dict:
    """SegMetrics over the held-out samples through the Predictor, as `basam eval` scores them."""
    from basam.evaluation.evaluate import evaluate
    from basam.inference.predictor import Predictor

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        result = evaluate(Predictor(model, val_set.resolution), val_set, val_set.settings, progress=False)
    if result.problems:  # e.g. an empty ground truth, which no prompt can point at
        warnings.warn(
            f"validation: {len(result.problems)} sample(s) not scored: "
            + "; ".join(f"{name}: {reason}" for name, reason in result.problems[:3]),
            stacklevel=2,
        )
    model.train()
    return result.metrics.results()
