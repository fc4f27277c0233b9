"""The scoring loop, and `basam eval`: the field's metrics at the ground truth's own resolution.
`basam sweep` (basam.evaluation.sweep) runs this loop over presets × windows × resolutions × prompts.

Each image is encoded at the resolution policy, prompted from its ground truth (deterministic by
seed and sample name), and the predicted probability map — brought back to the original image
size — is scored against the original ground truth. Under torchrun each rank takes every
world-th sample and rank 0 merges the per-image results exactly once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import numpy as np

from basam.data.datasets import Dataset, SampleError, binarize
from basam.data.prompts import KINDS, prompt_rng, sample_prompt
from basam.evaluation.metrics import SegMetrics
from basam.inference.predictor import Predictor, check_batch_size
from basam.runtime import distributed

HEADLINE = ("mIoU", "mDice", "MAE", "Smeasure", "maxFm", "meanEm", "wFmeasure")


@dataclass
class EvalSettings:
    """How samples are prompted and which ones are scored."""

    prompt: str = "box"
    box_jitter: float = 0.0
    n_pos: int = 1
    n_neg: int = 0
    seed: int = 0
    limit: int | None = None
    hce: bool = False
    group_by_prefix: bool = False  # per-group metrics, the group being the name up to its first "_"
    hq_token_only: bool = False  # HQ-SAM models: the HQ token's mask alone

    def __post_init__(self):
        if self.prompt not in KINDS:  # here, not per sample, where it would read as a bad file
            raise ValueError(f"unknown prompt kind {self.prompt!r}; expected one of {', '.join(KINDS)}")


@dataclass
class EvalResult:
    metrics: SegMetrics
    groups: dict[str, SegMetrics]
    rows: list[dict]
    problems: list[tuple[str, str]]

    def summary(self) -> dict:
        out = {**self.metrics.results(), "problems": len(self.problems)}
        if self.groups:
            out["groups"] = {g: m.results() for g, m in sorted(self.groups.items())}
        return out


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    settings: EvalSettings,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    batch_size: int = 1,
) -> EvalResult:
    """Score this rank's share of `dataset`; with world > 1, call `merge_ranks` after."""
    return evaluate_prompts(predictor, dataset, settings, [settings.prompt], rank, world, progress, batch_size)[
        settings.prompt
    ]


def evaluate_prompts(
    predictor: Predictor,
    dataset: Dataset,
    settings: EvalSettings,
    prompts: list[str],
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    batch_size: int = 1,
) -> dict[str, EvalResult]:
    """`evaluate` for several prompt kinds at once → {kind: EvalResult}. Each image is encoded once
    and decoded once per kind: the encoder is nearly all the cost at high resolution. With
    batch_size > 1, that many samples are loaded at a time and those of the same model input size
    share an encoder forward (each row's "seconds" then holds its share of that forward)."""
    from tqdm import tqdm

    check_batch_size(batch_size)
    indices = range(len(dataset) if settings.limit is None else min(settings.limit, len(dataset)))
    mine = [i for i in indices if i % world == rank]
    per_kind = {kind: replace(settings, prompt=kind) for kind in prompts}
    results = {kind: EvalResult(SegMetrics(hce=settings.hce), {}, [], []) for kind in prompts}
    bar = tqdm(
        total=len(mine),
        desc=f"{dataset.name} @ {predictor.resolution}",
        disable=not progress or rank != 0,
        unit="img",
        leave=False,
    )
    for first in range(0, len(mine), batch_size):
        loaded = []
        for i in mine[first : first + batch_size]:
            sample = dataset[i]
            try:
                loaded.append((i, sample, *sample.load()))
            except SampleError as e:
                for result in results.values():
                    result.problems.append((e.name, e.reason))
        for (i, sample, _image, gt), embedding, encode_seconds in _encoded(predictor, loaded, batch_size, results):
            predictor.set_embedding(embedding)
            for kind, result in results.items():
                try:
                    prompt = prompt_for(sample, gt, per_kind[kind])
                except ValueError as e:  # an empty ground truth cannot be prompted
                    result.problems.append((sample.name, str(e)))
                    continue
                start = time.perf_counter()
                hq = {"hq_token_only": True} if settings.hq_token_only else {}
                prob = predictor.predict_proba(**prompt.as_kwargs(), **hq)
                row = {
                    "index": i,
                    "name": sample.name,
                    **result.metrics.update(prob, gt, key=i),
                    "seconds": round(encode_seconds + time.perf_counter() - start, 4),
                }
                if settings.group_by_prefix:
                    result.groups.setdefault(_group(sample.name), SegMetrics(hce=settings.hce)).update(prob, gt, key=i)
                result.rows.append(row)
        predictor.reset_image()
        bar.update(min(batch_size, len(mine) - first))
    bar.close()
    return results


def _encoded(predictor: Predictor, loaded: list[tuple], batch_size: int, results: dict[str, EvalResult]):
    """(sample, embedding, encoding seconds) for every loaded sample that could be encoded; one that
    cannot (too large, out of memory) is named and counted. A batch that fails is encoded again one
    image at a time, so that only the failing image is lost."""
    errors = (ValueError, RuntimeError, MemoryError)
    if len(loaded) > 1:
        with contextlib.suppress(*errors):  # a failed batch falls through to one image at a time
            start = time.perf_counter()
            embeddings = predictor.encode_images([image for _, _, image, _ in loaded], batch_size)
            seconds = (time.perf_counter() - start) / len(loaded)
            return [(item, embedding, seconds) for item, embedding in zip(loaded, embeddings)]
    out = []
    for item in loaded:
        start = time.perf_counter()
        try:
            embedding = predictor.encode_images([item[2]])[0]
        except errors as e:
            for result in results.values():
                result.problems.append((item[1].name, f"encoding failed: {type(e).__name__}: {str(e).splitlines()[0]}"))
            continue
        out.append((item, embedding, time.perf_counter() - start))
    return out


def merge_ranks(part: EvalResult) -> EvalResult | None:
    """Gather every rank's results on rank 0 (None on the others), in sample order."""
    parts = distributed.gather_to_rank0(
        (part.metrics.state(), {g: m.state() for g, m in part.groups.items()}, part.rows, part.problems)
    )
    if parts is None:
        return None
    if len(parts) == 1:
        return part
    metrics = SegMetrics.merge([p[0] for p in parts])
    names = sorted({g for p in parts for g in p[1]})
    groups = {g: SegMetrics.merge([p[1][g] for p in parts if g in p[1]]) for g in names}
    rows = sorted((r for p in parts for r in p[2]), key=lambda r: r["index"])
    problems = [x for p in parts for x in p[3]]
    return EvalResult(metrics, groups, rows, problems)


def prompt_for(sample, gt, settings: EvalSettings):
    from basam.data.prompts import Prompt

    if settings.prompt == "box" and sample.box is not None:  # COCO: the annotation's own box
        return Prompt(box=np.asarray(sample.box, dtype=np.float64))
    return sample_prompt(
        binarize(gt),
        settings.prompt,
        prompt_rng(settings.seed, sample.name),
        box_jitter=settings.box_jitter,
        n_pos=settings.n_pos,
        n_neg=settings.n_neg,
    )


def _group(name: str) -> str:
    return name.split("_", 1)[0]
