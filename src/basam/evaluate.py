"""`basam eval` and `basam sweep`: the field's metrics at the ground truth's own resolution, for one
setting or for attention presets × resolutions (the paper's Figure 1, right).

Each image is encoded at the resolution policy, prompted from its ground truth (deterministic by
seed and sample name), and the predicted probability map — brought back to the original image
size — is scored against the original ground truth. Under torchrun each rank takes every
world-th sample and rank 0 merges the per-image results exactly once.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import distributed
from .config import AttentionConfig
from .data.datasets import Dataset, SampleError, binarize, open_dataset
from .data.prompts import KINDS, sample_prompt, prompt_rng
from .metrics import SegMetrics, write_per_image_csv, write_summary_json
from .predictor import Predictor

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


def evaluate(predictor: Predictor, dataset: Dataset, settings: EvalSettings, rank: int = 0, world: int = 1,
             progress: bool = True) -> EvalResult:
    """Score this rank's share of `dataset`; with world > 1, call `merge_ranks` after."""
    return evaluate_prompts(predictor, dataset, settings, [settings.prompt], rank, world, progress)[settings.prompt]


def evaluate_prompts(predictor: Predictor, dataset: Dataset, settings: EvalSettings, prompts: list[str],
                     rank: int = 0, world: int = 1, progress: bool = True) -> dict[str, EvalResult]:
    """`evaluate` for several prompt kinds at once → {kind: EvalResult}. Each image is encoded once
    and decoded once per kind: the encoder is nearly all the cost at high resolution."""
    from tqdm import tqdm

    indices = range(len(dataset) if settings.limit is None else min(settings.limit, len(dataset)))
    mine = [i for i in indices if i % world == rank]
    per_kind = {kind: replace(settings, prompt=kind) for kind in prompts}
    results = {kind: EvalResult(SegMetrics(hce=settings.hce), {}, [], []) for kind in prompts}
    for i in tqdm(mine, desc=f"{dataset.name} @ {predictor.resolution}", disable=not progress or rank != 0,
                  unit="img", leave=False):
        sample = dataset[i]
        try:
            image, gt = sample.load()
        except SampleError as e:
            for result in results.values():
                result.problems.append((e.name, e.reason))
            continue
        start = time.perf_counter()
        predictor.set_image(image)
        encode_seconds = time.perf_counter() - start
        for kind, result in results.items():
            try:
                prompt = prompt_for(sample, gt, per_kind[kind])
            except ValueError as e:  # an empty ground truth cannot be prompted
                result.problems.append((sample.name, str(e)))
                continue
            start = time.perf_counter()
            prob = predictor.predict_proba(**prompt.as_kwargs())
            row = {"index": i, "name": sample.name, **result.metrics.update(prob, gt, key=i),
                   "seconds": round(encode_seconds + time.perf_counter() - start, 4)}
            if settings.group_by_prefix:
                result.groups.setdefault(_group(sample.name), SegMetrics(hce=settings.hce)).update(prob, gt, key=i)
            result.rows.append(row)
    return results


def merge_ranks(part: EvalResult) -> EvalResult | None:
    """Gather every rank's results on rank 0 (None on the others), in sample order."""
    parts = distributed.gather_to_rank0((part.metrics.state(), {g: m.state() for g, m in part.groups.items()},
                                         part.rows, part.problems))
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


class SynthDataset:
    """Held-out synthetic scenes rendered at size×size on demand: the `synth[:FAMILIES]` data spec.
    Rendering at the evaluated resolution, rather than resizing one file, gives every resolution
    its own detail (thin wires, fine texture), which is the point of a resolution sweep."""

    layout = "synth"

    def __init__(self, families: tuple[str, ...], n_per_family: int, size: int, split: str = "test", seed: int = 0):
        from .data.synth import scene_seed

        self.name, self.split, self.problems = f"synth-{split}@{size}", split, []
        self.samples = [_SynthSample(f"{fam}_{split}_{i:04d}", fam, scene_seed(seed, split, i), size)
                        for fam in families for i in range(n_per_family)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]

    def summary(self) -> dict:
        return {"name": self.name, "layout": "synth", "split": self.split, "samples": len(self), "problems": 0,
                "problem_list": []}


@dataclass
class _SynthSample:
    name: str
    family: str
    seed: int
    size: int
    box = None

    def load(self):
        from .data.synth import make_scene, render

        scene = render(make_scene(self.seed, self.family), self.size, self.size)
        return scene.image, scene.mask.astype(np.uint8) * 255


def open_eval_data(spec: str, split: str | None, resolution, n_per_family: int = 10):
    """A dataset from disk (any reader layout), or `synth[:FAMILIES]` rendered at `resolution`."""
    from .data.synth import FAMILIES

    layout, _, rest = spec.partition(":")
    if layout != "synth":
        dataset = open_dataset(spec, split)
        if len(dataset) == 0:
            raise ValueError(f"{spec}: no image/mask pairs found ({len(dataset.problems)} problems: "
                             f"{'; '.join(f'{n}: {r}' for n, r in dataset.problems[:3])})")
        return dataset
    families = FAMILIES if rest in ("", "all") else tuple(f.strip() for f in rest.split(","))
    if bad := [f for f in families if f not in FAMILIES]:
        raise ValueError(f"unknown synthetic families {bad}; choose from {', '.join(FAMILIES)} or all")
    if not isinstance(resolution, int):
        raise ValueError("synthetic data is rendered at each resolution N (square): give N, not native")
    return SynthDataset(families, n_per_family, resolution, split or "test")


def prompt_for(sample, gt, settings: EvalSettings):
    from .data.prompts import Prompt

    if settings.prompt == "box" and sample.box is not None:  # COCO: the annotation's own box
        return Prompt(box=np.asarray(sample.box, dtype=np.float64))
    return sample_prompt(binarize(gt), settings.prompt, prompt_rng(settings.seed, sample.name),
                         box_jitter=settings.box_jitter, n_pos=settings.n_pos, n_neg=settings.n_neg)


def _group(name: str) -> str:
    return name.split("_", 1)[0]


# --- command line --------------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    from .cli import add_model_arguments

    p.add_argument("--data", required=True, help="LAYOUT:PATH or PATH (duts, dis5k, cod10k, isic2016, coco, "
                                                  "generic), or synth[:FAMILIES] rendered at each resolution")
    p.add_argument("--n", type=int, default=10, help="scenes per family for --data synth")
    p.add_argument("--render-size", type=int, default=None,
                   help="--data synth: render scenes at this size, whatever the model's input resolution "
                        "(default: at the resolution, so each resolution gets its own detail)")
    p.add_argument("--split", default=None, help="dataset split (default: the test split)")
    add_model_arguments(p)
    p.add_argument("--prompt", default="box", help="box | center | points | box+center | none (sweep: several, comma-separated)")
    p.add_argument("--box-jitter", type=float, default=0.0, help="box jitter, fraction of the box side")
    p.add_argument("--n-pos", type=int, default=1, help="positive points for --prompt points")
    p.add_argument("--n-neg", type=int, default=0, help="negative points for --prompt points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--hce", choices=("auto", "on", "off"), default="auto", help="HCE (default: on for DIS5K)")
    p.add_argument("--group-by-prefix", action="store_true", help="also report per name prefix (e.g. synthetic family)")
    p.add_argument("--out", default="basam-eval")


def _settings(args, dataset: Dataset, prompt: str) -> EvalSettings:
    hce = dataset.layout == "dis5k" if args.hce == "auto" else args.hce == "on"
    return EvalSettings(prompt, args.box_jitter, args.n_pos, args.n_neg, args.seed, args.limit, hce,
                        args.group_by_prefix)


def _report_problems(dataset: Dataset, result: EvalResult) -> None:
    problems = dataset.problems + result.problems
    if problems:
        print(f"{len(problems)} file(s) not scored:")
        for name, reason in problems:
            print(f"  {name}: {reason}")


def eval_add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import add_resolution_arguments

    _add_common(p)
    add_resolution_arguments(p)


def eval_run(args) -> int:
    from .cli import load_model_from_args

    from .transforms import parse_resolution

    rank, world = distributed.setup(args.device)
    model = load_model_from_args(args)
    predictor = Predictor(model, args.resolution, args.max_side)
    args.resolution = predictor.resolution
    dataset = open_eval_data(args.data, args.split, args.render_size or parse_resolution(args.resolution), args.n)
    settings = _settings(args, dataset, args.prompt)
    result = merge_ranks(evaluate(predictor, dataset, settings, rank, world))
    distributed.teardown()
    if result is None:
        return 0
    out = Path(args.out)
    summary = {"dataset": dataset.summary(), "model": model.cfg.name, "checkpoint": args.checkpoint,
               "attention": model.attn_cfg.to_dict(), "resolution": args.resolution, "settings": asdict(settings),
               "processes": world, "metrics": result.summary(),
               "not_scored": [{"name": n, "reason": r} for n, r in result.problems]}
    write_per_image_csv(result.rows, out / "per_image.csv")
    write_summary_json(summary, out / "summary.json")
    scores = result.metrics.results()
    print(f"{dataset.name}: {scores['count']} images, attention {model.attn_cfg.describe()}, resolution {args.resolution}")
    print("  " + "  ".join(f"{k} {scores[k]:.4f}" for k in (*HEADLINE, *(["HCE"] if settings.hce else []))))
    _report_problems(dataset, result)
    print(f"wrote {out}/per_image.csv and {out}/summary.json")
    return 0


def sweep_add_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--resolution", default="512,1024,1536,2048", help="comma-separated policies: N or native")
    p.add_argument("--metric", default="mIoU", help=f"metric of the table and plot ({', '.join(HEADLINE)}, …)")


def sweep_run(args) -> int:
    from .cli import attention_overrides, load_model_from_args
    from .transforms import parse_resolution

    rank, world = distributed.setup(args.device)
    presets = [p.strip() for p in (args.attn or "sam,nsf,bm,basam").split(",") if p.strip()]
    prompts = [p.strip() for p in args.prompt.split(",") if p.strip()]
    for kind in prompts or [args.prompt]:  # validate first ('' fails as an unknown kind)
        EvalSettings(prompt=kind)
    resolutions = [parse_resolution(r) for r in args.resolution.split(",") if r.strip()]
    configs = {p: AttentionConfig.from_preset(p, **attention_overrides(args)) for p in presets}  # validate first
    model = load_model_from_args(args, attn=presets[0])
    records, problems, dataset = [], None, None
    per_size = args.data.partition(":")[0] == "synth" and not args.render_size  # scenes rendered per size
    for res in resolutions:
        if dataset is None or per_size:  # files are opened once
            dataset = open_eval_data(args.data, args.split, args.render_size or res, args.n)
        settings = _settings(args, dataset, prompts[0])
        for preset in presets:
            model.set_attention(configs[preset])
            parts = evaluate_prompts(Predictor(model, res), dataset, settings, prompts, rank, world)
            for kind in prompts:
                result = merge_ranks(parts[kind])
                if result is not None:
                    problems = result.problems if problems is None else problems  # the same in every run
                    records.append({"preset": preset, "prompt": kind, "resolution": str(res), **result.summary()})
                    print(f"{preset:>9} {kind:>6} @ {res!s:>6}: {args.metric} {records[-1][args.metric]:.4f}")
    records.sort(key=lambda r: (prompts.index(r["prompt"]), presets.index(r["preset"])))  # resolutions stay in order
    distributed.teardown()
    if rank != 0:
        return 0
    if args.metric not in records[0]:
        raise ValueError(f"unknown metric {args.metric!r}; choose from {', '.join(k for k in records[0] if k != 'groups')}")
    out = Path(args.out)
    name = dataset.name.split("@")[0] + " rendered at each resolution" if per_size else dataset.name
    write_sweep(records, out, args.metric, title=f"{name} ({model.cfg.name}, prompt {args.prompt})")
    print((out / "sweep.md").read_text())
    _report_problems(dataset, EvalResult(SegMetrics(), {}, [], problems))
    print(f"wrote {out}/sweep.md, sweep.csv, sweep.json and sweep.png")
    return 0


def _row_label(record: dict, several_prompts: bool) -> str:
    return f"{record['preset']}, {record['prompt']}" if several_prompts else record["preset"]


def sweep_table(records: list[dict], metric: str, group: str | None = None) -> str:
    """Markdown: one row per preset (per preset and prompt kind when there are several), one column
    per resolution; of the per-prefix group `group` if given."""
    resolutions = list(dict.fromkeys(r["resolution"] for r in records))
    several = len({r["prompt"] for r in records}) > 1
    rows: dict[str, dict[str, float]] = {}
    for r in records:
        scores = r["groups"][group] if group else r
        rows.setdefault(_row_label(r, several), {})[r["resolution"]] = scores[metric]
    head = f"{metric}, {group}" if group else metric
    lines = [f"| {head} | " + " | ".join(resolutions) + " |", "|---" * (len(resolutions) + 1) + "|"]
    for label, value in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{value[res]:.4f}" for res in resolutions) + " |")
    return "\n".join(lines)


def write_sweep(records: list[dict], out: Path, metric: str, title: str = "") -> None:
    """sweep.md (the table, then one per group if there are groups), sweep.csv (every metric),
    sweep.json (with per-group results), sweep.png (one colour per preset, one line style per prompt)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups = list(records[0].get("groups", {}))
    tables = [sweep_table(records, metric)] + [sweep_table(records, metric, g) for g in groups]
    (out / "sweep.md").write_text("\n\n".join(tables) + "\n")
    flat = [{k: v for k, v in r.items() if k != "groups"} for r in records]
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    (out / "sweep.json").write_text(json.dumps(records, indent=1, default=float))
    resolutions = list(dict.fromkeys(r["resolution"] for r in records))
    presets = list(dict.fromkeys(r["preset"] for r in records))
    prompts = list(dict.fromkeys(r["prompt"] for r in records))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (preset, kind) in ((p, k) for k in prompts for p in presets):
        ys = [next(r[metric] for r in records if r["preset"] == preset and r["prompt"] == kind
                   and r["resolution"] == res) for res in resolutions]
        ax.plot(range(len(resolutions)), ys, marker="o", color=f"C{presets.index(preset)}",
                linestyle=("-", "--", ":", "-.")[prompts.index(kind) % 4],
                label=_row_label({"preset": preset, "prompt": kind}, len(prompts) > 1))
    ax.set_xticks(range(len(resolutions)), resolutions)
    ax.set_xlabel("input resolution (long side, px)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=len(prompts))
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=120)
    plt.close(fig)
